"""The command line shared by experiments/<dataset>.py and scn-train: flags, typed options, one run.

Configuration precedence: the dataset preset (with its per-network settings), then `--config FILE.json`,
then the individual flags (`--iterations`, `--image_size`, `--filters`, ...). Flags are read once, into a
`RunOptions`, in the command's main; the functions here take the options.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from absl import flags

from scn_tf.configs import ExperimentConfig, load_config
from scn_tf.data.io import DataError, read_id_list
from scn_tf.files import Terminated, disk_full
from scn_tf.splits import SPLITS_DIR as SPLITS_DIR


@dataclasses.dataclass
class RunOptions:
    """One run's command-line choices (None: the configuration's value)."""

    data_dir: str | None = None
    output_dir: str | None = None
    fold: str | None = None
    network: str | None = None
    iterations: int | None = None
    image_size: list[int] | None = None
    filters: int | None = None
    learning_rate: float | None = None
    seed: int | None = None
    resume: bool = False
    overwrite: bool = False
    eval_every: int = 0
    validation_fraction: float = 0.0
    calibration_fraction: float = 0.0
    train_ids: str | None = None
    test_ids: str | None = None
    config: str | None = None
    describe: bool = False
    mixed_precision: bool = False
    xla: bool = False
    workers: int = 2
    strategy: str = "none"

    @classmethod
    def from_flags(cls, values: flags.FlagValues) -> RunOptions:
        options = cls(**{field.name: values[field.name].value for field in dataclasses.fields(cls)})
        if options.image_size:
            options.image_size = [int(v) for v in options.image_size]
        return options


def define_flags(
    values: flags.FlagValues, fold_help: str, default_fold: str | None, default_data_dir: str | None = None
) -> None:
    """The flags of RunOptions, on `values`."""

    def define(kind: str, name: str, default, help_text: str) -> None:
        getattr(flags, f"DEFINE_{kind}")(name, default, help_text, flag_values=values)

    define("string", "data_dir", default_data_dir, "Dataset folder; the configuration's paths are relative to it.")
    define("string", "output_dir", None, "Run folder (default: runs/<dataset>/<network>/<fold>).")
    define("string", "fold", default_fold, fold_help)
    flags.DEFINE_enum(
        "network", None, ["scn", "unet", "la"], "Network (default: the configuration's).", flag_values=values
    )
    define("integer", "iterations", None, "Training iterations.")
    define(
        "list",
        "image_size",
        None,
        "Network input size, x,y[,z]; a fixed network spacing is scaled so that the field of view stays the same.",
    )
    define("integer", "filters", None, "Filters per convolution.")
    define("float", "learning_rate", None, "Learning rate.")
    define("integer", "seed", None, "Random seed.")
    define("bool", "resume", False, "Continue the run in --output_dir from its last checkpoint.")
    define(
        "bool",
        "overwrite",
        False,
        "Train a new run in an --output_dir that holds files: an earlier run's checkpoints, logs, weights and "
        "reports are removed first (without it, training writes only into a new or empty folder, or --resume).",
    )
    define("integer", "eval_every", 0, "Evaluate every N iterations, for curves only (0: at the end only).")
    define(
        "float",
        "validation_fraction",
        0.0,
        "Hold out this fraction of the training ids and keep the best-validation weights besides the last.",
    )
    define(
        "float",
        "calibration_fraction",
        0.0,
        "Hold out this fraction of the training ids and calibrate the last weights on them at the end "
        "(calibration.json: error radii and presence for scn-predict; scn-calibrate does it later).",
    )
    define(
        "string",
        "train_ids",
        None,
        "File of training ids, one per line (overrides the fold's); looked for as given, then in --data_dir.",
    )
    define(
        "string", "test_ids", None, "File of test ids (overrides the fold's); looked for as given, then in --data_dir."
    )
    define("string", "config", None, "JSON configuration whose keys override the preset's.")
    define(
        "bool",
        "describe",
        False,
        "Print the resolved configuration as JSON, with the trainable weight count "
        "as key trainable_weights, then exit.",
    )
    define(
        "bool",
        "mixed_precision",
        False,
        "mixed_float16 with loss scaling (GPU); sigmas, targets and loss stay float32.",
    )
    define("bool", "xla", False, "Compile the training step with XLA.")
    define("integer", "workers", 2, "Parallel data-pipeline workers.")
    flags.DEFINE_enum(
        "strategy",
        "none",
        ["none", "mirrored", "multi_worker"],
        "Data-parallel training: 'mirrored' over the GPUs of this machine, 'multi_worker' over the "
        "machines in TF_CONFIG; the global batch is replicas x the configured batch size.",
        flag_values=values,
    )


def resolve_config(
    base: ExperimentConfig | None, options: RunOptions, network_overrides: dict | None = None
) -> ExperimentConfig:
    """Preset -> per-network settings -> --config file -> flags."""
    config = base
    if options.network and base is not None and options.network != base.network.network:
        overrides = {"network": {"network": options.network}}
        for section, values in (network_overrides or {}).get(options.network, {}).items():
            overrides.setdefault(section, {}).update(values)
        config = config.updated(overrides)
    if options.config:
        config = load_config(options.config, config)
    if config is None:
        raise ValueError(
            "give --preset NAME or --config FILE.json (for example from `scn-augment --preset cpu2d --print_config`)"
        )
    overrides = {"network": {}, "training": {}, "data": {}}
    if options.network:
        overrides["network"]["network"] = options.network
    if options.filters is not None:
        overrides["network"]["filters"] = options.filters
    if options.iterations is not None:
        overrides["training"]["iterations"] = options.iterations
    if options.learning_rate is not None:
        overrides["training"]["learning_rate"] = options.learning_rate
    if options.seed is not None:
        overrides["training"]["seed"] = options.seed
    if options.xla:
        overrides["training"]["xla"] = True
    if options.mixed_precision:
        overrides["training"]["mixed_precision"] = True
    if options.image_size:
        size = list(options.image_size)
        overrides["data"]["image_size"] = size
        if config.data.spacing is not None:  # keep the field of view: coarser pixels for a smaller input
            overrides["data"]["spacing"] = [
                s * old / new for s, old, new in zip(config.data.spacing, config.data.image_size, size, strict=True)
            ]
    return config.updated(overrides)


def read_split(path: Path) -> list[str]:
    if not path.exists():
        raise DataError(f"{path}: split list does not exist")
    return read_id_list(path)


def find_id_list(path: str, data_dir: str | None) -> Path:
    """An id list file as given (relative to the working directory), else relative to `data_dir`."""
    given = Path(path)
    if given.exists():
        return given
    places = [given.resolve()]
    if data_dir is not None and not given.is_absolute():
        candidate = Path(data_dir) / given
        if candidate.exists():
            return candidate
        places.append(candidate.resolve())
    raise DataError(f"id list {path} not found: looked for {' and for '.join(map(str, places))}")


def describe(config: ExperimentConfig) -> str:
    """The configuration as JSON with its trainable weight count as top-level key "trainable_weights" (which
    --config ignores, so the output reads back as a configuration)."""
    from scn_tf.experiment import trainable_weights

    return json.dumps({**config.to_dict(), "trainable_weights": trainable_weights(config)}, indent=2)


def run(
    name: str,
    base: ExperimentConfig | None,
    options: RunOptions,
    splits: Callable[[str | None], tuple[list[str], list[str]]] | None = None,
    adapt: Callable[[ExperimentConfig, Path], ExperimentConfig] | None = None,
    network_overrides: dict | None = None,
) -> int:
    """Resolves the configuration and the split, then describes or trains and evaluates one run.

    The configuration, --data_dir and the id lists are checked before the backend (TensorFlow) is imported,
    so that a misspelt name is reported at once; the backend's CPU kernels are chosen for the network."""
    from scn_tf.cli.common import import_backend_quietly

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        config = resolve_config(base, options, network_overrides)
        output_dir = Path(
            options.output_dir or Path("runs") / name / config.network.network / str(options.fold or "run")
        )
        if options.describe:
            config = adapt(config, output_dir) if adapt is not None else config
            import_backend_quietly(config)
            sys.stdout.write(describe(config) + "\n")
            return 0
        if not options.data_dir:
            raise DataError("--data_dir is required")
        if not Path(options.data_dir).is_dir():
            raise DataError(f"--data_dir {options.data_dir}: folder does not exist")
        train_ids, test_ids = splits(options.fold) if splits is not None else ([], [])
        if options.train_ids:
            train_ids = read_split(find_id_list(options.train_ids, options.data_dir))
        if options.test_ids:
            test_ids = read_split(find_id_list(options.test_ids, options.data_dir))
        if not train_ids:
            raise DataError("no training ids: give --train_ids FILE")
        if adapt is not None:
            config = adapt(config, output_dir)
    except (ValueError, DataError, OSError) as error:
        logging.error("%s", error)
        return 1
    import_backend_quietly(config)
    from scn_tf.experiment import Experiment

    try:
        experiment = Experiment(
            config,
            options.data_dir,
            train_ids,
            test_ids,
            output_dir,
            resume=options.resume,
            overwrite=options.overwrite,
            eval_every=options.eval_every,
            validation_fraction=options.validation_fraction,
            calibration_fraction=options.calibration_fraction,
            workers=options.workers,
            strategy=options.strategy,
        )
        metrics = experiment.run()
    except (ValueError, DataError, OSError) as error:  # DataError, OutputError, ModelDirError, TrainingError
        logging.error("%s%s", "disk full: " if disk_full(error) and not isinstance(error, ValueError) else "", error)
        return 1
    except Exception as error:  # a framework's own error for a full disk while it writes a checkpoint
        if not disk_full(error):
            raise
        logging.error(
            "disk full while training into %s: %s; the checkpoints written so far are kept", output_dir, error
        )
        return 1
    except (KeyboardInterrupt, Terminated):
        logging.info("%s: the checkpoints written so far are kept; --resume continues the run", output_dir)
        raise
    if metrics:
        sys.stdout.write((output_dir / "summary.txt").read_text())
    logging.info("run folder: %s", output_dir)
    return 0
