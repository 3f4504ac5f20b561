"""The SCN's two factors decoded on their own (the paper's Fig. 9 analysis).

The network is trained only through the product local appearance x spatial configuration, so a landmark's
factors may both come out negative (-a)(-b) = ab. Decoding one factor alone takes its maximum, which for a
negated factor lies anywhere but at the landmark; `orient_components` therefore flips both factors of a
landmark whose product peaks where both are negative, a choice made from the prediction alone. The paper's
"LA around GT" row decodes local appearance only within a radius of the annotation (`restrict_to_radius`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from scn_tf.data.pipeline import LandmarkSource, make_sample
from scn_tf.figures import save_figure
from scn_tf.heatmaps import decode_heatmaps


def orient_components(local: np.ndarray, spatial: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both factors of a landmark negated where they are both negative at the product's peak.

    local, spatial: (B, *spatial, N). Returns (local, spatial, flipped) with flipped (B, N) bool.
    """
    batch, landmarks = local.shape[0], local.shape[-1]
    flat_local = local.reshape(batch, -1, landmarks)
    flat_spatial = spatial.reshape(batch, -1, landmarks)
    peak = np.argmax(flat_local * flat_spatial, axis=1)[:, None, :]
    flipped = (
        (np.take_along_axis(flat_local, peak, axis=1) < 0) & (np.take_along_axis(flat_spatial, peak, axis=1) < 0)
    )[:, 0, :]
    sign = np.where(flipped, -1.0, 1.0).astype(local.dtype).reshape(batch, *([1] * (local.ndim - 2)), landmarks)
    return local * sign, spatial * sign, flipped


def restrict_to_radius(heatmaps: np.ndarray, centres: np.ndarray, radius: Sequence[float] | float) -> np.ndarray:
    """`heatmaps` (B, *spatial, N) set below their minimum farther than `radius` from each landmark's centre.

    The fill is finite so that decoding's parabola refinement stays defined at the disc's edge (it moves a peak
    there by at most half a pixel).

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
    low, high = float(np.min(heatmaps)), float(np.max(heatmaps))
    return np.where(inside, heatmaps, low - 1.0 - (high - low)).astype(heatmaps.dtype)


def plot_components(
    path: str | os.PathLike,
    image: np.ndarray,
    local: np.ndarray,
    spatial: np.ndarray,
    coords: np.ndarray,
    flipped: np.ndarray | None = None,
) -> Figure:
    """Input and the maxima over landmarks of local appearance, spatial configuration and their product.

    2D only: image (y, x), heatmaps (y, x, N), coords (N, 2) in pixels: the annotated landmarks, drawn as
    circles with a legend. Each heatmap panel has its own colour bar and says that it shows the maximum over
    the landmarks; where landmarks' factors were flipped (`orient_components`), the factor panels count them
    and a subtitle says what flipping means. Returns the figure.
    """
    count = local.shape[-1]
    flips = int(np.sum(flipped)) if flipped is not None else 0
    note = f", {flips} flipped" if flips else ""
    maximum = f"max over {count} landmark{'s' if count != 1 else ''}"
    panels = [
        ("input image", image, "gray"),
        (f"local appearance\n({maximum}{note})", local.max(axis=-1), "magma"),
        (f"spatial configuration\n({maximum}{note})", spatial.max(axis=-1), "magma"),
        (f"SCN = local x spatial\n({maximum})", (local * spatial).max(axis=-1), "magma"),
    ]
    figure = Figure(figsize=(18, 4.8 if flips else 4.4))
    axes = figure.subplots(1, len(panels))
    valid = np.all(np.isfinite(coords), axis=1)
    for axis, (title, picture, colormap) in zip(axes, panels, strict=True):
        shown = axis.imshow(picture, cmap=colormap)
        if colormap != "gray":
            figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04)
        axis.scatter(
            coords[valid, 0],
            coords[valid, 1],
            s=30,
            facecolors="none",
            edgecolors="lime",
            linewidths=1,
            label="annotated landmark",
        )
        axis.set_title(title)
        axis.set_axis_off()
    axes[0].legend(loc="upper right", fontsize=8, framealpha=0.7)
    if flips:
        figure.suptitle(
            f"flipped: for {flips} of {count} landmarks both factors were negative at the product's peak; "
            "both are shown negated (their product, the SCN's heatmap, is unchanged)",
            fontsize=10,
        )
    save_figure(figure, path, dpi=90)
    return figure


def component_points(
    model, source: LandmarkSource, around_mm: float | None = None, figure_path: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """Each test image's landmarks decoded from the SCN's factors alone, in source mm: (images, N, d) each.

    Keys: "local appearance", "spatial configuration" and, with `around_mm`, "local appearance around GT"
    (local appearance within that radius of the annotation, the paper's LAaroundGT). Factors are oriented
    first (`orient_components`); `figure_path` draws the first image's components (2D).
    """
    names = ["local appearance", "spatial configuration"] + (["local appearance around GT"] if around_mm else [])
    results = {name: [] for name in names}
    flipped_total = 0
    for image_id in source.ids:
        sample = make_sample(source, image_id, None, None)
        local, spatial = (np.asarray(h) for h in model.heatmap_components(sample.image[None]))
        local, spatial, flipped = orient_components(local, spatial)
        flipped_total += int(flipped.sum())
        spacing = np.asarray(sample.transform.geometry.spacing, dtype=np.float64)
        heatmaps = {"local appearance": local, "spatial configuration": spatial}
        if around_mm:
            heatmaps["local appearance around GT"] = restrict_to_radius(local, sample.coords[None], around_mm / spacing)
        for name in names:
            coords = np.asarray(decode_heatmaps(heatmaps[name])[0])[0].astype(np.float64)
            results[name].append(sample.transform.to_source(coords * spacing))
        if figure_path is not None and sample.image.ndim == 3:
            plot_components(figure_path, sample.image[..., 0], local[0], spatial[0], sample.coords, flipped[0])
            figure_path = None
    logging.info(
        "component analysis: both factors flipped for %d of %d landmark heatmaps",
        flipped_total,
        len(source.ids) * local.shape[-1],
    )
    return {name: np.stack(points) for name, points in results.items()}
