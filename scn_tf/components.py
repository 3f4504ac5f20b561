"""The SCN's two factors decoded on their own (the paper's Fig. 9 analysis).

The network is trained only through the product local appearance x spatial configuration, so a landmark's
factors may both come out negative (-a)(-b) = ab. Decoding one factor alone takes its maximum, which for a
negated factor lies anywhere but at the landmark; `orient_components` therefore flips both factors of a
landmark whose product peaks where both are negative, a choice made from the prediction alone. The paper's
"LA around GT" row decodes local appearance only within a radius of the annotation (`restrict_to_radius`).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from scn_tf.files import atomic_path


def orient_components(local: np.ndarray, spatial: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both factors of a landmark negated where they are both negative at the product's peak.

    local, spatial: (B, *spatial, N). Returns (local, spatial, flipped) with flipped (B, N) bool.
    """
    batch, landmarks = local.shape[0], local.shape[-1]
    flat_local = local.reshape(batch, -1, landmarks)
    flat_spatial = spatial.reshape(batch, -1, landmarks)
    peak = np.argmax(flat_local * flat_spatial, axis=1)[:, None, :]
    flipped = ((np.take_along_axis(flat_local, peak, axis=1) < 0)
               & (np.take_along_axis(flat_spatial, peak, axis=1) < 0))[:, 0, :]
    sign = np.where(flipped, -1.0, 1.0).astype(local.dtype).reshape(batch, *([1] * (local.ndim - 2)), landmarks)
    return local * sign, spatial * sign, flipped


def restrict_to_radius(heatmaps: np.ndarray, centres: np.ndarray, radius: Sequence[float] | float) -> np.ndarray:
    """`heatmaps` (B, *spatial, N) set to -inf farther than `radius` from each landmark's centre.

    centres: (B, N, d) in (x, y[, z]) heatmap pixels; NaN centres leave their heatmap unchanged. `radius` is in
    pixels, one value or one per axis (x, y[, z]) for anisotropic pixels.
    """
    spatial_shape = heatmaps.shape[1:-1]
    ndim = len(spatial_shape)
    radius = np.broadcast_to(np.asarray(radius, dtype=np.float64), (ndim,))
    grids = np.meshgrid(*[np.arange(size) for size in spatial_shape], indexing="ij")
    squared = np.zeros((heatmaps.shape[0], *spatial_shape, heatmaps.shape[-1]))
    for axis in range(ndim):
        centre = centres[:, :, ndim - 1 - axis].reshape(centres.shape[0], *([1] * ndim), centres.shape[1])
        squared += ((grids[axis][None, ..., None] - centre) / radius[ndim - 1 - axis]) ** 2
    inside = ~(squared > 1.0)
    return np.where(inside, heatmaps, -np.inf).astype(heatmaps.dtype)


def plot_components(path: str | os.PathLike, image: np.ndarray, local: np.ndarray, spatial: np.ndarray,
                    coords: np.ndarray, flipped: np.ndarray | None = None) -> None:
    """Input and the maxima over landmarks of local appearance, spatial configuration and their product.

    2D only: image (y, x), heatmaps (y, x, N), coords (N, 2) in pixels (drawn as circles). Each heatmap panel
    has its own colour bar; the title says how many landmarks' factors were flipped.
    """
    note = f" ({int(np.sum(flipped))} flipped)" if flipped is not None and np.any(flipped) else ""
    panels = [("input", image, "gray"), (f"local appearance{note}", local.max(axis=-1), "magma"),
              (f"spatial configuration{note}", spatial.max(axis=-1), "magma"),
              ("SCN = local x spatial", (local * spatial).max(axis=-1), "magma")]
    figure = Figure(figsize=(18, 4.4))
    axes = figure.subplots(1, len(panels))
    valid = np.all(np.isfinite(coords), axis=1)
    for axis, (title, picture, colormap) in zip(axes, panels):
        shown = axis.imshow(picture, cmap=colormap)
        if colormap != "gray":
            figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04)
        axis.scatter(coords[valid, 0], coords[valid, 1], s=30, facecolors="none", edgecolors="lime", linewidths=1)
        axis.set_title(title)
        axis.set_axis_off()
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90)
