"""scn-train: SCN (or U-Net, LA-Net) on your own 2D or 3D landmark data.

  scn-augment --preset cpu2d --print_config > my.json      # a CPU-sized start (cpu3d for 3D); edit "data"
  scn-train --config my.json --data_dir DATA --train_ids train.txt --test_ids test.txt --output_dir runs/my
  scn-train --preset cpu2d --config data_only.json ...     # the preset, with the keys of the file on top

The run folder is a model folder for scn-predict. Id lists are looked for as given, then in --data_dir.
"""

from __future__ import annotations

import sys

from absl import app, flags

from scn_tf.cli import runner
from scn_tf.cli.common import command
from scn_tf.configs import PRESETS, preset


def define_flags(values: flags.FlagValues) -> None:
    runner.define_flags(
        values,
        "Name of the default run folder, runs/<preset or custom>/<network>/<fold> (default: run).",
        default_fold=None,
    )
    flags.DEFINE_enum(
        "preset",
        None,
        sorted(PRESETS),
        "Preset to start from (cpu2d, cpu3d: CPU-sized); --config's keys override it.",
        flag_values=values,
    )


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    if not values.config and not values.preset:
        raise app.UsageError("give --preset NAME or --config FILE.json")
    base = preset(values.preset) if values.preset else None
    return runner.run(values.preset or "custom", base, runner.RunOptions.from_flags(values))


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
