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

--train_subset 10|25 --subset_draw 1|2|3: train on a reduced set of 001-150 (data_splits/isbi2015_ceph/
reduced/, seeded draws); --network unet --unet_variant released: the released code's U-Net.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

from scn_tf.cli import runner
from scn_tf.cli.common import command
from scn_tf.configs import ExperimentConfig, preset
from scn_tf.data.io import DataError, read_landmarks_csv, write_landmarks_csv
from scn_tf.listing import shortened
from scn_tf.splits import CV_FOLDS, split_ids


def define_flags(values: flags.FlagValues) -> None:
    runner.define_flags(values, "test1, test2, test (both) or cv0..cv3", default_fold="test1")
    flags.DEFINE_bool(
        "cpu", False, "Use the 2-CPU-core, one-hour configuration (preset skull2d_cpu).", flag_values=values
    )
    flags.DEFINE_enum(
        "annotations", "challenge", ["challenge", "senior", "junior", "mean"], "Ground truth used.", flag_values=values
    )
    flags.DEFINE_enum(
        "train_subset",
        None,
        ["10", "25"],
        "Train on a reduced set of 001-150 (with --fold "
        "test1/test2/test): data_splits/isbi2015_ceph/reduced/<N>/<draw>.txt.",
        flag_values=values,
    )
    flags.DEFINE_enum(
        "subset_draw", "1", ["1", "2", "3"], "Which seeded draw of the reduced training set.", flag_values=values
    )
    flags.DEFINE_enum(
        "unet_variant",
        None,
        ["paper", "released"],
        "Localization U-Net variant with --network unet (default: the configuration's, paper).",
        flag_values=values,
    )


def splits(
    fold: str, data_dir: Path, annotations: str = "challenge", train_subset: str | None = None, subset_draw: str = "1"
) -> tuple[list[str], list[str]]:
    """(training ids, test ids) of `fold`; the challenge ground truth is checked for the test ids. With
    `train_subset` N the training ids are draw `subset_draw` of the reduced sets of 001-150."""
    tests = {"test1": "test1", "test2": "test2", "test": "test_all"}
    if train_subset and fold not in tests:
        raise ValueError(f"--train_subset needs --fold test1, test2 or test, got {fold!r}")
    if fold in tests:
        test_ids = split_ids("isbi2015_ceph", tests[fold])
        if annotations == "challenge":
            check_challenge(data_dir, test_ids)
        train = f"reduced/{train_subset}/{subset_draw}" if train_subset else "train"
        return split_ids("isbi2015_ceph", train), test_ids
    if fold in CV_FOLDS["skull2d"]:
        folder = f"cv/set{int(fold[2:]) + 1}"
        return split_ids("isbi2015_ceph", f"{folder}/train"), split_ids("isbi2015_ceph", f"{folder}/val")
    raise ValueError(f"--fold must be test1, test2, test or cv0..cv3, got {fold!r}")


def check_challenge(data_dir: Path, test_ids: list[str]) -> None:
    """Refuses test ids without the challenge ground truth, and a challenge file that is only a copy of
    senior on 301-400 (where the real one differs at landmark 16: soft tissue pogonion)."""
    path = data_dir / "annotations" / "challenge_mm.csv"
    advice = (
        "scn-convert writes it for 001-300 only; for 301-400 give scn-convert --challenge_csv "
        "all_challenge.csv (the original experiments' file), or pass --annotations senior"
    )
    challenge = read_landmarks_csv(path, 19, 2) if path.exists() else {}
    missing = [i for i in test_ids if i not in challenge]
    if missing:
        raise DataError(
            f"{path}: no challenge ground truth for {len(missing)} test id(s) ({shortened(missing, 5)}): {advice}"
        )
    senior_path = data_dir / "annotations" / "senior_mm.csv"
    later = [i for i in test_ids if i.isdigit() and int(i) > 300]
    if later and senior_path.exists():
        senior = read_landmarks_csv(senior_path, 19, 2)
        if all(i in senior and np.array_equal(challenge[i][15], senior[i][15]) for i in later):
            raise DataError(
                f"{path}: landmark 16 equals senior_mm.csv on every id above 300, but the challenge "
                f"ground truth differs there (a file from an older scn-convert?): {advice}"
            )


def adapt(
    config: ExperimentConfig, output_dir: Path, annotations: str = "challenge", data_dir: Path | None = None
) -> ExperimentConfig:
    """Points the configuration at the chosen annotation set (the mean one is written to the run folder, when
    `data_dir` is given)."""
    if annotations == "mean":
        if data_dir is None:
            return config
        senior, junior = (
            read_landmarks_csv(data_dir / "annotations" / f"{k}_mm.csv", 19, 2) for k in ("senior", "junior")
        )
        mean = {i: (senior[i] + junior[i]) / 2 for i in senior if i in junior}
        path = (output_dir / "annotations_mean_mm.csv").resolve()
        write_landmarks_csv(path, mean)
        return dataclasses.replace(config, data=dataclasses.replace(config.data, landmarks_csv=str(path)))
    csv = f"annotations/{annotations}_mm.csv"
    return dataclasses.replace(config, data=dataclasses.replace(config.data, landmarks_csv=csv))


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    options = runner.RunOptions.from_flags(values)
    name = "skull2d_cpu" if values.cpu else "skull2d"
    data_dir = Path(options.data_dir) if options.data_dir else None
    config = preset(name)
    if values.unet_variant:
        config = config.updated({"network": {"unet_variant": values.unet_variant}})
    return runner.run(
        name,
        config,
        options,
        functools.partial(
            splits,
            data_dir=data_dir,
            annotations=values.annotations,
            train_subset=values.train_subset,
            subset_draw=values.subset_draw,
        ),
        functools.partial(adapt, annotations=values.annotations, data_dir=None if options.describe else data_dir),
    )


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
