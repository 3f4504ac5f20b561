"""Writes a seeded 5-fold split of the (private) hand MRI ids: <output_dir>/fold<k>/{train,test}.txt.

  python data_splits/hand_mri_folds.py --ids ids.txt --output_dir data_splits/hand_mri --seed 0

The paper's fold lists are not public; experiments/hand3d.py draws the same folds from the same ids and seed.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from scn_tf.data.folds import k_fold
from scn_tf.data.io import read_id_list
from scn_tf.files import write_text_atomic

FLAGS = flags.FLAGS
flags.DEFINE_string("ids", None, "File with one id per line.", required=True)
flags.DEFINE_string("output_dir", None, "Where to write the folds.", required=True)
flags.DEFINE_integer("seed", 0, "Seed of the fold generator.")
flags.DEFINE_integer("folds", 5, "Number of folds.")


def main(argv):
    del argv
    ids = read_id_list(FLAGS.ids)
    for fold in range(FLAGS.folds):
        train, test = k_fold(ids, FLAGS.folds, fold, FLAGS.seed)
        for name, values in (("train", train), ("test", test)):
            write_text_atomic(Path(FLAGS.output_dir) / f"fold{fold}" / f"{name}.txt", "\n".join(values) + "\n")
    return 0


if __name__ == "__main__":
    app.run(main)
