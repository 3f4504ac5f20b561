"""2DSkull: ISBI 2015 cephalograms (19 landmarks), the original cephalogram settings.

  python experiments/skull2d.py --data_dir ../shared/data/isbi2015_ceph --fold test1
  python experiments/skull2d.py --describe
  python experiments/skull2d.py --cpu --annotations senior --data_dir ../shared/data/isbi2015_ceph --fold test1

--cpu: the configuration for one hour of training on 2 CPU cores (preset skull2d_cpu; its departures from
the original are listed in scn_tf/configs.py and the README).

--fold: test1, test2 or test (both, as the paper reports) after training on 001-150; cv0..cv3 = the
original's 4-fold cross-validation over 001-150. --annotations picks the ground truth (default challenge,
as the original; 'mean' averages senior and junior).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from absl import app, flags

from scn_tf.cli import runner
from scn_tf.configs import ExperimentConfig, preset
from scn_tf.data.io import read_landmarks_csv, write_landmarks_csv

runner.define_flags("test1, test2, test (both) or cv0..cv3", default_fold="test1")
flags.adopt_module_key_flags(runner)
flags.DEFINE_bool("cpu", False, "Use the 2-CPU-core, one-hour configuration (preset skull2d_cpu).")
flags.DEFINE_enum("annotations", "challenge", ["challenge", "senior", "junior", "mean"], "Ground truth used.")
FLAGS = flags.FLAGS
SPLITS = runner.SPLITS_DIR / "isbi2015_ceph"


def splits(fold: str) -> tuple[list[str], list[str]]:
    tests = {"test1": "test1.txt", "test2": "test2.txt", "test": "test_all.txt"}
    if fold in tests:
        return runner.read_split(SPLITS / "train.txt"), runner.read_split(SPLITS / tests[fold])
    if fold in ("cv0", "cv1", "cv2", "cv3"):
        folder = SPLITS / "cv" / f"set{int(fold[2:]) + 1}"
        return runner.read_split(folder / "train.txt"), runner.read_split(folder / "val.txt")
    raise ValueError(f"--fold must be test1, test2, test or cv0..cv3, got {fold!r}")


def adapt(config: ExperimentConfig, output_dir: Path) -> ExperimentConfig:
    """Points the configuration at the chosen annotation set (the mean one is written to the run folder)."""
    if FLAGS.annotations == "mean":
        if FLAGS.describe or not FLAGS.data_dir:
            return config
        data_dir = Path(FLAGS.data_dir)
        senior, junior = (read_landmarks_csv(data_dir / "annotations" / f"{k}_mm.csv", 19, 2)
                          for k in ("senior", "junior"))
        mean = {i: (senior[i] + junior[i]) / 2 for i in senior if i in junior}
        path = (output_dir / "annotations_mean_mm.csv").resolve()
        write_landmarks_csv(path, mean)
        return dataclasses.replace(config, data=dataclasses.replace(config.data, landmarks_csv=str(path)))
    csv = f"annotations/{FLAGS.annotations}_mm.csv"
    return dataclasses.replace(config, data=dataclasses.replace(config.data, landmarks_csv=csv))


def main(argv):
    del argv
    name = "skull2d_cpu" if FLAGS.cpu else "skull2d"
    return runner.run(name, preset(name), splits, adapt)


if __name__ == "__main__":
    app.run(main)
