"""Synthetic landmark datasets in which local appearance is ambiguous by construction.

Each image holds a chain of look-alike, vertebra-like blobs (one per landmark) along a smooth random curve
with varying spacing, curvature, size and orientation; only their order along the chain tells them apart.
Look-alike distractor blobs, noise and a smooth intensity inhomogeneity are added, and the chain may run out
of the field of view (those landmarks are NaN in the CSV). Output is the standard on-disk format: images
with their spacing, a landmark CSV in mm, and split lists; everything is seeded and reproducible.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from scn_tf.data.io import write_landmarks_csv
from scn_tf.files import atomic_path, write_text_atomic


@dataclasses.dataclass
class SyntheticConfig:
    ndim: int = 2
    num_landmarks: int = 6
    size: tuple[int, ...] = (128, 128)  # x, y[, z] pixels
    spacing: tuple[float, ...] = (1.0, 1.0)  # mm
    blob_radius: float = 5.0  # mm, mean half-length of a blob across the chain
    gap: float = 16.0  # mm, mean distance between neighbouring landmarks
    distractors: int = 3
    noise: float = 0.08
    inhomogeneity: float = 0.3


def _rotation(ndim: int, rng: np.random.Generator) -> np.ndarray:
    if ndim == 2:
        angle = rng.uniform(-0.6, 0.6)
        return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    q, _ = np.linalg.qr(np.eye(3) + rng.normal(0, 0.25, (3, 3)))
    return q * np.sign(np.diag(q))


def chain_points(config: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Landmark positions (N, d) in mm along a bent random curve, and the unit tangent at each."""
    ndim, n = config.ndim, config.num_landmarks
    extent = np.array(config.size) * np.array(config.spacing)
    gaps = config.gap * rng.uniform(0.8, 1.25) * rng.uniform(0.9, 1.1, n - 1)
    arc = np.concatenate([[0.0], np.cumsum(gaps)])
    arc -= arc.mean()
    bend = rng.uniform(-0.012, 0.012, ndim - 1)
    # the chain runs along the last axis (y in 2D, z in 3D), bent sideways by a parabola, then rotated
    lateral = np.outer(arc**2, bend)
    local = np.concatenate([lateral, arc[:, None]], axis=1)
    tangents = np.concatenate([2 * np.outer(arc, bend), np.ones((n, 1))], axis=1)
    rotation = _rotation(ndim, rng)
    centre = extent / 2 + rng.uniform(-0.2, 0.2, ndim) * extent
    points = centre + local @ rotation.T
    tangents = tangents @ rotation.T
    return points, tangents / np.linalg.norm(tangents, axis=1, keepdims=True)


def _blob(grid: np.ndarray, centre: np.ndarray, tangent: np.ndarray, radius: float) -> np.ndarray:
    """A flat ellipsoidal blob: wide across the chain, thin along it, with a soft edge."""
    offset = grid - centre
    along = offset @ tangent
    across = np.linalg.norm(offset - along[..., None] * tangent, axis=-1)
    distance = np.sqrt((along / (0.55 * radius)) ** 2 + (across / radius) ** 2)
    return 1.0 / (1.0 + np.exp((distance - 1.0) * 8.0))


def generate_sample(config: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image (array order) and its landmarks (N, d) in mm; NaN for landmarks outside the image."""
    ndim = config.ndim
    spacing = np.array(config.spacing)
    axes = [np.arange(n) * s for n, s in zip(config.size, spacing, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)  # (x, y[, z], d) in mm
    points, tangents = chain_points(config, rng)
    radius = config.blob_radius * rng.uniform(0.85, 1.2)
    image = np.zeros(config.size, np.float32)
    for point, tangent in zip(points, tangents, strict=True):
        image += _blob(grid, point, tangent, radius * rng.uniform(0.95, 1.05))
    extent = np.array(config.size) * spacing
    for _ in range(config.distractors):
        while True:
            centre = rng.uniform(0.05, 0.95, ndim) * extent
            if np.min(np.linalg.norm(points - centre, axis=1)) > 2.5 * radius:
                break
        direction = rng.normal(size=ndim)
        image += 0.9 * _blob(grid, centre, direction / np.linalg.norm(direction), radius * rng.uniform(0.8, 1.1))
    low = [
        rng.uniform(-1, 1) * np.cos(rng.uniform(0.5, 2) * np.pi * a / e + rng.uniform(0, 6))
        for a, e in zip(np.moveaxis(grid, -1, 0), extent, strict=True)
    ]
    field = 1.0 + config.inhomogeneity * np.mean(low, axis=0)
    image = image * field + rng.normal(0, config.noise, config.size)
    inside = np.all((points >= 0) & (points <= (np.array(config.size) - 1) * spacing), axis=1)
    points[~inside] = np.nan
    return np.transpose(image, tuple(reversed(range(ndim)))).astype(np.float32), points


def write_dataset(
    output_dir: str | os.PathLike, config: SyntheticConfig, num_train: int = 10, num_test: int = 100, seed: int = 0
) -> Path:
    """images/<id>.mha (or .nii.gz in 3D), landmarks.csv (mm), train.txt and test.txt; returns the folder."""
    output_dir = Path(output_dir)
    suffix = ".mha" if config.ndim == 2 else ".nii.gz"
    landmarks, ids = {}, []
    for index in range(num_train + num_test):
        image_id = f"{'train' if index < num_train else 'test'}{index:04d}"
        array, points = generate_sample(config, np.random.default_rng([seed, index]))
        image = sitk.GetImageFromArray(array)
        image.SetSpacing([float(s) for s in config.spacing])
        with atomic_path(output_dir / "images" / f"{image_id}{suffix}") as temporary:
            sitk.WriteImage(image, str(temporary))
        landmarks[image_id] = points
        ids.append(image_id)
    write_landmarks_csv(output_dir / "landmarks.csv", landmarks)
    write_text_atomic(output_dir / "train.txt", "\n".join(ids[:num_train]) + "\n")
    write_text_atomic(output_dir / "test.txt", "\n".join(ids[num_train:]) + "\n")
    return output_dir


def synthetic_config(ndim: int) -> SyntheticConfig:
    """The demo's data: 2D 128x128 at 1 mm (neighbours 16 mm apart, blobs 10 mm wide), or 3D 48x48x64 at 2 mm."""
    if ndim == 2:
        return SyntheticConfig()
    return SyntheticConfig(ndim=3, size=(48, 48, 64), spacing=(2.0, 2.0, 2.0), blob_radius=6.0, gap=17.0, distractors=2)
