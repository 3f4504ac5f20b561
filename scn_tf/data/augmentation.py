"""Spatial and intensity augmentation: one composite SimpleITK transform from network space to the source
image's physical space, and the landmarks mapped through its inverse so that they stay on their anatomy.

Network space has the configured size and spacing, origin 0 and identity direction; its axes follow the
source image's own axes (a rotated direction matrix is undone), centred on the source image. The transform
is `p_source = A(E(p_network))` with E an elastic B-spline deformation of network space and A an affine map
(rotation, scaling, translation, direction). Landmarks go the other way: A is inverted analytically, E
numerically by fixed-point iteration.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk

from scn_tf.configs import AugmentationConfig, DataConfig
from scn_tf.data import resampling

_ELASTIC_INVERSE_ITERATIONS = 50


@dataclasses.dataclass
class NetworkGeometry:
    size: np.ndarray      # (d,) pixels, x, y[, z]
    spacing: np.ndarray   # (d,) mm per pixel

    @property
    def field_of_view(self) -> np.ndarray:
        return self.size * self.spacing

    @property
    def centre(self) -> np.ndarray:
        return (self.size - 1) / 2.0 * self.spacing


def network_geometry(source: sitk.Image, data: DataConfig) -> NetworkGeometry:
    """The configured spacing, or the largest one that fits the whole source image (fixed aspect ratio)."""
    size = np.array(data.image_size, np.int64)
    if data.spacing is not None:
        return NetworkGeometry(size, np.array(data.spacing, np.float64))
    extent = np.array(source.GetSize()) * np.array(source.GetSpacing())
    return NetworkGeometry(size, np.full(len(size), np.max(extent / size)))


@dataclasses.dataclass
class SpatialTransform:
    """Network physical space -> source physical space, with the inverse for points."""

    geometry: NetworkGeometry
    affine: sitk.AffineTransform
    elastic: sitk.BSplineTransform | None

    @property
    def transform(self) -> sitk.Transform:
        if self.elastic is None:
            return self.affine
        return sitk.CompositeTransform([self.affine, self.elastic])  # the last one is applied first

    def resample(self, source: sitk.Image, outside_value: float = 0.0, method: str = "field",
                 threads: int = 0) -> sitk.Image:
        """The source in network space through `transform` (resampling.resample: "field" or "exact")."""
        return resampling.resample(source, self.transform, self.geometry.size, self.geometry.spacing,
                                   outside_value, method, threads=threads)

    def to_network(self, points: np.ndarray) -> np.ndarray:
        """Source physical points (N, d) to network physical points; NaN rows stay NaN."""
        inverse = self.affine.GetInverse()
        result = np.full(points.shape, np.nan)
        for index, point in enumerate(points):
            if np.all(np.isfinite(point)):
                result[index] = self._invert_elastic(np.array(inverse.TransformPoint([float(v) for v in point])))
        return result

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Network physical points (N, d) to source physical points; NaN rows stay NaN."""
        transform = self.transform
        return np.array([transform.TransformPoint([float(v) for v in point]) if np.all(np.isfinite(point))
                         else [np.nan] * len(point) for point in points]).reshape(points.shape)

    def _invert_elastic(self, target: np.ndarray) -> np.ndarray:
        """Solves x + D(x) = target by the fixed point x <- target - D(x) (D is smooth and small)."""
        if self.elastic is None:
            return target
        x = target.copy()
        tolerance = 1e-6 * float(np.min(self.geometry.spacing))
        for _ in range(_ELASTIC_INVERSE_ITERATIONS):
            displacement = np.array(self.elastic.TransformPoint([float(v) for v in x])) - x
            updated = target - displacement
            if np.max(np.abs(updated - x)) < tolerance:
                return updated
            x = updated
        return x


def rotation_matrix(angles: np.ndarray, ndim: int) -> np.ndarray:
    """2D: one angle; 3D: rotations about x, y and z in turn."""
    if ndim == 2:
        c, s = np.cos(angles[0]), np.sin(angles[0])
        return np.array([[c, -s], [s, c]])
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        rotation = np.eye(3)
        rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
        matrix = rotation @ matrix
    return matrix


def make_transform(source: sitk.Image, data: DataConfig, augmentation: AugmentationConfig | None,
                   rng: np.random.Generator | None) -> SpatialTransform:
    """The spatial transform for one sample; without `rng` (validation, test) no part is random."""
    ndim = source.GetDimension()
    geometry = network_geometry(source, data)
    direction = np.array(source.GetDirection()).reshape(ndim, ndim)
    source_spacing = np.array(source.GetSpacing())
    centre_index = (np.array(source.GetSize()) - 1) / 2.0
    random = rng is not None and augmentation is not None
    matrix = np.eye(ndim)
    translation = np.zeros(ndim)
    elastic = None
    if random:
        if augmentation.crop_z and ndim == 3:
            half = geometry.field_of_view[2] / 2.0 / source_spacing[2]
            low, high = half - 0.5, source.GetSize()[2] - 0.5 - half
            if high > low:
                centre_index[2] = rng.uniform(low, high)
        translation = rng.uniform(-augmentation.translation, augmentation.translation, ndim)
        angles = rng.uniform(-augmentation.rotation, augmentation.rotation, 1 if ndim == 2 else 3)
        uniform = rng.uniform(1 - augmentation.scale, 1 + augmentation.scale)
        per_axis = rng.uniform(1 - augmentation.scale_axis, 1 + augmentation.scale_axis, ndim)
        matrix = rotation_matrix(angles, ndim) @ np.diag(1.0 / (uniform * per_axis))
        if augmentation.elastic_grid and augmentation.elastic_magnitude:
            elastic = _random_elastic(geometry, augmentation, rng)
    centre = np.array(source.TransformContinuousIndexToPhysicalPoint([float(v) for v in centre_index]))
    affine = sitk.AffineTransform(ndim)
    affine.SetMatrix([float(v) for v in (direction @ matrix).ravel()])
    affine.SetCenter([float(v) for v in geometry.centre])
    affine.SetTranslation([float(v) for v in centre - geometry.centre + direction @ translation])
    return SpatialTransform(geometry, affine, elastic)


def _random_elastic(geometry: NetworkGeometry, augmentation: AugmentationConfig,
                    rng: np.random.Generator) -> sitk.BSplineTransform:
    """Cubic B-spline over the network's field of view with `elastic_grid` control points per axis and
    coefficients uniform in +-elastic_magnitude mm."""
    ndim = len(geometry.size)
    mesh = max(augmentation.elastic_grid - 3, 1)
    transform = sitk.BSplineTransform(ndim, 3)
    transform.SetTransformDomainOrigin([-0.5 * float(s) for s in geometry.spacing])
    transform.SetTransformDomainPhysicalDimensions([float(v) for v in geometry.field_of_view])
    transform.SetTransformDomainDirection([float(v) for v in np.eye(ndim).ravel()])
    transform.SetTransformDomainMeshSize([mesh] * ndim)
    count = len(transform.GetParameters())
    magnitude = augmentation.elastic_magnitude
    transform.SetParameters([float(v) for v in rng.uniform(-magnitude, magnitude, count)])
    return transform


def augment_intensity(array: np.ndarray, augmentation: AugmentationConfig | None, rng: np.random.Generator | None,
                      clamp: list[float] | None) -> np.ndarray:
    """(x + shift) * scale with shift in +-intensity_shift and scale in 1 +- intensity_scale, then clamp."""
    if rng is None or augmentation is None:
        return array
    shift = rng.uniform(-augmentation.intensity_shift, augmentation.intensity_shift)
    scale = rng.uniform(1 - augmentation.intensity_scale, 1 + augmentation.intensity_scale)
    array = (array + shift) * scale
    if clamp is not None:
        array = np.clip(array, clamp[0], clamp[1])
    return array.astype(np.float32)
