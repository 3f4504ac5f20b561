"""3DHand: hand MRI (28 landmarks, private data), five-fold cross-validation with a seeded generator.

  python experiments/hand3d.py --data_dir DATA --fold 0

DATA holds images/<id>.nii.gz and landmarks.csv (mm); the folds are drawn from the ids in landmarks.csv
(or --ids_file) with `scn_tf.data.folds.k_fold`, seeded, as the paper's fold lists are not public.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from absl import app, flags

from scn_tf.cli import runner
from scn_tf.cli.common import command
from scn_tf.configs import preset
from scn_tf.data.folds import k_fold
from scn_tf.splits import CV_FOLDS

NETWORK_OVERRIDES = {"unet": {"network": {"levels": 4, "filters": 64}}}


def define_flags(values: flags.FlagValues) -> None:
    runner.define_flags(values, "0..4 (cross-validation fold)", default_fold="0")
    flags.DEFINE_string(
        "ids_file", None, "Ids to split into folds (default: every id in the landmark CSV).", flag_values=values
    )
    flags.DEFINE_integer("fold_seed", 0, "Seed of the fold generator.", flag_values=values)


def splits(
    fold: str, landmarks_csv: Path, ids_file: str | None = None, fold_seed: int = 0
) -> tuple[list[str], list[str]]:
    """Fold `fold` of five over the ids of `ids_file`, or of every row of `landmarks_csv`."""
    if fold not in CV_FOLDS["hand3d"]:
        raise ValueError(f"--fold must be 0..4, got {fold!r}")
    if ids_file:
        ids = runner.read_split(Path(ids_file))
    else:
        ids = [line.split(",", 1)[0] for line in landmarks_csv.read_text().splitlines() if line.strip()]
    return k_fold(ids, 5, int(fold), fold_seed)


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    options = runner.RunOptions.from_flags(values)
    try:
        config = runner.resolve_config(preset("hand3d"), options, NETWORK_OVERRIDES)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    csv = Path(options.data_dir or ".") / config.data.landmarks_csv
    return runner.run(
        "hand3d",
        preset("hand3d"),
        options,
        functools.partial(splits, landmarks_csv=csv, ids_file=values.ids_file, fold_seed=values.fold_seed),
        network_overrides=NETWORK_OVERRIDES,
    )


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
