"""Runs the commands on bad inputs and prints, per input class, the exit code, the first error line and what
was left on disk, as a Markdown table.

  python benchmarks/bad_inputs.py [--root REPO] [--only GROUP]   # REPO: the checkout to test (default: this one)

Each case builds its own tiny data set (conftest.write_dataset) in a temporary folder; the training cases
train a 4-filter SCN for 2 iterations.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))
from conftest import write_dataset  # noqa: E402
from scn_tf.configs import AugmentationConfig, ExperimentConfig, NetworkConfig, TrainingConfig  # noqa: E402
from scn_tf.listing import shortened  # noqa: E402


def run(
    root: Path, module: str, *args, file_size_limit: int | None = None, address_space: int | None = None
) -> tuple[int, str]:
    """The command's exit status and its first error line; with `file_size_limit`, files above that many bytes
    fail to be written (EFBIG, SIGXFSZ ignored), as on a full disk; with `address_space`, the process may map
    at most that many bytes (so that a decoder asked for 30 GiB fails instead of swapping)."""
    environment = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}

    def limit():
        if file_size_limit:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
        if address_space:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, resource.RLIM_INFINITY))

    result = subprocess.run(
        [sys.executable, "-m", f"scn_tf.cli.{module}", *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        env=environment,
        cwd=root,
        preexec_fn=limit if file_size_limit or address_space else None,
    )
    return result.returncode, first_error(result.stderr)


def interrupted(root: Path, module: str, *args, watch: Path, number: int = signal.SIGTERM) -> tuple[int, str]:
    """The command, sent signal `number` once a file appears below `watch` (as it starts writing)."""
    environment = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, "-m", f"scn_tf.cli.{module}", *map(str, args)],
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",
        env=environment,
        cwd=root,
    )
    while process.poll() is None and not any(path.is_file() for path in watch.rglob("*")):
        time.sleep(0.005)
    process.send_signal(number)
    _, stderr = process.communicate()
    return process.returncode, first_error(stderr)


def first_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
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
    return first[:150]


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


def listing(folder: Path) -> str:
    """The files below `folder` (links marked), or 'nothing'."""
    names = sorted(
        str(path.relative_to(folder)) + (" (link)" if path.is_symlink() else "")
        for path in folder.rglob("*")
        if path.is_file() or path.is_symlink()
    )
    return shortened(names, 6) if names else "nothing"


def output_cases(root: Path, folder: Path):
    """Data loss, partial outputs, interruptions and full disks."""
    paths = setup(folder)
    data, images = paths["data"], paths["data"] / "images"
    trained = folder / "trained"
    run(root, "train", *train_args(paths, trained))

    own = folder / "own"
    shutil.copytree(data, own)
    (own / "all.csv").write_text((own / "landmarks.csv").read_text())
    code, line = run(
        root, "convert", "--dataset", "hand", "--images", own / "images", "--landmarks", own / "all.csv",
        "--output_dir", own,
    )  # fmt: skip
    regular = sum(1 for path in (own / "images").iterdir() if path.is_file() and not path.is_symlink())
    yield "convert into the download's own folder", code, line, f"image files left: {regular} of 3"

    target = folder / "converted"
    (target / "images").mkdir(parents=True)
    (target / "images" / "a.mha").write_text("mine")
    code, line = run(
        root, "convert", "--dataset", "hand", "--images", images, "--landmarks", own / "all.csv", "--output_dir", target
    )
    mine = (target / "images" / "a.mha").is_file() and not (target / "images" / "a.mha").is_symlink()
    yield "convert into a folder holding a user's a.mha", code, line, f"user's file kept: {mine}"

    overlays = folder / "overlays"
    overlays.mkdir()
    (overlays / "a.png").write_text("mine")
    code, line = run(
        root,
        "predict",
        "--model_dir",
        trained,
        "--output",
        folder / "o.csv",
        "--overlay_dir",
        overlays,
        images / "a.mha",
    )
    yield (
        "predict --overlay_dir holding a.png",
        code,
        line,
        f"user's a.png kept: {(overlays / 'a.png').read_bytes() == b'mine'}",
    )

    augmented = folder / "augmented"
    augmented.mkdir()
    (augmented / "a_0.png").write_text("mine")
    code, line = run(
        root, "augment", "--config", paths["config"], "--data_dir", data, "--ids", "a", "--samples", "1",
        "--output_dir", augmented,
    )  # fmt: skip
    yield (
        "augment onto an existing a_0.png",
        code,
        line,
        f"user's a_0.png kept: {(augmented / 'a_0.png').read_bytes() == b'mine'}",
    )

    evaluate = ["--predictions", trained / "predictions.csv", "--ground_truth", data / "landmarks.csv", "--ids",
                paths["test"], "--ndim", "2"]  # fmt: skip
    code, line = run(root, "evaluate", *evaluate, "--output_dir", folder / "cmp", "--compare", folder / "no.json")
    yield (
        "evaluate --compare missing.json",
        code,
        line,
        f"left: {listing(folder / 'cmp')}",
    )

    code, line = run(root, "evaluate", *evaluate, "--output_dir", folder / "full", file_size_limit=8000)
    yield (
        "evaluate, disk full (8 kB file limit)",
        code,
        line,
        f"left: {listing(folder / 'full')}",
    )

    many = folder / "many"
    many.mkdir()
    for k in range(30):
        shutil.copy(images / "a.mha", many / f"i{k:02d}.mha")
    stopped = folder / "stopped"
    stopped.mkdir()
    code, line = interrupted(
        root, "predict", "--model_dir", trained, "--output", stopped / "p.csv", "--overlay_dir", stopped / "ov",
        "--save_heatmaps", stopped / "hm", *sorted(many.iterdir()), watch=stopped,
    )  # fmt: skip
    yield "predict, SIGTERM at its first output file", code, line, f"left: {listing(stopped)}"

    code, line = run(
        root, "train", *train_args(paths, folder / "fulltrain", None, "--iterations", "20"), file_size_limit=30_000
    )
    temporary = [p.name for p in (folder / "fulltrain").rglob("*") if "_temp" in p.name or p.name.startswith(".tmp")]
    yield "train, disk full (30 kB file limit)", code, line, f"temporary files left: {temporary or 'none'}"

    base = json.loads(paths["config"].read_text())
    for name, section, key, value in (
        ('"filters": "8"', "network", "filters", "8"),
        ('"filters": true', "network", "filters", True),
        ('"image_size": null', "data", "image_size", None),
        ('"levels": 10 on 32x32', "network", "levels", 10),
        ('"dropout_rate": 1.5', "network", "dropout_rate", 1.5),
        ('"intensity_scale": 0', "data", "intensity_scale", 0),
    ):
        values = json.loads(json.dumps(base))
        values[section][key] = value
        bad = folder / f"bad_{key}.json"
        bad.write_text(json.dumps(values))
        out = folder / f"cfg_{key}_{value}"
        code, line = run(root, "train", *train_args({**paths, "config": bad}, out))
        yield f"train, config {name}", code, line, f"left: {listing(out)}"


def landmark_shift(csv: Path, reference: Path) -> str:
    """The largest distance between the landmarks of a one-row prediction CSV and those of `reference`."""
    if not csv.exists():
        return "no prediction"
    rows = [np.array(path.read_text().split(",")[1:], float).reshape(-1, 2) for path in (csv, reference)]
    return f"landmarks moved up to {np.nanmax(np.linalg.norm(rows[0] - rows[1], axis=1)):.1f} px"


def content_cases(root: Path, folder: Path):
    """Images and tables that are not what the model expects."""
    from PIL import Image

    sys.path.insert(0, str(HERE / "tests"))
    from test_input_content import write_compressed_meta_header, write_png_header

    paths = setup(folder)
    pngs = folder / "pngs"
    write_dataset(pngs, spacing=(1.0, 1.0))  # landmarks in mm = px
    for path in sorted((pngs / "images").glob("*.mha")):
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        Image.fromarray(np.round(array / array.max() * 255).astype(np.uint8)).save(path.with_suffix(".png"))
        path.unlink()
    values = json.loads(paths["config"].read_text())
    values["data"].update(image_suffix=".png", intensity_scale=1 / 255)
    png_config = folder / "png.json"
    png_config.write_text(json.dumps(values))
    model = folder / "png_model"
    run(root, "train", *train_args({**paths, "data": pngs, "config": png_config}, model))
    picture = np.asarray(Image.open(pngs / "images" / "a.png"))

    def predict(name: str, *extra) -> tuple[int, str, Path]:
        output = folder / "predicted" / name / "p.csv"
        code, line = run(root, "predict", "--model_dir", model, "--output", output, *extra)
        return code, line, output

    _, _, reference = predict("reference", pngs / "images" / "a.png")
    wide = folder / "wide" / "a.png"
    wide.parent.mkdir()
    Image.fromarray(picture.astype(np.uint16) * 257).save(wide)  # the same grey levels in 16 bits
    code, line, output = predict("wide", wide)
    yield "predict a 16-bit PNG (8-bit model)", code, line, landmark_shift(output, reference)
    code, line, output = predict("wide_rescaled", wide, "--pixel_type_policy", "rescale")
    yield "same, --pixel_type_policy rescale", code, line, landmark_shift(output, reference)
    rgba = folder / "rgba" / "a.png"
    rgba.parent.mkdir()
    Image.fromarray(np.stack([picture] * 3 + [np.full_like(picture, 64)], axis=-1), "RGBA").save(rgba)
    code, line, output = predict("rgba", rgba)
    yield "predict an RGBA PNG (alpha 64)", code, line, landmark_shift(output, reference)
    dot = folder / "dot" / "a.png"
    dot.parent.mkdir()
    Image.fromarray(picture[:1, :1]).save(dot)
    code, line, output = predict("dot", dot)
    coordinates = np.array(output.read_text().split(",")[1:], float) if output.exists() else None
    yield (
        "predict a 1x1 PNG",
        code,
        line,
        "no prediction" if coordinates is None else f"smallest coordinate {np.nanmin(coordinates):.1f} px",
    )
    huge = folder / "huge"
    huge.mkdir()
    write_png_header(huge / "a.png", 100_000, 100_000)
    write_compressed_meta_header(huge / "b.mha", 60_000)
    for name, path in (
        ("PNG header 100000x100000", huge / "a.png"),
        ("compressed MHA header 60000x60000", huge / "b.mha"),
    ):
        start = time.perf_counter()
        output = folder / "predicted" / path.name / "p.csv"
        code, line = run(root, "predict", "--model_dir", model, "--output", output, path, address_space=16 * 2**30)
        yield f"predict a {name} (16 GiB address space)", code, line, f"{time.perf_counter() - start:.0f} s"

    data = paths["data"]
    rows = (data / "landmarks.csv").read_text().splitlines()
    evaluate = ["--predictions", data / "landmarks.csv", "--ids", paths["test"], "--ndim", "2", "--units", "mm"]
    tables = folder / "tables"
    tables.mkdir()
    infinite = tables / "inf.csv"
    infinite.write_text("\n".join(rows[:2] + [rows[2].replace(rows[2].split(",")[1], "inf", 1)]) + "\n")
    code, line = run(root, "evaluate", *evaluate, "--ground_truth", infinite, "--output_dir", folder / "ev_inf")
    yield "evaluate, ground truth with inf", code, line, f"left: {listing(folder / 'ev_inf')}"
    bom = tables / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (data / "landmarks.csv").read_bytes())
    first = tables / "first.txt"
    first.write_text(rows[0].split(",")[0] + "\n")
    code, line = run(
        root, "evaluate", *evaluate, "--ids", first, "--ground_truth", bom, "--output_dir", folder / "ev_bom"
    )
    yield "evaluate, ground truth CSV with a UTF-8 BOM, its first id", code, line, f"left: {listing(folder / 'ev_bom')}"
    twice = tables / "twice.txt"
    twice.write_text("c\nc\n")
    out = folder / "ev_twice"
    code, line = run(root, "evaluate", *evaluate, "--ids", twice, "--ground_truth", data / "landmarks.csv",
                     "--output_dir", out)  # fmt: skip
    counted = (
        json.loads((out / "metrics.json").read_text()).get("num_images") if (out / "metrics.json").exists() else None
    )
    yield "evaluate --ids listing c twice", code, line, f"images counted: {counted}"

    overlap = tables / "overlap.txt"
    overlap.write_text("a\nc\n")
    code, line = run(root, "train", *train_args(paths, folder / "tr_overlap", overlap))
    yield "train, test ids a,c with a a training id", code, line, ""
    empty = folder / "empty_data"
    shutil.copytree(data, empty)
    (empty / "landmarks.csv").write_text("\n".join([rows[0].split(",")[0] + ",nan" * 6, *rows[1:]]) + "\n")
    code, line = run(root, "train", *train_args({**paths, "data": empty}, folder / "tr_empty"))
    yield "train, a training row without landmarks", code, line, ""
    resumed = folder / "tr_resume"
    run(root, "train", *train_args({**paths, "data": empty}, resumed))
    (empty / "landmarks.csv").write_text("\n".join(rows) + "\n")
    code, line = run(root, "train", *train_args({**paths, "data": empty}, resumed, None, "--resume", "--iterations", 3))
    yield "train --resume after the annotations changed", code, line, ""


GROUPS = {"first": cases, "outputs": output_cases, "content": content_cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(HERE), help="scn_tf checkout whose commands are run")
    parser.add_argument("--only", choices=sorted(GROUPS), action="append", help="run only these groups of cases")
    arguments = parser.parse_args()
    root = Path(arguments.root).resolve()
    print(f"root: {root}\n\n| input | exit | first error line | on disk |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for group in arguments.only or GROUPS:
            for name, code, line, effect in GROUPS[group](root, Path(folder) / group):
                print(f"| {name} | {code} | {line.replace('|', '/')} | {effect} |", flush=True)


if __name__ == "__main__":
    main()
