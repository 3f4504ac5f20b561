"""Pictures of images and landmarks: overlays (3D: maximum-intensity projections) written as PNG."""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scn_tf.files import atomic_path  # noqa: E402


def save_overlay(path: str | os.PathLike, image: np.ndarray, spacing: Sequence[float],
                 landmarks: np.ndarray | None = None, predicted: np.ndarray | None = None,
                 names: Sequence[str] | None = None, title: str | None = None) -> None:
    """Draws landmarks (N, d) given in pixel units (x, y[, z]) over `image` (array order, no channel axis).

    `landmarks` are drawn as green circles, `predicted` as red crosses joined to their landmark; each point
    is numbered from 1 (with its name where `names` is given). 3D images are shown as three maximum-intensity
    projections. Aspect ratios follow `spacing` (x, y[, z]).
    """
    ndim = image.ndim
    views = [(0, 1, 0)] if ndim == 2 else [(0, 1, 0), (0, 2, 1), (1, 2, 2)]  # (x coord, y coord, MIP axis)
    figure, axes = plt.subplots(1, len(views), figsize=(6 * len(views), 6), squeeze=False)
    for axis, (cx, cy, projection) in zip(axes[0], views):
        picture = image if ndim == 2 else image.max(axis=projection)
        axis.imshow(picture, cmap="gray", aspect=spacing[cy] / spacing[cx], interpolation="bilinear")
        for points, style in ((landmarks, dict(marker="o", facecolors="none", edgecolors="lime")),
                              (predicted, dict(marker="x", c="red"))):
            if points is None:
                continue
            axis.scatter(points[:, cx], points[:, cy], s=40, linewidths=1.2, **style)
        if landmarks is not None and predicted is not None:
            for truth, guess in zip(landmarks, predicted):
                if np.all(np.isfinite(truth)) and np.all(np.isfinite(guess)):
                    axis.plot([truth[cx], guess[cx]], [truth[cy], guess[cy]], color="yellow", linewidth=0.8)
        labelled = landmarks if landmarks is not None else predicted
        if labelled is not None:
            for index, point in enumerate(labelled):
                if np.all(np.isfinite(point)):
                    label = f"{index + 1}" + (f" {names[index]}" if names else "")
                    axis.annotate(label, (point[cx], point[cy]), xytext=(4, 4), textcoords="offset points",
                                  color="yellow", fontsize=7)
        axis.set_axis_off()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
