"""Runs the commands on bad inputs and prints, per input class, the exit code, the first error line and what
was left on disk, as a Markdown table.

  python benchmarks/bad_inputs.py [--root REPO]      # REPO: the scn_tf checkout to test (default: this one)

Each case builds its own tiny data set (conftest.write_dataset) in a temporary folder; the training cases
train a 4-filter SCN for 2 iterations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))
from conftest import write_dataset  # noqa: E402
from scn_tf.configs import AugmentationConfig, ExperimentConfig, NetworkConfig, TrainingConfig  # noqa: E402


def run(root: Path, module: str, *args) -> tuple[int, str]:
    environment = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", f"scn_tf.cli.{module}", *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        env=environment,
        cwd=root,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [
        line
        for line in lines
        if line.startswith(("E", "ERROR", "Traceback", "FATAL"))
        and "cuda" not in line.lower()
        and "remapper" not in line
        and "absl::" not in line
    ]
    if any(line.startswith("Traceback") for line in lines):
        first = "Traceback: " + lines[-1]
    elif errors:
        first = errors[0].split("] ", 1)[-1]
    else:  # no error: the first warning of the package, if any
        warnings = [line for line in lines if line.startswith("WARNING ") and "tensorflow" not in line]
        first = f"(warning) {warnings[0][len('WARNING ') :]}" if warnings else ""
    return result.returncode, first[:150]


def setup(folder: Path) -> dict:
    data = folder / "data"
    config = ExperimentConfig(
        write_dataset(data),
        AugmentationConfig(),
        NetworkConfig(filters=4, levels=2, spatial_kernel_size=3, spatial_downsampling=4),
        TrainingConfig(iterations=2, checkpoint_every=1, log_every=1),
    )
    values = config.to_dict()
    del values["training"]["sigma_min"]  # the default; older checkouts do not know the key
    (folder / "c.json").write_text(json.dumps(values))
    (folder / "train.txt").write_text("a\nb\n")
    (folder / "test.txt").write_text("c\n")
    return {"data": data, "config": folder / "c.json", "train": folder / "train.txt", "test": folder / "test.txt"}


def train_args(paths: dict, run_dir: Path, test: Path | None = None, *extra) -> list:
    return [
        "--config",
        paths["config"],
        "--data_dir",
        paths["data"],
        "--train_ids",
        paths["train"],
        "--test_ids",
        test or paths["test"],
        "--output_dir",
        run_dir,
        "--workers",
        "1",
        *extra,
    ]


def cases(root: Path, folder: Path):
    paths = setup(folder)
    data, images = paths["data"], paths["data"] / "images"
    trained = folder / "trained"
    run(root, "train", *train_args(paths, trained))

    code, line = run(
        root,
        "augment",
        "--config",
        paths["config"],
        "--data_dir",
        data,
        "--ids",
        "a,../../escape",
        "--samples",
        "1",
        "--output_dir",
        folder / "aug" / "x" / "y",
    )
    yield "augment --ids ../../escape", code, line, f"outside: {len(list(folder.glob('escape*')))} files"

    absolute = folder / "abs_test.txt"
    absolute.write_text(f"{images / 'c'}\n")
    csv = data / "landmarks.csv"
    original_csv = csv.read_text()
    csv.write_text(original_csv + original_csv.splitlines()[2].replace("c,", f"{images / 'c'},", 1) + "\n")
    code, line = run(root, "train", *train_args(paths, folder / "abs", absolute))
    csv.write_text(original_csv)
    yield "train, absolute test id", code, line, f"c.png beside the source: {(images / 'c.png').exists()}"

    config_before = (trained / "config.json").read_text()
    code, line = run(
        root, "train", *train_args(paths, trained, None, "--resume", "--filters", "8", "--iterations", "3")
    )
    changed = (trained / "config.json").read_text() != config_before
    yield "--resume with other --filters", code, line, f"config.json rewritten: {changed}"

    code, line = run(
        root, "train", *train_args(paths, trained, None, "--resume", "--image_size", "48,48", "--iterations", "3")
    )
    yield "--resume with other --image_size", code, line, ""

    garbage = folder / "garbage"
    run(root, "train", *train_args(paths, garbage))
    (garbage / "checkpoints" / "checkpoint").write_text("garbage {{{")
    code, line = run(root, "train", *train_args(paths, garbage, None, "--resume", "--iterations", "3"))
    sigmas = garbage / "sigmas.json"
    steps = json.loads(sigmas.read_text()).get("step") if sigmas.exists() else None
    yield "garbage checkpoints/checkpoint + --resume", code, line, f"sigmas.json step {steps}"

    truncated = folder / "truncated"
    run(root, "train", *train_args(paths, truncated))
    newest = max(
        (truncated / "checkpoints").glob("ckpt-*.data-*"), key=lambda path: int(path.name.split("-")[1].split(".")[0])
    )
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    code, line = run(root, "train", *train_args(paths, truncated, None, "--resume", "--iterations", "3"))
    yield "truncated latest checkpoint + --resume", code, line, ""

    missing = folder / "missing_test.txt"
    missing.write_text("c\n")
    (images / "c.mha").rename(images / "c.hidden")
    code, line = run(root, "train", *train_args(paths, folder / "miss", missing))
    (images / "c.hidden").rename(images / "c.mha")
    yield "missing test image", code, line, f"checkpoints left: {(folder / 'miss' / 'checkpoints').exists()}"

    for name, flags in (
        ("--iterations -5", ["--iterations", "-5"]),
        ("--learning_rate -0.1", ["--learning_rate", "-0.1"]),
    ):
        code, line = run(root, "train", *train_args(paths, folder / name.strip("-").split()[0], None, *flags))
        yield name, code, line, f"weights written: {(folder / name.strip('-').split()[0] / 'last.weights.h5').exists()}"

    nan = folder / "nan.mha"
    array = np.ones((50, 60), np.float32)
    array[5, 5] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(nan))
    code, line = run(root, "predict", "--model_dir", trained, "--output", folder / "nan.csv", images / "a.mha", nan)
    yield "predict, an image with a NaN pixel", code, line, f"output written: {(folder / 'nan.csv').exists()}"

    jpeg = folder / "cut.jpg"
    sitk.WriteImage(
        sitk.GetImageFromArray((np.random.default_rng(0).random((50, 60)) * 255).astype(np.uint8)), str(jpeg)
    )
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    code, line = run(root, "predict", "--model_dir", trained, "--output", folder / "cut.csv", jpeg)
    yield "predict, JPEG cut off halfway", code, line, f"output written: {(folder / 'cut.csv').exists()}"

    for sub in ("x", "y"):
        (folder / sub).mkdir()
        (folder / sub / "a.mha").symlink_to(images / ("a.mha" if sub == "x" else "b.mha"))
    code, line = run(
        root,
        "predict",
        "--model_dir",
        trained,
        "--output",
        folder / "same.csv",
        folder / "x" / "a.mha",
        folder / "y" / "a.mha",
    )
    rows = len((folder / "same.csv").read_text().splitlines()) if (folder / "same.csv").exists() else 0
    yield "predict, two inputs named a.mha", code, line, f"rows: {rows} of 2"

    code, line = run(root, "predict", "--model_dir", trained, "--output", folder / "same.csv", images / "a.mha")
    yield "predict onto an existing output", code, line, ""

    code, line = run(root, "predict", "--model_dir", trained, "--output", images / "a.mha" / "p.csv", images / "a.mha")
    yield "predict, output below a file", code, line, ""

    code, line = run(
        root,
        "evaluate",
        "--predictions",
        trained / "predictions.csv",
        "--ground_truth",
        data / "landmarks.csv",
        "--ids",
        paths["test"],
        "--output_dir",
        folder / "ev",
        "--radii",
        "2,-2",
        "--ndim",
        "2",
    )
    yield "evaluate --radii 2,-2", code, line, f"reports written: {(folder / 'ev' / 'metrics.json').exists()}"

    hand = folder / "hand"
    (hand / "img").mkdir(parents=True)
    for name in ("310", "312"):  # 31 has no image
        sitk.WriteImage(
            sitk.GetImageFromArray(np.full((4, 4), float(name), np.float32)), str(hand / "img" / f"{name}.mha")
        )
    (hand / "all.csv").write_text("310,1,1\n31,1,1\n312,1,1\n")
    code, line = run(
        root,
        "convert",
        "--dataset",
        "hand",
        "--images",
        hand / "img",
        "--landmarks",
        hand / "all.csv",
        "--output_dir",
        hand / "out",
    )
    target = hand / "out" / "images" / "31.mha"
    linked = target.resolve().name if target.exists() else None
    yield "convert hand: id 31 without an image, 310 with one", code, line, f"31 -> {linked}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(HERE), help="scn_tf checkout whose commands are run")
    root = Path(parser.parse_args().root).resolve()
    print(f"root: {root}\n\n| input | exit | first error line | on disk |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, code, line, effect in cases(root, Path(folder)):
            print(f"| {name} | {code} | {line.replace('|', '/')} | {effect} |", flush=True)


if __name__ == "__main__":
    main()
