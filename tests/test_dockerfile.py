"""What can be checked of the Dockerfile without a Docker engine."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_base_image_is_newest_tensorflow_pyproject_admits():
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM tensorflow/tensorflow:(\d+)\.(\d+)\.(\d+)-gpu$", dockerfile, re.M)
    assert base, "base must be an official tensorflow/tensorflow:<version>-gpu image"
    upper = re.search(r'"tensorflow>=[\d.]+,<(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert (int(base[1]), int(base[2])) == (int(upper[1]), int(upper[2]) - 1)


@pytest.mark.slow
def test_copied_paths_exist_and_commands_are_valid():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    command = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    arguments = json.loads(command[1])
    assert arguments[:2] == ["python", "experiments/spine3d.py"]
    result = subprocess.run(
        [sys.executable, *arguments[1:]], capture_output=True, encoding="utf-8", errors="replace", cwd=ROOT
    )
    assert result.returncode == 0 and json.loads(result.stdout)["trainable_weights"] == 5326196
    usage = re.search(r"docker run --gpus all .*?\n#\s+(python experiments/spine3d\.py[^\n]*)", dockerfile)
    flags = shlex.split(usage[1])[2:]
    described = subprocess.run(
        [sys.executable, "experiments/spine3d.py", *flags, "--describe"],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        cwd=ROOT,
    )
    assert described.returncode == 0, described.stderr[-2000:]
    assert '"mixed_precision": true' in described.stdout and '"xla": true' in described.stdout
