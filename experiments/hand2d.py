"""2DHand: Digital Hand Atlas radiographs (37 landmarks), errors normalised to a 50 mm wrist width.

  python experiments/hand2d.py --data_dir DATA --fold 0
  python experiments/hand2d.py --data_dir DATA --fold 0 --train_subset 10 --subset_draw 1
  python experiments/hand2d.py --data_dir ../shared/data/hand_xray --split cv_reduced --fold 0

--fold 0|1|2 = the original's cv/set1..3; --train_subset 10|50|100 with --subset_draw 1|2 = cv_rand/N/draw;
--split cv_reduced uses the original's small split over the sample images.
"""

from __future__ import annotations

from absl import app, flags

from scn_tf.cli import runner
from scn_tf.configs import preset
from scn_tf.splits import CV_FOLDS, split_ids

runner.define_flags("0, 1 or 2 (cross-validation set)", default_fold="0")
flags.adopt_module_key_flags(runner)
flags.DEFINE_enum("split", "cv", ["cv", "cv_reduced"], "Split family.")
flags.DEFINE_enum("train_subset", None, ["10", "50", "100"], "Reduced training set size (cv_rand).")
flags.DEFINE_enum("subset_draw", "1", ["1", "2"], "Which random draw of the reduced training set.")
FLAGS = flags.FLAGS


def splits(fold: str) -> tuple[list[str], list[str]]:
    if fold not in CV_FOLDS["hand2d"]:
        raise ValueError(f"--fold must be 0, 1 or 2, got {fold!r}")
    folder = f"set{int(fold) + 1}"
    if FLAGS.train_subset:
        root = f"cv_rand/{FLAGS.train_subset}/{FLAGS.subset_draw}/{folder}"
    else:
        root = f"{FLAGS.split}/{folder}"
    return split_ids("hand_xray", f"{root}/train"), split_ids("hand_xray", f"{root}/test")


def main(argv):
    del argv
    return runner.run("hand2d", preset("hand2d"), splits)


if __name__ == "__main__":
    app.run(main)
