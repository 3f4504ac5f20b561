"""The README's own-data commands on a small generated PNG data set with landmarks in pixels.

  python experiments/own_data_example.py                       # about 10 minutes on 2 CPU cores
  python experiments/own_data_example.py --iterations 50       # a quick check of the commands

Writes under --output_dir: data/ (images/<id>.png, landmarks.csv in pixels, train.txt, test.txt), new_images/
with their landmarks (new_landmarks.csv), my.json (preset cpu2d with the "data" keys edited), look/
(scn-augment), runs/my (scn-train), new.csv and new_overlays/ (scn-predict) and report/ (scn-evaluate, in
px); then prints each command's wall time (timings.json) and the report. The images are 8-bit, 200x160
pixels: four marks (a bright dot, a bright disk, a dark dot, a ring) on a faint frame joining them, moved,
turned and scaled at random, on noise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from absl import app, flags

from scn_tf.cli.common import command
from scn_tf.data.io import write_landmarks_csv

LANDMARK_NAMES = ["bright dot", "bright disk", "dark dot", "ring"]
TEMPLATE = np.array([[-50.0, -35.0], [45.0, -30.0], [40.0, 38.0], [-45.0, 32.0]])  # pixels from the centre
SIZE = (200, 160)  # x, y


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "output_dir", "own_data_example", "Where the data, the run and the reports go.", flag_values=values
    )
    flags.DEFINE_integer("num_train", 30, "Training images.", flag_values=values)
    flags.DEFINE_integer("num_test", 10, "Test images (evaluated by scn-train).", flag_values=values)
    flags.DEFINE_integer("num_new", 10, "New images for scn-predict and scn-evaluate.", flag_values=values)
    flags.DEFINE_integer("iterations", None, "Training iterations (default: the cpu2d preset's).", flag_values=values)
    flags.DEFINE_integer("seed", 0, "Seed of the images.", flag_values=values)


def draw_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One 8-bit image (y, x) and its four landmarks in pixels (x, y)."""
    angle, scale = rng.uniform(-0.25, 0.25), rng.uniform(0.85, 1.15)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array(SIZE) / 2 + rng.uniform(-15, 15, 2)
    points = TEMPLATE @ rotation.T + centre + rng.normal(0, 2.0, TEMPLATE.shape)
    y, x = np.mgrid[: SIZE[1], : SIZE[0]].astype(np.float64)
    image = 90 + 12 * rng.standard_normal((SIZE[1], SIZE[0]))
    for start, end in zip(points, np.roll(points, -1, axis=0), strict=True):  # the faint frame
        direction = end - start
        t = np.clip(((x - start[0]) * direction[0] + (y - start[1]) * direction[1]) / direction.dot(direction), 0, 1)
        distance = np.hypot(x - start[0] - t * direction[0], y - start[1] - t * direction[1])
        image += 25 * np.exp(-(distance**2) / 8.0)
    radius = [np.hypot(x - px, y - py) for px, py in points]
    image += 120 * np.exp(-(radius[0] ** 2) / (2 * 2.5**2))
    image += 100 * (radius[1] < 7)
    image -= 80 * np.exp(-(radius[2] ** 2) / (2 * 2.5**2))
    image += 110 * (np.abs(radius[3] - 6) < 1.5)
    return np.clip(image, 0, 255).astype(np.uint8), points


def write_images(folder: Path, ids: list[str], rng: np.random.Generator) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    landmarks = {}
    for image_id in ids:
        image, landmarks[image_id] = draw_image(rng)
        sitk.WriteImage(sitk.GetImageFromArray(image), str(folder / f"{image_id}.png"))
    return landmarks


def step(name: str, arguments: list[str], cwd: Path, timings: dict, stdout=None) -> str:
    """Runs one console command (as `python -m scn_tf.cli.<name>`) in `cwd`, timed; returns its stdout."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", f"scn_tf.cli.{name}", *arguments], cwd=cwd, stdout=subprocess.PIPE, encoding="utf-8"
    )
    timings[f"scn-{name}" + (f" {arguments[0]}" if name == "augment" else "")] = round(time.perf_counter() - start, 1)
    if result.returncode != 0:
        raise app.UsageError(f"scn-{name} {' '.join(arguments)} failed (exit {result.returncode})")
    return result.stdout


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    output = Path(values.output_dir).resolve()
    rng = np.random.default_rng(values.seed)
    data = output / "data"
    train = [f"train{k:03d}" for k in range(values.num_train)]
    test = [f"test{k:03d}" for k in range(values.num_test)]
    write_landmarks_csv(data / "landmarks.csv", write_images(data / "images", train + test, rng))
    (data / "train.txt").write_text("\n".join(train) + "\n")
    (data / "test.txt").write_text("\n".join(test) + "\n")
    new = write_images(output / "new_images", [f"new{k:03d}" for k in range(values.num_new)], rng)
    write_landmarks_csv(output / "new_landmarks.csv", new)

    timings: dict[str, float] = {}
    config = json.loads(step("augment", ["--preset", "cpu2d", "--print_config"], output, timings))
    config["data"].update(num_landmarks=len(LANDMARK_NAMES), landmark_names=LANDMARK_NAMES)
    if values.iterations:
        config["training"]["iterations"] = values.iterations
    (output / "my.json").write_text(json.dumps(config, indent=2) + "\n")
    step(
        "augment",
        [
            "--config",
            "my.json",
            "--data_dir",
            "data",
            "--ids",
            f"{train[0]},{train[1]}",
            "--samples",
            "4",
            "--output_dir",
            "look",
        ],
        output,
        timings,
    )
    step(
        "train",
        [
            "--config",
            "my.json",
            "--data_dir",
            "data",
            "--train_ids",
            "train.txt",
            "--test_ids",
            "test.txt",
            "--output_dir",
            "runs/my",
        ],
        output,
        timings,
    )
    step(
        "predict",
        [
            "--model_dir",
            "runs/my",
            "--output",
            "new.csv",
            "--overlay_dir",
            "new_overlays",
            *sorted(str(p.relative_to(output)) for p in (output / "new_images").glob("*.png")),
        ],
        output,
        timings,
    )
    report = step(
        "evaluate",
        [
            "--predictions",
            "new.csv",
            "--ground_truth",
            "new_landmarks.csv",
            "--output_dir",
            "report",
            "--radii",
            "2,4,8",
        ],
        output,
        timings,
    )
    (output / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(report)
    print(
        "wall time (s):",
        ", ".join(f"{name} {seconds}" for name, seconds in timings.items()),
        f"; train + predict {timings['scn-train'] + timings['scn-predict']:.1f}",
    )
    return 0


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
