"""2DSkull: ISBI 2015 cephalograms (19 landmarks), the original cephalogram settings.

  python experiments/skull2d.py --data_dir ../shared/data/isbi2015_ceph --fold test1
  python experiments/skull2d.py --describe
  python experiments/skull2d.py --cpu --annotations senior --data_dir ../shared/data/isbi2015_ceph --fold test1

--cpu: the configuration for one hour of training on 2 CPU cores (preset skull2d_cpu; its departures from
the original are listed in scn_tf/configs.py and the README).

--fold: test1, test2 or test (both, as the paper reports) after training on 001-150; cv0..cv3 = the
original's 4-fold cross-validation over 001-150. --annotations picks the ground truth (default challenge,
as the original; 'mean' averages senior and junior). The challenge ground truth of test2 (301-400) differs
from senior at landmark 16 and is not in the challenge download: give scn-convert the original experiments'
all_challenge.csv (`--challenge_csv`) or pass --annotations senior.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from absl import app, flags

from scn_tf.cli import runner
from scn_tf.configs import ExperimentConfig, preset
from scn_tf.data.io import DataError, read_landmarks_csv, write_landmarks_csv
from scn_tf.splits import CV_FOLDS, split_ids

runner.define_flags("test1, test2, test (both) or cv0..cv3", default_fold="test1")
flags.adopt_module_key_flags(runner)
flags.DEFINE_bool("cpu", False, "Use the 2-CPU-core, one-hour configuration (preset skull2d_cpu).")
flags.DEFINE_enum("annotations", "challenge", ["challenge", "senior", "junior", "mean"], "Ground truth used.")
FLAGS = flags.FLAGS


def splits(fold: str) -> tuple[list[str], list[str]]:
    tests = {"test1": "test1", "test2": "test2", "test": "test_all"}
    if fold in tests:
        test_ids = split_ids("isbi2015_ceph", tests[fold])
        if FLAGS.annotations == "challenge":
            check_challenge(Path(FLAGS.data_dir), test_ids)
        return split_ids("isbi2015_ceph", "train"), test_ids
    if fold in CV_FOLDS["skull2d"]:
        folder = f"cv/set{int(fold[2:]) + 1}"
        return split_ids("isbi2015_ceph", f"{folder}/train"), split_ids("isbi2015_ceph", f"{folder}/val")
    raise ValueError(f"--fold must be test1, test2, test or cv0..cv3, got {fold!r}")


def check_challenge(data_dir: Path, test_ids: list[str]) -> None:
    """Refuses test ids without the challenge ground truth, and a challenge file that is only a copy of
    senior on 301-400 (where the real one differs at landmark 16: soft tissue pogonion)."""
    path = data_dir / "annotations" / "challenge_mm.csv"
    advice = ("scn-convert writes it for 001-300 only; for 301-400 give scn-convert --challenge_csv "
              "all_challenge.csv (the original experiments' file), or pass --annotations senior")
    challenge = read_landmarks_csv(path, 19, 2) if path.exists() else {}
    missing = [i for i in test_ids if i not in challenge]
    if missing:
        raise DataError(f"{path}: no challenge ground truth for {len(missing)} test id(s) "
                        f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): {advice}")
    senior_path = data_dir / "annotations" / "senior_mm.csv"
    later = [i for i in test_ids if i.isdigit() and int(i) > 300]
    if later and senior_path.exists():
        senior = read_landmarks_csv(senior_path, 19, 2)
        if all(i in senior and np.array_equal(challenge[i][15], senior[i][15]) for i in later):
            raise DataError(f"{path}: landmark 16 equals senior_mm.csv on every id above 300, but the challenge "
                            f"ground truth differs there (a file from an older scn-convert?): {advice}")


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
