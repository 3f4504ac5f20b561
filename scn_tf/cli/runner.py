"""The command line shared by experiments/<dataset>.py and scn-train: flags, configuration, one run.

Configuration precedence: the dataset preset (with its per-network settings), then `--config FILE.json`,
then the individual flags (`--iterations`, `--image_size`, `--filters`, ...).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable

from absl import flags

from scn_tf.configs import ExperimentConfig, load_config
from scn_tf.data.io import DataError, read_id_list
from scn_tf.splits import SPLITS_DIR as SPLITS_DIR

FLAGS = flags.FLAGS


def define_flags(fold_help: str, default_fold: str | None, default_data_dir: str | None = None) -> None:
    flags.DEFINE_string("data_dir", default_data_dir, "Dataset folder; the configuration's paths are relative to it.")
    flags.DEFINE_string("output_dir", None, "Run folder (default: runs/<dataset>/<network>/<fold>).")
    flags.DEFINE_string("fold", default_fold, fold_help)
    flags.DEFINE_enum("network", None, ["scn", "unet", "la"], "Network (default: the configuration's).")
    flags.DEFINE_integer("iterations", None, "Training iterations.")
    flags.DEFINE_list("image_size", None, "Network input size, x,y[,z]; a fixed network spacing is scaled so "
                      "that the field of view stays the same.")
    flags.DEFINE_integer("filters", None, "Filters per convolution.")
    flags.DEFINE_float("learning_rate", None, "Learning rate.")
    flags.DEFINE_integer("seed", None, "Random seed.")
    flags.DEFINE_bool("resume", False, "Continue the run in --output_dir from its last checkpoint.")
    flags.DEFINE_integer("eval_every", 0, "Evaluate every N iterations, for curves only (0: at the end only).")
    flags.DEFINE_float("validation_fraction", 0.0, "Hold out this fraction of the training ids and keep the "
                       "best-validation weights besides the last.")
    flags.DEFINE_string("train_ids", None, "File of training ids (overrides the fold's).")
    flags.DEFINE_string("test_ids", None, "File of test ids (overrides the fold's).")
    flags.DEFINE_string("config", None, "JSON configuration whose keys override the preset's.")
    flags.DEFINE_bool("describe", False, "Print the resolved configuration as JSON and the trainable weight count, "
                      "then exit.")
    flags.DEFINE_bool("mixed_precision", False, "mixed_float16 with loss scaling (GPU); sigmas, targets and loss "
                      "stay float32.")
    flags.DEFINE_bool("xla", False, "Compile the training step with XLA.")
    flags.DEFINE_integer("workers", 2, "Parallel data-pipeline workers.")
    flags.DEFINE_enum("strategy", "none", ["none", "mirrored", "multi_worker"],
                      "Data-parallel training: 'mirrored' over the GPUs of this machine, 'multi_worker' over the "
                      "machines in TF_CONFIG; the global batch is replicas x the configured batch size.")


def resolve_config(base: ExperimentConfig | None, network_overrides: dict | None = None) -> ExperimentConfig:
    """Preset -> per-network settings -> --config file -> flags."""
    config = base
    if FLAGS.network and base is not None and FLAGS.network != base.network.network:
        overrides = {"network": {"network": FLAGS.network}}
        for section, values in (network_overrides or {}).get(FLAGS.network, {}).items():
            overrides.setdefault(section, {}).update(values)
        config = config.updated(overrides)
    if FLAGS.config:
        config = load_config(FLAGS.config, config)
    if config is None:
        raise ValueError("give --config FILE.json (for example from `scn-augment --preset NAME --print_config`)")
    overrides = {"network": {}, "training": {}, "data": {}}
    if FLAGS.network:
        overrides["network"]["network"] = FLAGS.network
    if FLAGS.filters is not None:
        overrides["network"]["filters"] = FLAGS.filters
    if FLAGS.iterations is not None:
        overrides["training"]["iterations"] = FLAGS.iterations
    if FLAGS.learning_rate is not None:
        overrides["training"]["learning_rate"] = FLAGS.learning_rate
    if FLAGS.seed is not None:
        overrides["training"]["seed"] = FLAGS.seed
    if FLAGS.xla:
        overrides["training"]["xla"] = True
    if FLAGS.mixed_precision:
        overrides["training"]["mixed_precision"] = True
    if FLAGS.image_size:
        size = [int(v) for v in FLAGS.image_size]
        overrides["data"]["image_size"] = size
        if config.data.spacing is not None:  # keep the field of view: coarser pixels for a smaller input
            overrides["data"]["spacing"] = [s * old / new for s, old, new in
                                            zip(config.data.spacing, config.data.image_size, size)]
    return config.updated(overrides)


def read_split(path: Path) -> list[str]:
    if not path.exists():
        raise DataError(f"{path}: split list does not exist")
    return read_id_list(path)


def run(name: str, base: ExperimentConfig | None, splits: Callable[[str], tuple[list[str], list[str]]] | None,
        adapt: Callable[[ExperimentConfig, Path], ExperimentConfig] | None = None,
        network_overrides: dict | None = None) -> int:
    """Resolves the configuration and the split, then describes or trains and evaluates one run."""
    from scn_tf.experiment import Experiment, trainable_weights

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        config = resolve_config(base, network_overrides)
        output_dir = Path(FLAGS.output_dir or Path("runs") / name / config.network.network / str(FLAGS.fold or "run"))
        if adapt is not None:
            config = adapt(config, output_dir)
    except (ValueError, DataError) as error:
        logging.error("%s", error)
        return 1
    if FLAGS.describe:
        sys.stdout.write(config.to_json() + "\n")
        sys.stdout.write(f"trainable_weights: {trainable_weights(config)}\n")
        return 0
    if not FLAGS.data_dir:
        logging.error("--data_dir is required")
        return 1
    try:
        train_ids, test_ids = splits(FLAGS.fold) if splits is not None else ([], [])
        if FLAGS.train_ids:
            train_ids = read_split(Path(FLAGS.train_ids))
        if FLAGS.test_ids:
            test_ids = read_split(Path(FLAGS.test_ids))
        if not train_ids:
            raise DataError("no training ids: give --train_ids FILE")
        experiment = Experiment(config, FLAGS.data_dir, train_ids, test_ids, output_dir, resume=FLAGS.resume,
                                eval_every=FLAGS.eval_every, validation_fraction=FLAGS.validation_fraction,
                                workers=FLAGS.workers, strategy=FLAGS.strategy)
        metrics = experiment.run()
    except (ValueError, DataError, OSError) as error:  # DataError, OutputError, ModelDirError, TrainingError
        logging.error("%s", error)
        return 1
    if metrics:
        sys.stdout.write((output_dir / "summary.txt").read_text())
    logging.info("run folder: %s", output_dir)
    return 0
