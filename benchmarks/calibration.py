"""Calibrated predictions measured on a test set: observed coverage of the error radii, presence on cropped
images, and test-time augmentation, through the commands a user runs.

  python benchmarks/calibration.py --model_dir RUN --data_dir DATA --ids test.txt --work_dir W \
      [--figure docs/confidence/reliability.png] [--crop_seed 2 --outside 3,8] [--tta 4,8]

RUN is a calibrated model folder (scn-train --calibration_fraction or scn-calibrate). Steps: scn-predict on
the test images at coverage 0.8, 0.9 and 0.95 (observed coverage per landmark and overall, median radius);
scn-crop of the test ids under --crop_seed and scn-predict on the crops (precision and recall of `present`,
the present landmarks' distance from the uncropped prediction and their error); scn-predict --tta N (MRE,
SDR, outliers and wall time against N = 0). Prints Markdown tables; --figure writes the reliability plot.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from scn_tf.calibration import LEVELS, load_calibration
from scn_tf.cli import crop, predict
from scn_tf.cli.runner import find_id_list, read_split
from scn_tf.data.io import read_landmarks_csv
from scn_tf.evaluation import evaluate
from scn_tf.figures import save_figure
from scn_tf.model_dir import read_model_config


def predict_images(model_dir: str, images: list[Path], output: Path, *flags: str) -> float:
    """scn-predict on `images` into `output`; its wall time in seconds."""
    start = time.perf_counter()
    status = predict.run(
        ["scn-predict", "--model_dir", model_dir, "--output", str(output), "--overwrite", *flags, *map(str, images)]
    )
    if status:
        raise SystemExit(f"scn-predict failed ({status}) for {output}")
    return time.perf_counter() - start


def errors_of(csv: Path, truth: dict, ids: list[str], num_landmarks: int, ndim: int) -> np.ndarray:
    predicted = read_landmarks_csv(csv, num_landmarks, ndim)
    return np.stack([np.linalg.norm(predicted[i] - truth[i], axis=1) for i in ids])


def coverage_table(args, config, ids: list[str], truth: dict, images: list[Path], work: Path) -> dict:
    data = config.data
    observed = {}
    print("| coverage | observed, all landmarks | lowest landmark | highest landmark | median radius |")
    print("|---|---|---|---|---|")
    for level in LEVELS:
        output = work / f"coverage_{level}.csv"
        predict_images(args.model_dir, images, output, "--coverage", str(level))
        details = json.loads(output.with_suffix(".json").read_text())["images"]
        radii = np.array([details[i]["error_radius"] for i in ids])
        errors = errors_of(output, truth, ids, data.num_landmarks, data.ndim)
        annotated = np.isfinite(np.stack([truth[i][:, 0] for i in ids]))
        measured = np.isfinite(errors)  # annotated and reported present
        inside = (errors <= radii) & measured
        per_landmark = inside.sum(axis=0) / np.maximum(measured.sum(axis=0), 1)
        overall = inside.sum() / measured.sum()
        observed[level] = {"overall": overall, "per_landmark": per_landmark, "median_radius": np.median(radii)}
        print(
            f"| {level:.2f} | {100 * overall:.1f}% | {100 * per_landmark.min():.1f}% | "
            f"{100 * per_landmark.max():.1f}% | {np.median(radii):.2f} mm |"
        )
        absent = int((annotated & ~measured).sum())
    print(f"\n(over the {int(measured.sum())} annotated landmarks reported present; {absent} reported absent)")
    print()
    print("| landmark | " + " | ".join(f"observed at {level:.2f}" for level in LEVELS) + " |")
    print("|---|" + "---|" * len(LEVELS))
    for landmark in range(data.num_landmarks):
        cells = " | ".join(f"{100 * observed[level]['per_landmark'][landmark]:.1f}%" for level in LEVELS)
        print(f"| {landmark} | {cells} |")
    return observed


def presence_table(args, config, ids: list[str], work: Path) -> None:
    data = config.data
    cropped = work / "cropped"
    status = crop.run(
        [
            "scn-crop",
            "--model_dir",
            args.model_dir,
            "--data_dir",
            args.data_dir,
            "--ids",
            args.ids,
            "--seed",
            str(args.crop_seed),
            "--outside",
            args.outside,
            "--output_dir",
            str(cropped),
            "--overwrite",
        ]
    )
    if status:
        raise SystemExit("scn-crop failed")
    images = [cropped / data.image_dir / f"{i}{data.image_suffix}" for i in ids]
    predict_images(args.model_dir, images, work / "cropped.csv")
    truth = read_landmarks_csv(cropped / data.landmarks_csv, data.num_landmarks, data.ndim)
    predicted = read_landmarks_csv(work / "cropped.csv", data.num_landmarks, data.ndim)
    metrics = evaluate(ids, np.stack([predicted[i] for i in ids]), np.stack([truth[i] for i in ids]))
    presence = metrics["presence"]
    regions = json.loads((cropped / "crops.json").read_text())["images"]
    uncropped = read_landmarks_csv(work / "coverage_0.9.csv", data.num_landmarks, data.ndim)
    spacing = np.asarray(data.image_spacing or [1.0] * data.ndim)
    shifts = []
    for image_id in ids:
        offset = np.array([start for start, _ in regions[image_id]["region"]]) * spacing
        moved = predicted[image_id] + (offset if data.landmark_units == "mm" else offset / spacing)
        shifts.append(np.linalg.norm(moved - uncropped[image_id], axis=1))
    shifts = np.concatenate(shifts)
    shifts = shifts[np.isfinite(shifts)]
    print(
        f"\ncropped test images (seed {args.crop_seed}, {args.outside} landmarks out): "
        f"{presence['true_present'] + presence['false_absent']} landmarks inside, "
        f"{presence['true_absent'] + presence['false_present']} cut off"
    )
    print("| | precision | recall |\n|---|---|---|")
    print(f"| present | {100 * presence['present_precision']:.1f}% | {100 * presence['present_recall']:.1f}% |")
    print(f"| absent | {100 * presence['absent_precision']:.1f}% | {100 * presence['absent_recall']:.1f}% |")
    print(
        f"present landmarks: error {metrics['pe_mean']:.2f} mm mean, {metrics['pe_median']:.2f} mm median "
        f"(SDR 4 mm {100 - metrics['outliers']['4']['percent']:.2f}%); distance from the uncropped prediction "
        f"median {np.median(shifts):.2f} mm, {100 * np.mean(shifts <= 1.0):.1f}% within 1 mm, "
        f"{100 * np.mean(shifts > 4.0):.1f}% beyond 4 mm"
    )


def tta_table(args, config, ids: list[str], truth: dict, images: list[Path], work: Path) -> None:
    data = config.data
    print("\n| tta | MRE (mm) | median (mm) | SDR 2 mm | SDR 4 mm | #O >= 4 mm | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    for count in [0, *[int(v) for v in args.tta.split(",")]]:
        output = work / f"tta_{count}.csv"
        seconds = predict_images(args.model_dir, images, output, "--tta", str(count))
        predicted = read_landmarks_csv(output, data.num_landmarks, data.ndim)
        metrics = evaluate(ids, np.stack([predicted[i] for i in ids]), np.stack([truth[i] for i in ids]), [2, 4])
        print(
            f"| {count} | {metrics['pe_mean']:.3f} | {metrics['pe_median']:.3f} | "
            f"{100 - metrics['outliers']['2']['percent']:.2f}% | {100 - metrics['outliers']['4']['percent']:.2f}% | "
            f"{metrics['outliers']['4']['count']} | {seconds:.0f} |"
        )


def reliability_plot(path: Path, observed: dict, count: int) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.8, 4.6))
    axis = figure.subplots()
    levels = np.array(sorted(observed))
    axis.plot([0.75, 1.0], [0.75, 1.0], color="grey", linestyle="--", label="nominal = observed")
    axis.fill_between(
        levels,
        levels,
        levels + 1 / (count + 1),
        color="grey",
        alpha=0.2,
        label="split-conformal range [c, c + 1/(n+1)]",
    )
    for landmark in range(len(observed[levels[0]]["per_landmark"])):
        axis.plot(
            levels,
            [observed[level]["per_landmark"][landmark] for level in levels],
            color="tab:blue",
            alpha=0.25,
            linewidth=0.8,
        )
    axis.plot(levels, [observed[level]["overall"] for level in levels], "o-", color="tab:red", label="all landmarks")
    axis.plot([], [], color="tab:blue", alpha=0.5, label="each landmark")
    axis.set_xlabel("nominal coverage")
    axis.set_ylabel("observed coverage on the test images")
    axis.set_title(f"Error radii: nominal vs observed\n({count} calibration images)")
    axis.legend(fontsize=7, loc="lower right")
    save_figure(figure, path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--ids", required=True)
    parser.add_argument("--work_dir", required=True)
    parser.add_argument("--figure")
    parser.add_argument("--crop_seed", type=int, default=2)
    parser.add_argument("--outside", default="3,8")
    parser.add_argument("--tta", default="4,8")
    args = parser.parse_args()
    config = read_model_config(args.model_dir)
    data = config.data
    ids = read_split(find_id_list(args.ids, args.data_dir))
    truth = read_landmarks_csv(Path(args.data_dir) / data.landmarks_csv, data.num_landmarks, data.ndim)
    images = [Path(args.data_dir) / data.image_dir / f"{i}{data.image_suffix}" for i in ids]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    calibrated = load_calibration(args.model_dir)
    if calibrated is None:
        raise SystemExit(f"{args.model_dir} has no calibration.json")
    print(f"{len(ids)} test images, {len(calibrated.image_ids)} calibration images, units {calibrated.units}\n")
    observed = coverage_table(args, config, ids, truth, images, work)
    if args.figure:
        reliability_plot(Path(args.figure), observed, len(calibrated.image_ids))
    presence_table(args, config, ids, work)
    tta_table(args, config, ids, truth, images, work)


if __name__ == "__main__":
    main()
