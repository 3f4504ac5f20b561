"""Pictures of images and landmarks: overlays (3D: maximum-intensity projections) written as PNG."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from scn_tf.figures import save_figure


def save_overlay(
    path: str | os.PathLike,
    image: np.ndarray,
    spacing: Sequence[float],
    landmarks: np.ndarray | None = None,
    predicted: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    title: str | None = None,
    radii: np.ndarray | None = None,
    radius_label: str = "",
) -> Figure:
    """Draws landmarks (N, d) given in pixel units (x, y[, z]) over `image` (array order, no channel axis).

    `landmarks` are drawn as green circles, `predicted` as red crosses joined to their landmark; each point
    is numbered from 0 (the landmark's index in the CSVs, reports and flags) on a dark label, and with
    `names` a key beside the image lists index and name. 3D images are shown as three maximum-intensity
    projections. Aspect ratios follow `spacing` (x, y[, z]). `radii` (N,) in pixels of the x axis draw a
    circle around each predicted landmark (a calibrated error radius, described by `radius_label` in the
    title). Returns the figure.
    """
    ndim = image.ndim
    views = [(0, 1, 0)] if ndim == 2 else [(0, 1, 0), (0, 2, 1), (1, 2, 2)]  # (x coord, y coord, MIP axis)
    pictures = [image if ndim == 2 else image.max(axis=projection) for _, _, projection in views]
    widths = [
        p.shape[1] * spacing[cx] / (p.shape[0] * spacing[cy]) for p, (cx, cy, _) in zip(pictures, views, strict=True)
    ]
    height = 8.0 if ndim == 2 else 6.0
    key = 2.6 if names else 0.0
    figure = Figure(figsize=(height * sum(widths) + key, height))
    axes = figure.subplots(
        1,
        len(views) + (1 if names else 0),
        squeeze=False,
        gridspec_kw={"width_ratios": [height * w for w in widths] + ([key] if names else [])},
    )
    for axis, picture, (cx, cy, _) in zip(axes[0][: len(views)], pictures, views, strict=True):
        axis.imshow(picture, cmap="gray", aspect=spacing[cy] / spacing[cx], interpolation="bilinear")
        for points, style in (
            (landmarks, dict(marker="o", facecolors="none", edgecolors="lime")),
            (predicted, dict(marker="x", c="red")),
        ):
            if points is None:
                continue
            axis.scatter(points[:, cx], points[:, cy], s=60, linewidths=1.5, **style)
        if radii is not None and predicted is not None:
            for point, radius in zip(predicted, radii, strict=True):
                if np.all(np.isfinite(point)) and np.isfinite(radius):
                    axis.add_patch(
                        Ellipse(
                            (point[cx], point[cy]),
                            2 * radius * spacing[0] / spacing[cx],
                            2 * radius * spacing[0] / spacing[cy],
                            fill=False,
                            edgecolor="cyan",
                            linewidth=0.9,
                        )
                    )
            axis.set_xlim(-0.5, picture.shape[1] - 0.5)
            axis.set_ylim(picture.shape[0] - 0.5, -0.5)
        if landmarks is not None and predicted is not None:
            for truth, guess in zip(landmarks, predicted, strict=True):
                if np.all(np.isfinite(truth)) and np.all(np.isfinite(guess)):
                    axis.plot([truth[cx], guess[cx]], [truth[cy], guess[cy]], color="yellow", linewidth=0.8)
        labelled = landmarks if landmarks is not None else predicted
        if labelled is not None:
            for index, point in enumerate(labelled):
                if np.all(np.isfinite(point)):
                    axis.annotate(
                        str(index),
                        (point[cx], point[cy]),
                        xytext=(5, 5),
                        textcoords="offset points",
                        color="yellow",
                        fontsize=9,
                        fontweight="bold",
                        bbox=dict(boxstyle="round,pad=0.15", facecolor="black", alpha=0.6, edgecolor="none"),
                    )
        axis.set_axis_off()
    if names:
        legend = axes[0][-1]
        legend.set_axis_off()
        legend.text(
            0.0,
            1.0,
            "\n".join(["landmarks"] + [f"{i:>2}  {name}" for i, name in enumerate(names)]),
            va="top",
            ha="left",
            family="monospace",
            fontsize=9,
            transform=legend.transAxes,
        )
    if title or radius_label:
        figure.suptitle("; ".join(text for text in (title, radius_label and f"circles: {radius_label}") if text))
    save_figure(figure, path, dpi=110)
    return figure
