"""Shared by the benchmarks: a generated CT-like volume with landmarks (no CT data needed), peak memory."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def ct_like_volume(root: Path, size=(512, 512, 160), spacing=(0.34, 0.34, 2.06)) -> None:
    """A body ellipsoid of soft tissue with a column of bright vertebra-like blocks, in air, with noise."""
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(
        *[np.arange(n, dtype=np.float32) * s for n, s in zip(size[::-1], spacing[::-1], strict=True)],
        indexing="ij",
        sparse=True,
    )
    cx, cy = size[0] * spacing[0] / 2, size[1] * spacing[1] / 2
    body = ((x - cx) / 80) ** 2 + ((y - cy) / 60) ** 2 < 1
    volume = np.where(body, 40.0, -1000.0).astype(np.float32)
    points = []
    for centre_z in np.arange(15, size[2] * spacing[2] - 15, 27.0):
        block = ((x - cx) / 18) ** 2 + ((y - cy - 30) / 14) ** 2 + ((z - centre_z) / 11) ** 2 < 1
        volume = np.where(block, 700.0, volume)
        points.append([cx, cy + 30, centre_z])
    volume += rng.normal(0, 20, volume.shape).astype(np.float32)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(spacing)
    (root / "images").mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(root / "images" / "ct.nii.gz"))
    coords = np.full((26, 3), np.nan)
    coords[: len(points)] = points[:26]
    row = ",".join(["ct"] + ["NaN" if np.isnan(v) else f"{v:.3f}" for v in coords.ravel()])
    (root / "points_world_coordinates.csv").write_text(row + "\n")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
