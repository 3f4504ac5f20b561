"""scn-plan: a configuration planned from your data set, for scn-train --config.

  scn-plan --data_dir DATA [--landmarks landmarks.csv] [--budget cpu|gpu] [--minutes 10] > plan.json
  scn-train --config plan.json --data_dir DATA --train_ids train.txt --test_ids test.txt --output_dir runs/my

Reads the image headers, the landmarks and a sample of the pixels of DATA (layout: images/<id><suffix> and a
landmark CSV, with or without a header row; only ids with both are used) and writes a complete configuration
to stdout: image frame and spacing, field of view, input size and network spacing, intensity mapping,
sigma, spatial configuration and iterations (scn_tf.planning). With the CPU budget a few training steps are
timed on this machine so that scn-train takes about --minutes; the GPU budget takes the paper's sizes.
One line per decision and its reason goes to stderr; nothing but the plan goes to stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from absl import app, flags, logging

from scn_tf.cli.common import command, import_backend_quietly
from scn_tf.data.io import DataError


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string("data_dir", None, "The data set's folder.", required=True, flag_values=values)
    flags.DEFINE_string("landmarks", "landmarks.csv", "Landmark CSV, relative to --data_dir.", flag_values=values)
    flags.DEFINE_enum("budget", "cpu", ["cpu", "gpu"], "What the training runs on.", flag_values=values)
    flags.DEFINE_float("minutes", 10.0, "CPU budget: the wall time of the whole scn-train command.", flag_values=values)
    flags.DEFINE_enum(
        "landmark_units",
        None,
        ["pixel", "mm"],
        "Units of the landmark CSV (default: pixel for PNG/JPEG/BMP images, else mm).",
        flag_values=values,
    )
    flags.DEFINE_list(
        "image_spacing", None, "x,y[,z] mm per pixel, overriding the headers (e.g. for PNGs).", flag_values=values
    )


@contextlib.contextmanager
def stdout_to_stderr():
    """Everything written to stdout (Python's and file descriptor 1) goes to stderr meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    if values.minutes <= 0:
        raise app.UsageError(f"--minutes must be positive, got {values.minutes}")
    spacing = [float(v) for v in values.image_spacing] if values.image_spacing else None
    from scn_tf import planning

    with stdout_to_stderr():
        try:
            found = planning.survey(Path(values.data_dir), values.landmarks, values.landmark_units, spacing)
            if values.budget == "cpu":
                import_backend_quietly()
            config, decisions = planning.plan(
                values.data_dir,
                values.landmarks,
                values.budget,
                values.minutes,
                values.landmark_units,
                spacing,
                found=found,
            )
        except (DataError, ValueError, OSError) as error:
            logging.error("%s", error)
            return 1
        for decision in decisions:
            sys.stderr.write(f"plan: {decision.key} = {json.dumps(decision.value)}: {decision.reason}\n")
    sys.stdout.write(json.dumps(config.to_dict(), indent=2) + "\n")
    return 0


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
