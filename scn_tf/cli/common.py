"""What the console commands and experiment scripts share: flags defined per command and parsed only in its
entry point, --help that lists them, a quiet backend import, and a configuration from a preset and JSON."""

from __future__ import annotations

import logging as std_logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import app, flags
from absl import logging as absl_logging

from scn_tf.cli.quiet import LEVEL_VARIABLE, cpp_logs_filtered, without_tensorflow_info
from scn_tf.configs import ExperimentConfig, load_config, preset
from scn_tf.cpu_kernels import choose_cpu_kernels
from scn_tf.files import OutputError, Terminated, disk_full, interrupts_raised

HELP_ARGUMENTS = ("-h", "--help", "-help", "--helpshort", "--helpfull")


def import_backend_quietly(config: ExperimentConfig | None = None) -> str:
    """Imports Keras and its backend, TensorFlow without its C++ start-up lines; returns the backend's name.

    Under TensorFlow (the default) TF_CPP_MIN_LOG_LEVEL is set to 3 and TensorFlow's Python INFO records are
    dropped (the commands' INFO verbosity is for their own lines) unless the user set the level; as TensorFlow
    prints some lines before it reads that level, file descriptor 2 points at /dev/null during the import
    (restored after it). With `config`, TensorFlow's CPU kernels are chosen for its network first
    (scn_tf.cpu_kernels). Under another backend (KERAS_BACKEND=jax) TensorFlow is not imported at all.
    """
    if LEVEL_VARIABLE not in os.environ:
        os.environ[LEVEL_VARIABLE] = "3"
        for name in ("absl", "tensorflow"):  # TensorFlow logs through both
            std_logging.getLogger(name).addFilter(without_tensorflow_info)
    absl_logging.set_verbosity(absl_logging.INFO)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow" or "tensorflow" in sys.modules:
        import keras

        return keras.backend.backend()
    choose_cpu_kernels(config)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return keras.backend.backend()


def flag_help(values: flags.FlagValues) -> str:
    """One entry per flag: `--name: help (default: value)`, wrapped."""
    lines = []
    for name in sorted(values):
        flag = values[name]
        if flag.name != name:  # a short name repeats its flag
            continue
        default = "" if flag.default is None else f" (default: {flag.default_as_str.strip(chr(39))})"
        lines.append(f"  --{name}: {' '.join(flag.help.split())}{default}")
    return "\n".join(textwrap.fill(line, 110, subsequent_indent="      ", break_on_hyphens=False) for line in lines)


def command(
    main: Callable[[flags.FlagValues, list[str]], int | None],
    define_flags: Callable[[flags.FlagValues], None],
    doc: str | None,
) -> Callable[..., int]:
    """A command's entry point: `run(argv=None) -> exit status`.

    Each call defines the command's flags on a fresh FlagValues (so a command runs twice in one process, as
    in the tests), prints `doc` and the flags for --help/-h (exit 0), reports flag and usage errors with a
    pointer to --help (exit 1), and otherwise calls `main(values, positional arguments)`. SIGINT and SIGTERM
    end it through an exception, so that partial outputs are removed: exit 130 for SIGINT, 1 for SIGTERM,
    with a message; an output error or a full disk that the command did not report ends it with exit 1.
    Run as the process's own command (`argv` None), its stderr passes through `cpp_logs_filtered` for the
    whole run: TensorFlow's C++ log lines are dropped, everything else is forwarded.
    """

    def run(argv: Sequence[str] | None = None) -> int:
        if argv is None:
            with cpp_logs_filtered():
                return invoke(list(sys.argv))
        return invoke(list(argv))

    def invoke(argv: list[str]) -> int:
        program = Path(argv[0]).name if argv else "command"
        values = flags.FlagValues()
        define_flags(values)
        options = argv[1 : argv.index("--")] if "--" in argv else argv[1:]
        if any(argument in HELP_ARGUMENTS for argument in options):
            sys.stdout.write(f"{(doc or program).strip()}\n\nflags:\n{flag_help(values)}\n")
            return 0
        try:
            arguments = values(argv)
        except flags.Error as error:
            sys.stderr.write(f"{program}: {error}\nTry {program} --help.\n")
            return 1
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()  # absl logging reads the global flags
        absl_logging.use_absl_handler()
        absl_logging.set_verbosity(absl_logging.INFO)
        try:
            with interrupts_raised():
                return int(main(values, arguments[1:]) or 0)
        except app.UsageError as error:
            sys.stderr.write(f"{program}: {error}\nTry {program} --help.\n")
            return 1
        except KeyboardInterrupt:
            absl_logging.error("%s: interrupted (SIGINT); no partial output left", program)
            return 130
        except Terminated:
            absl_logging.error("%s: interrupted (SIGTERM); no partial output left", program)
            return 1
        except OutputError as error:
            absl_logging.error("%s", error)
            return 1
        except OSError as error:
            if not disk_full(error):
                raise
            absl_logging.error("disk full: %s", error)
            return 1

    return run


def resolve_config(preset_name: str | None, config_file: str | None) -> ExperimentConfig:
    """The preset, overridden by the JSON file's keys; or the file alone when no preset is named."""
    if preset_name is None and config_file is None:
        raise ValueError("name a --preset or give a --config FILE.json")
    base = preset(preset_name) if preset_name else None
    return load_config(config_file, base) if config_file else base
