"""Evaluation reports: metrics.json, a per-landmark CSV, a summary in the paper's table layout and the
cumulative IPE plot. Every file is written to a temporary name and renamed."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from scn_tf.evaluation import cumulative_curve
from scn_tf.figures import save_figure
from scn_tf.files import write_json_atomic, write_text_atomic

REPORT_FILES = ("metrics.json", "per_landmark.csv", "summary.txt", "cumulative_ipe.png")


def summary_table(metrics: Mapping, name: str = "SCN", units: str = "mm", id_units: str | None = None) -> str:
    """One row in the layout of the paper's tables: PE median, mean +- SD, outliers per radius, ID rate; the
    ID rate's radius is in `id_units`, the landmarks' own units (default `units`: errors not normalised)."""
    radii = list(metrics["outliers"])
    header = (
        ["method", f"PE median ({units})", f"PE mean +- SD ({units})"]
        + [f"#O >= {r} {units}" for r in radii]
        + [f"ID rate (<= {metrics['id_radius']:g} {id_units or units})"]
    )
    row = (
        [name, f"{metrics['pe_median']:.2f}", f"{metrics['pe_mean']:.2f} +- {metrics['pe_std']:.2f}"]
        + [f"{o['count']} ({o['percent']:.2f}%)" for o in metrics["outliers"].values()]
        + [f"{metrics['id_rate']:.1f}%"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), "| " + " | ".join(row) + " |"]
    return "\n".join(lines) + "\n"


def write_reports(
    output_dir: str | os.PathLike,
    metrics: Mapping,
    name: str = "SCN",
    landmark_names: Sequence[str] | None = None,
    sigmas: Sequence[float] | None = None,
    units: str = "mm",
    data_units: str | None = None,
) -> None:
    """metrics.json, per_landmark.csv, summary.txt and cumulative_ipe.png in `output_dir`, errors labelled in
    `units` ("mm" or "px", scn_tf.evaluation.error_units); the learned sigmas and the ID rate's radius in
    `data_units`, the landmarks' own (evaluation.coordinate_units; default `units`). With the sigmas also
    sigmas.png, a per_landmark.csv column sigma_<data_units> and their rank correlation with the
    per-landmark mean error in the summary."""
    output_dir = Path(output_dir)
    data_units = data_units or units
    write_json_atomic(
        output_dir / "metrics.json", {**metrics, "units": units, "id_radius_units": data_units, "method": name}
    )
    rows = [
        f"landmark,name,count,mean_{units},median_{units},std_{units}"
        + (f",sigma_{data_units}" if sigmas is not None else "")
    ]
    for entry in metrics["per_landmark"]:
        index = entry["landmark"]
        label = landmark_names[index] if landmark_names else ""
        sigma = f",{sigmas[index]:.4f}" if sigmas is not None else ""
        rows.append(
            f"{index},{label},{entry['count']},{entry['mean']:.4f},{entry['median']:.4f},{entry['std']:.4f}{sigma}"
        )
    write_text_atomic(output_dir / "per_landmark.csv", "\n".join(rows) + "\n")
    detected = ", ".join(f"{100 - o['percent']:.2f}% within {r} {units}" for r, o in metrics["outliers"].items())
    text = (
        f"{metrics['num_images']} images, {metrics['num_landmarks']} landmarks, "
        f"{metrics['num_annotated']} annotated pairs"
        + (
            f" ({metrics['num_measured']} measured: images without the normalisation's landmarks left out)"
            if metrics.get("num_measured", metrics["num_annotated"]) != metrics["num_annotated"]
            else ""
        )
        + "\n\n"
        + presence_line(metrics.get("presence"))
        + summary_table(metrics, name, units, data_units)
        + f"\nSuccess detection rate: {detected}\n"
        + f"ID rate: landmarks whose closest annotation is their own, at most {metrics['id_radius']:g} "
        f"{data_units} away\n"
    )
    if sigmas is not None:
        means = [entry["mean"] for entry in metrics["per_landmark"]]
        text += (
            f"Learned sigma per landmark: {min(sigmas):.2f} to {max(sigmas):.2f} {data_units}; Spearman rank "
            f"correlation with the landmark's mean PE: {rank_correlation(sigmas, means):.2f}\n"
        )
        plot_sigmas(output_dir / "sigmas.png", sigmas, means, landmark_names, units, data_units)
    write_text_atomic(output_dir / "summary.txt", text)
    plot_cumulative_ipe(output_dir / "cumulative_ipe.png", {name: metrics["ipe"].values()}, units)


def presence_line(presence: Mapping | None) -> str:
    """A line on landmarks predicted absent (NaN) or present against the annotations; empty where every
    annotated landmark was predicted and no other."""
    if not presence or not (presence["false_absent"] or presence["false_present"] or presence["true_absent"]):
        return ""
    return (
        f"Presence: {presence['false_absent']} annotated landmarks predicted absent (false absences, left out of "
        f"the errors), {presence['false_present']} unannotated ones predicted present, {presence['true_absent']} "
        f"absent in both; absent precision {100 * presence['absent_precision']:.1f}%, recall "
        f"{100 * presence['absent_recall']:.1f}%\n\n"
    )


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (ties broken by order; NaN pairs left out)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    ranks = [np.argsort(np.argsort(v[keep])).astype(np.float64) for v in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1]) if keep.sum() > 1 else float("nan")


def plot_sigmas(
    path: str | os.PathLike,
    sigmas: Sequence[float],
    mean_errors: Sequence[float],
    names: Sequence[str] | None = None,
    units: str = "mm",
    sigma_units: str = "mm",
) -> Figure:
    """Learned target width per landmark in `sigma_units` (bars) next to its mean point error in `units`
    (dots); landmarks numbered from 0 as in the CSVs, with their names where given. Returns the figure."""
    count = len(sigmas)
    labels = [f"{i} {names[i]}" if names else str(i) for i in range(count)]
    figure = Figure(figsize=(max(6.0, 0.45 * count + 2), 4.5))
    axis = figure.subplots()
    axis.bar(range(count), sigmas, color="tab:blue", alpha=0.7, label="learned sigma")
    axis.set_ylabel(f"learned sigma ({sigma_units})", color="tab:blue")
    errors = axis.twinx()
    errors.plot(range(count), mean_errors, "o", color="tab:red", label="mean PE")
    errors.set_ylabel(f"mean point error ({units})", color="tab:red")
    errors.set_ylim(bottom=0)
    axis.set_xticks(range(count), labels, rotation=60, ha="right", fontsize=8)
    axis.set_xlabel("landmark (0-based index" + (", name)" if names else ")"))
    axis.set_title(f"learned sigma vs error per landmark (Spearman {rank_correlation(sigmas, mean_errors):.2f})")
    save_figure(figure, path, dpi=100)
    return figure


def plot_cumulative_ipe(path: str | os.PathLike, results: Mapping[str, Sequence[float]], units: str = "mm") -> Figure:
    """Cumulative IPE curves, one per result set, on one plot titled with the number of images (those with
    an IPE; each curve's count in its label where they differ). Returns the figure."""
    figure = Figure(figsize=(6, 4.5))
    axis = figure.subplots()
    curves = {name: cumulative_curve(values) for name, values in results.items()}
    counts = {name: len(x) for name, (x, _) in curves.items()}
    same = len(set(counts.values())) <= 1
    for name, (x, y) in curves.items():
        axis.step(x, y, where="post", label=name if same else f"{name} ({_images(counts[name])})")
    if same:
        images = _images(next(iter(counts.values()), 0))
    else:
        images = f"{min(counts.values())} to {_images(max(counts.values()))}"
    axis.set_title(f"cumulative image point error over {images}")
    axis.set_xlabel(f"image point error, IPE ({units})")
    axis.set_ylabel("images with IPE at most x (%)")
    axis.set_ylim(0, 100.5)
    axis.set_xlim(left=0)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    save_figure(figure, path, dpi=100)
    return figure


def _images(count: int) -> str:
    return f"{count} image{'' if count == 1 else 's'}"
