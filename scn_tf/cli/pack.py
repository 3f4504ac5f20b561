"""scn-pack: what a GPU machine without a package index needs for a JAX run, in packs of at most --max_mib.

  scn-pack wheels --output packs/wheels [--python_version 3.12] [--also NAME==VERSION,...]
  scn-pack data --data_dir DATA --preset skull2d --ids train.txt --files annotations/challenge_mm.csv \
      --output packs/isbi_train

wheels: keras with the small packages it needs that GPU images lack (namex, optree) and SimpleITK, at the
versions installed here, as binary wheels for the target Python on manylinux x86-64 (such images ship JAX,
NumPy, h5py, absl-py, rich, ml-dtypes, matplotlib and tensorboard; --also adds more). data: the images of
the listed ids (the configuration's image folder and suffix), the id lists themselves and the landmark
files, in the data folder's layout, so that the pack is a --data_dir. Each pack is written completely or not
at all, with MANIFEST.json (files, bytes, SHA-256), and refused above --max_mib. On the GPU machine:

  python3 -m pip install --no-index --no-deps --target /tmp/site packs/wheels/*.whl
  PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax python3 experiments/skull2d.py --data_dir packs/isbi_train ...
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from absl import app, flags, logging

from scn_tf.cli.common import command, resolve_config
from scn_tf.configs import PRESETS
from scn_tf.data.io import DataError, read_id_list
from scn_tf.files import OutputError, inside
from scn_tf.model_dir import digest

WHEELS = ("keras", "namex", "optree", "SimpleITK")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
MIB = 2**20


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string("output", None, "Folder of the pack (must not exist, unless --overwrite).", flag_values=values)
    flags.DEFINE_integer("max_mib", 64, "Largest pack in MiB (one transfer).", flag_values=values)
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output folder.", flag_values=values)
    flags.DEFINE_string("python_version", "3.12", "wheels: the target machine's Python.", flag_values=values)
    flags.DEFINE_list("also", [], "wheels: more requirements, NAME==VERSION.", flag_values=values)
    flags.DEFINE_string("data_dir", None, "data: the dataset folder.", flag_values=values)
    flags.DEFINE_enum("preset", None, sorted(PRESETS), "data: configuration with the image folder.", flag_values=values)
    flags.DEFINE_string("config", None, "data: JSON configuration (over --preset).", flag_values=values)
    flags.DEFINE_list("ids", [], "data: id list files (relative to --data_dir or as given).", flag_values=values)
    flags.DEFINE_list(
        "files", [], "data: more files relative to --data_dir (default: the landmarks CSV).", flag_values=values
    )


def wheel_requirements(also: list[str]) -> list[str]:
    """NAME==VERSION of the packed packages, at the versions installed here, and `also`."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS] + list(also)


def download_wheels(requirements: list[str], python_version: str, folder: Path) -> None:
    """Binary wheels of `requirements` (without their dependencies) for CPython `python_version` on x86-64."""
    command_line = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(folder)]
    command_line += ["--python-version", python_version, "--implementation", "cp"]
    for platform in PLATFORMS:
        command_line += ["--platform", platform]
    result = subprocess.run(command_line + requirements, capture_output=True, text=True)
    if result.returncode != 0:
        reason = [line for line in result.stderr.splitlines() if line.startswith("ERROR")] or result.stderr.splitlines()
        raise OutputError(f"pip download failed for Python {python_version}: {' '.join(reason[-2:])}")


def data_files(values: flags.FlagValues) -> list[tuple[Path, str]]:
    """(source, path in the pack) of the images of the listed ids, the lists and the landmark files."""
    if not values.data_dir or not values.ids:
        raise app.UsageError("data needs --data_dir and --ids")
    config = resolve_config(values.preset, values.config).data
    data_dir = Path(values.data_dir)
    files = []
    for name in values.ids:
        path = Path(name) if Path(name).exists() else data_dir / name
        if not path.exists():
            raise DataError(f"id list {name} not found as given nor in {data_dir}")
        files.append((path, path.name))
        for image_id in read_id_list(path):
            relative = f"{config.image_dir}/{image_id}{config.image_suffix}"
            if not (data_dir / relative).exists():
                raise DataError(f"{path}: id {image_id}: image {data_dir / relative} does not exist")
            files.append((data_dir / relative, relative))
    for relative in values.files or [config.landmarks_csv]:
        inside(data_dir, relative)
        if not (data_dir / relative).is_file():
            raise DataError(f"--files: {data_dir / relative} does not exist")
        files.append((data_dir / relative, relative))
    return list(dict((target, (source, target)) for source, target in files).values())


def finish(staging: Path, output: Path, max_mib: int, overwrite: bool) -> dict:
    """Checks the size, writes MANIFEST.json and moves the staging folder to `output`; returns the manifest."""
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    if total > max_mib * MIB:
        largest = sorted(files, key=lambda p: -p.stat().st_size)[:3]
        listing = ", ".join(f"{p.relative_to(staging)} {p.stat().st_size / MIB:.1f} MiB" for p in largest)
        raise OutputError(
            f"the pack would hold {total / MIB:.1f} MiB, over --max_mib {max_mib} (largest: {listing}); "
            "pack fewer ids or packages per call"
        )
    manifest = {
        "bytes": total,
        "files": {str(p.relative_to(staging)): {"bytes": p.stat().st_size, "sha256": digest(p)} for p in files},
    }
    (staging / "MANIFEST.json").write_text(json.dumps(manifest, indent=2))
    staging.chmod(0o755)
    if output.exists():
        shutil.rmtree(output)
    staging.rename(output)
    return manifest


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if len(arguments) != 1 or arguments[0] not in ("wheels", "data"):
        raise app.UsageError("give what to pack: wheels or data")
    if not values.output:
        raise app.UsageError("give --output FOLDER")
    output = Path(values.output)
    if output.exists() and not values.overwrite:
        logging.error("%s: exists; pass --overwrite to replace it", output)
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{output.name}-", dir=output.parent))
    try:
        if arguments[0] == "wheels":
            requirements = wheel_requirements(values.also)
            logging.info("downloading %s for Python %s", ", ".join(requirements), values.python_version)
            download_wheels(requirements, values.python_version, staging)
        else:
            for source, target in data_files(values):
                (staging / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, staging / target)
        manifest = finish(staging, output, values.max_mib, values.overwrite)
    except (ValueError, OSError) as error:
        logging.error("%s", error)
        return 1
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    sys.stdout.write(f"{output}: {len(manifest['files'])} files, {manifest['bytes'] / MIB:.1f} MiB\n")
    return 0


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
