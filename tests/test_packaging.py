"""The package as a user gets it: a wheel installed without the source tree, and the split lists."""

import os
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from scn_tf.data.io import DataError
from scn_tf.splits import split_ids

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [
    "scn-augment",
    "scn-predict",
    "scn-evaluate",
    "scn-train",
    "scn-convert",
    "scn-pack",
    "scn-calibrate",
    "scn-crop",
    "scn-plan",
    "scn-export",
]


def test_split_ids_reads_the_lists_of_data_splits():
    test1 = split_ids("isbi2015_ceph", "test1")
    assert len(test1) == 150 and test1[0] == "151" and test1[-1] == "300"
    assert split_ids("isbi2015_ceph", "test1.txt") == test1
    train = split_ids("hand_xray", "cv/set1/train")
    assert len(train) == len(set(train)) and not set(train) & set(split_ids("hand_xray", "cv/set1/test"))


def test_split_ids_names_what_is_missing_and_refuses_paths_out():
    with pytest.raises(DataError, match="isbi2015_ceph, spine_csi2014"):
        split_ids("isbi2015_ceph", "test3")
    with pytest.raises(DataError, match="relative"):
        split_ids("isbi2015_ceph", "../hand_xray/cv/set1/train")


def test_console_scripts_are_declared_once():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(project["scripts"]) == sorted(SCRIPTS)
    assert "version" in project["dynamic"] and "keras" in " ".join(project["dependencies"])


@pytest.mark.slow
def test_wheel_installed_without_the_source_tree_reads_splits_and_starts_every_script(tmp_path):
    wheels, venv, elsewhere = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the source tree on the path
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(wheels)],
        check=True,
        cwd=tmp_path,
        env=env,
    )
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    # the dependencies from this interpreter's site-packages (itself perhaps a virtual environment)
    site_packages = subprocess.run(
        [python, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    others = [p for p in site.getsitepackages() if "site-packages" in p]
    (Path(site_packages) / "dependencies.pth").write_text("\n".join(others) + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", *wheels.glob("*.whl")], check=True, env=env)
    probe = (
        "import scn_tf, scn_tf.splits as s; print(scn_tf.__file__); "
        "print(len(s.split_ids('isbi2015_ceph', 'test1')), len(s.split_ids('hand_xray', 'cv/set1/train')))"
    )
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=elsewhere, env=env, check=True)
    location, counts = result.stdout.split("\n")[:2]
    assert Path(location).is_relative_to(venv) and counts == f"150 {len(split_ids('hand_xray', 'cv/set1/train'))}"
    for script in SCRIPTS:
        started = subprocess.run([bin_dir / script, "--help"], capture_output=True, text=True, cwd=elsewhere, env=env)
        output = started.stdout + started.stderr
        assert started.returncode == 0 and "\nflags:\n  --" in started.stdout, output[-2000:]
        assert "Traceback" not in output and started.stderr == "", output[-2000:]
