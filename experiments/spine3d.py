"""3DSpine: CSI 2014 spine CT (26 vertebra centres in world mm), the original spine settings.

  python experiments/spine3d.py --fold 0 --data_dir DATA
  python experiments/spine3d.py --fold 0 --network unet --data_dir DATA

DATA holds images/<id>.nii.gz and points_world_coordinates.csv (NaN for vertebrae not in the scan), whose
millimetres are in the original's zero-origin frame (data.image_frame; predictions are written in it too).
--fold 0|1 = the original's cv/0..1 (train / val); test = train_all / test_all.
"""

from __future__ import annotations

import sys

from absl import app, flags

from scn_tf.cli import runner
from scn_tf.cli.common import command
from scn_tf.configs import preset
from scn_tf.splits import CV_FOLDS, split_ids

# The spine U-Net of the original trains longer with a smaller learning rate and pads with zeros everywhere.
NETWORK_OVERRIDES = {
    "unet": {
        "training": {"learning_rate": 5e-9, "iterations": 80_000},
        "network": {"unet_variant": "released", "filters": 64, "padding": "same"},  # zeros, not the SCN's reflect
    }
}


def define_flags(values: flags.FlagValues) -> None:
    runner.define_flags(values, "0 or 1 (cross-validation), or test", default_fold="0")


def splits(fold: str) -> tuple[list[str], list[str]]:
    """(training ids, test ids): the original's cv/<fold> train and val lists, or train_all and test_all."""
    if fold == "test":
        return split_ids("spine_csi2014", "train_all"), split_ids("spine_csi2014", "test_all")
    if fold in CV_FOLDS["spine3d"]:
        return split_ids("spine_csi2014", f"cv/{fold}/train"), split_ids("spine_csi2014", f"cv/{fold}/val")
    raise ValueError(f"--fold must be 0, 1 or test, got {fold!r}")


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    return runner.run(
        "spine3d", preset("spine3d"), runner.RunOptions.from_flags(values), splits, network_overrides=NETWORK_OVERRIDES
    )


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
