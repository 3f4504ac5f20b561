"""3DHand: hand MRI (28 landmarks, private data), five-fold cross-validation with a seeded generator.

  python experiments/hand3d.py --data_dir DATA --fold 0

DATA holds images/<id>.nii.gz and landmarks.csv (mm); the folds are drawn from the ids in landmarks.csv
(or --ids_file) with `scn_tf.data.folds.k_fold`, seeded, as the paper's fold lists are not public.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from scn_tf.cli import runner
from scn_tf.configs import preset
from scn_tf.data.folds import k_fold
from scn_tf.splits import CV_FOLDS

runner.define_flags("0..4 (cross-validation fold)", default_fold="0")
flags.adopt_module_key_flags(runner)
flags.DEFINE_string("ids_file", None, "Ids to split into folds (default: every id in the landmark CSV).")
flags.DEFINE_integer("fold_seed", 0, "Seed of the fold generator.")
FLAGS = flags.FLAGS
NETWORK_OVERRIDES = {"unet": {"network": {"levels": 4, "filters": 64}}}


def splits(fold: str) -> tuple[list[str], list[str]]:
    if fold not in CV_FOLDS["hand3d"]:
        raise ValueError(f"--fold must be 0..4, got {fold!r}")
    if FLAGS.ids_file:
        ids = runner.read_split(Path(FLAGS.ids_file))
    else:
        config = runner.resolve_config(preset("hand3d"))
        csv = Path(FLAGS.data_dir) / config.data.landmarks_csv
        ids = [line.split(",", 1)[0] for line in csv.read_text().splitlines() if line.strip()]
    return k_fold(ids, 5, int(fold), FLAGS.fold_seed)


def main(argv):
    del argv
    return runner.run("hand3d", preset("hand3d"), splits, network_overrides=NETWORK_OVERRIDES)


if __name__ == "__main__":
    app.run(main)
