"""2DHand: Digital Hand Atlas radiographs (37 landmarks), errors normalised to a 50 mm wrist width.

  python experiments/hand2d.py --data_dir DATA --fold 0
  python experiments/hand2d.py --data_dir DATA --fold 0 --train_subset 10 --subset_draw 1
  python experiments/hand2d.py --data_dir ../shared/data/hand_xray --split cv_reduced --fold 0

--fold 0|1|2 = the original's cv/set1..3; --train_subset 10|50|100 with --subset_draw 1|2 = cv_rand/N/draw;
--split cv_reduced uses the original's small split over the sample images.
"""

from __future__ import annotations

import functools
import sys

from absl import app, flags

from scn_tf.cli import runner
from scn_tf.cli.common import command
from scn_tf.configs import preset
from scn_tf.splits import CV_FOLDS, split_ids


def define_flags(values: flags.FlagValues) -> None:
    runner.define_flags(values, "0, 1 or 2 (cross-validation set)", default_fold="0")
    flags.DEFINE_enum("split", "cv", ["cv", "cv_reduced"], "Split family.", flag_values=values)
    flags.DEFINE_enum(
        "train_subset", None, ["10", "50", "100"], "Reduced training set size (cv_rand).", flag_values=values
    )
    flags.DEFINE_enum(
        "subset_draw", "1", ["1", "2"], "Which random draw of the reduced training set.", flag_values=values
    )


def splits(
    fold: str, split: str = "cv", train_subset: str | None = None, subset_draw: str = "1"
) -> tuple[list[str], list[str]]:
    """(training ids, test ids) of cross-validation set `fold`, or of its reduced training set draw."""
    if fold not in CV_FOLDS["hand2d"]:
        raise ValueError(f"--fold must be 0, 1 or 2, got {fold!r}")
    folder = f"set{int(fold) + 1}"
    root = f"cv_rand/{train_subset}/{subset_draw}/{folder}" if train_subset else f"{split}/{folder}"
    return split_ids("hand_xray", f"{root}/train"), split_ids("hand_xray", f"{root}/test")


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    return runner.run(
        "hand2d",
        preset("hand2d"),
        runner.RunOptions.from_flags(values),
        functools.partial(splits, split=values.split, train_subset=values.train_subset, subset_draw=values.subset_draw),
    )


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
