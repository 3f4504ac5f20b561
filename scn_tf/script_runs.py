"""Runs of the experiment scripts as subprocesses: skipped when finished, resumed when interrupted, timed.

Drivers such as experiments/cross_validation.py start one experiments/<name>.py process per run, so that a
run's memory goes when it ends and any run can be repeated alone with the command logged in its folder.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from scn_tf.files import write_json_atomic


def run_script(
    script: Path | str,
    arguments: Sequence[str],
    folder: Path,
    label: str,
    environment: Mapping[str, str] | None = None,
    module: bool = False,
) -> Path:
    """The Python script `script` (with `module`, the module of that name, `python -m`) with `arguments` and
    --output_dir `folder`, unless `folder` holds metrics.json.

    Adds --resume where checkpoints exist; appends the output to `folder`/run.log and writes `run.json` (the
    command and the wall seconds of the last, successful, process). Raises RuntimeError naming the log.
    """
    if (folder / "metrics.json").exists():
        logging.info("%s: finished before, skipped", label)
        return folder
    command = [sys.executable, *(["-m"] if module else []), str(script), *arguments, "--output_dir", str(folder)]
    if (folder / "checkpoints").exists():
        command.append("--resume")
    logging.info("%s: %s", label, " ".join(command))
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(folder / "run.log", "a") as log_file:
        result = subprocess.run(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(environment) if environment is not None else None,
        )
    if result.returncode != 0:
        raise RuntimeError(f"{label} failed (exit {result.returncode}); see {folder / 'run.log'}")
    write_json_atomic(
        folder / "run.json",
        {"command": command, "wall_seconds": time.perf_counter() - start, "resumed": "--resume" in command},
    )
    return folder


def wall_seconds(folder: Path) -> float | None:
    """The wall time `run_script` recorded for a run folder (None if it was not run through it)."""
    path = folder / "run.json"
    return json.loads(path.read_text())["wall_seconds"] if path.exists() else None


def device_environment(devices: Sequence[str], index: int) -> dict[str, str]:
    """This process's environment with CUDA_VISIBLE_DEVICES set to device `index` of `devices` (in turn)."""
    environment = dict(os.environ)
    if devices:
        environment["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
    return environment
