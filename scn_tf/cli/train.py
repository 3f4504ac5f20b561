"""scn-train: SCN (or U-Net, LA-Net) on your own 2D or 3D landmark data.

  scn-augment --preset skull2d --print_config > my.json      # start from a preset, edit "data"
  scn-train --config my.json --data_dir DATA --train_ids train.txt --test_ids test.txt --output_dir runs/my

The run folder is a model folder for scn-predict; the flags of the experiment scripts apply
(--iterations, --image_size, --filters, --network, --resume, --eval_every, --validation_fraction, ...).
"""

from __future__ import annotations

from absl import app, flags

from scn_tf.cli import runner

runner.define_flags("unused by scn-train (the split comes from --train_ids / --test_ids)", default_fold=None)
flags.adopt_module_key_flags(runner)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.config:
        raise app.UsageError("--config FILE.json is required")
    return runner.run("custom", None, None)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
