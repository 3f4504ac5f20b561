"""Spatial and intensity augmentation: one composite SimpleITK transform from network space to the source
image's physical space, and the landmarks mapped through its inverse so that they stay on their anatomy.

Network space has the configured size and spacing, origin 0 and identity direction; its axes follow the
source image's own axes (a rotated direction matrix is undone), centred on the source image. The transform
is `p_source = A(E(p_network))` with E an elastic B-spline deformation of network space and A an affine map
(rotation, scaling, translation, direction), or `p_source = E(A(p_network))` with E deforming the whole
source image (the original's spine setup). Landmarks go the other way: A is inverted analytically, E
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
    size: np.ndarray  # (d,) pixels, x, y[, z]
    spacing: np.ndarray  # (d,) mm per pixel

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
    elastic_in_source: bool = False  # the elastic part deforms source space, after the affine map

    @property
    def transform(self) -> sitk.Transform:
        if self.elastic is None:
            return self.affine
        parts = [self.elastic, self.affine] if self.elastic_in_source else [self.affine, self.elastic]
        return sitk.CompositeTransform(parts)  # the last one is applied first

    def resample(
        self, source: sitk.Image, outside_value: float = 0.0, method: str = "field", threads: int = 0
    ) -> sitk.Image:
        """The source in network space through `transform` (resampling.resample: "field" or "exact"; "field"
        with a source-space elastic part: resampling.resample_elastic_in_source)."""
        if method == "field" and self.elastic_in_source:
            return resampling.resample_elastic_in_source(
                source,
                self.affine,
                self.elastic,
                self.geometry.size,
                self.geometry.spacing,
                outside_value,
                threads=threads,
            )
        return resampling.resample(
            source, self.transform, self.geometry.size, self.geometry.spacing, outside_value, method, threads=threads
        )

    def to_network(self, points: np.ndarray) -> np.ndarray:
        """Source physical points (N, d) to network physical points; NaN rows stay NaN."""
        inverse = self.affine.GetInverse()
        result = np.full(points.shape, np.nan)
        for index, point in enumerate(points):
            if not np.all(np.isfinite(point)):
                continue
            if self.elastic_in_source:
                result[index] = inverse.TransformPoint([float(v) for v in self._invert_elastic(point)])
            else:
                result[index] = self._invert_elastic(np.array(inverse.TransformPoint([float(v) for v in point])))
        return result

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Network physical points (N, d) to source physical points; NaN rows stay NaN."""
        transform = self.transform
        return np.array(
            [
                transform.TransformPoint([float(v) for v in point])
                if np.all(np.isfinite(point))
                else [np.nan] * len(point)
                for point in points
            ]
        ).reshape(points.shape)

    def landmark_pixels(
        self, points: np.ndarray, max_min_distance: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Source physical points (N, d) to network pixel coordinates (N, d) and validity (N,).

        A landmark is valid where 0 <= c < size per axis (as the original's landmark generator). With the
        elastic part and `max_min_distance` (mm) set, a landmark outside the field of view stays valid,
        placed at the nearest border pixel, when that pixel maps to within `max_min_distance` of it in
        source space (the original's inversion through the displacement field does the same). Invalid rows
        are NaN.
        """
        size = self.geometry.size
        coords = self.to_network(points) / self.geometry.spacing
        finite = np.all(np.isfinite(coords), axis=1)
        with np.errstate(invalid="ignore"):
            valid = finite & np.all((coords >= 0) & (coords < size), axis=1)
        if self.elastic is not None and max_min_distance is not None:
            outside = np.flatnonzero(finite & ~valid)
            border = np.clip(coords[outside], 0, size - 1)
            distance = np.linalg.norm(self.to_source(border * self.geometry.spacing) - points[outside], axis=1)
            near = outside[distance <= max_min_distance]
            coords[near] = border[distance <= max_min_distance]
            valid[near] = True
        coords[~valid] = np.nan
        return coords, valid

    def _invert_elastic(self, target: np.ndarray) -> np.ndarray:
        """Solves x + D(x) = target by the fixed point x <- target - D(x) (D is smooth and small)."""
        if self.elastic is None:
            return target
        x = np.array(target, np.float64)
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


def make_transform(
    source: sitk.Image, data: DataConfig, augmentation: AugmentationConfig | None, rng: np.random.Generator | None
) -> SpatialTransform:
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
        units = geometry.spacing if augmentation.spatial_units == "network_pixels" else np.ones(ndim)
        if augmentation.crop_z and ndim == 3:
            # the original's z offset (L - field of view) * U(-0.5, 0.5): short volumes shift too
            length = source.GetSize()[2] * source_spacing[2]
            centre_index[2] += (length - geometry.field_of_view[2]) * rng.uniform(-0.5, 0.5) / source_spacing[2]
        translation = rng.uniform(-augmentation.translation, augmentation.translation, ndim) * units
        angles = rng.uniform(-augmentation.rotation, augmentation.rotation, 1 if ndim == 2 else 3)
        uniform = rng.uniform(1 - augmentation.scale, 1 + augmentation.scale)
        per_axis = rng.uniform(1 - augmentation.scale_axis, 1 + augmentation.scale_axis, ndim)
        # the original multiplies the network -> source point map by s, so the image appears zoomed by 1/s
        matrix = rotation_matrix(angles, ndim) @ np.diag(uniform * per_axis)
        if augmentation.elastic_grid and augmentation.elastic_magnitude:
            domain = (
                source_domain(source)
                if augmentation.elastic_space == "source"
                else (np.full(ndim, -0.5) * geometry.spacing, geometry.field_of_view, np.eye(ndim))
            )
            elastic = _random_elastic(domain, augmentation.elastic_grid, augmentation.elastic_magnitude * units, rng)
    centre = np.array(source.TransformContinuousIndexToPhysicalPoint([float(v) for v in centre_index]))
    affine = sitk.AffineTransform(ndim)
    affine.SetMatrix([float(v) for v in (direction @ matrix).ravel()])
    affine.SetCenter([float(v) for v in geometry.centre])
    affine.SetTranslation([float(v) for v in centre - geometry.centre + direction @ translation])
    in_source = elastic is not None and augmentation.elastic_space == "source"
    return SpatialTransform(geometry, affine, elastic, elastic_in_source=in_source)


def source_domain(source: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin, physical size, direction) of the whole source image, voxel edges included."""
    ndim = source.GetDimension()
    origin = np.array(source.TransformContinuousIndexToPhysicalPoint([-0.5] * ndim))
    extent = np.array(source.GetSize()) * np.array(source.GetSpacing())
    return origin, extent, np.array(source.GetDirection()).reshape(ndim, ndim)


def _random_elastic(
    domain: tuple[np.ndarray, np.ndarray, np.ndarray], grid: int, magnitude: np.ndarray, rng: np.random.Generator
) -> sitk.BSplineTransform:
    """Cubic B-spline over `domain` (origin, physical size, direction) with `grid` control points per axis
    and coefficients uniform in +-magnitude (mm, per axis)."""
    origin, extent, direction = domain
    ndim = len(origin)
    transform = sitk.BSplineTransform(ndim, 3)
    transform.SetTransformDomainOrigin([float(v) for v in origin])
    transform.SetTransformDomainPhysicalDimensions([float(v) for v in extent])
    transform.SetTransformDomainDirection([float(v) for v in direction.ravel()])
    transform.SetTransformDomainMeshSize([max(grid - 3, 1)] * ndim)
    per_axis = len(transform.GetParameters()) // ndim  # the parameters hold all x, then all y[, then all z]
    coefficients = rng.uniform(-1.0, 1.0, (ndim, per_axis)) * np.asarray(magnitude, np.float64)[:, None]
    transform.SetParameters([float(v) for v in coefficients.ravel()])
    return transform


def augment_intensity(
    array: np.ndarray,
    augmentation: AugmentationConfig | None,
    rng: np.random.Generator | None,
    clamp: list[float] | None,
) -> np.ndarray:
    """(x + shift) * scale with shift in +-intensity_shift and scale in 1 +- intensity_scale, then clamp.

    `array` is the normalised but not yet clamped image: the original clamps once, after the random shift
    and scale (its ShiftScaleClamp), so bright values beyond the clamp can still darken into range.
    """
    if rng is None or augmentation is None:
        return array
    shift = rng.uniform(-augmentation.intensity_shift, augmentation.intensity_shift)
    scale = rng.uniform(1 - augmentation.intensity_scale, 1 + augmentation.intensity_scale)
    array = (array + shift) * scale
    if clamp is not None:
        array = np.clip(array, clamp[0], clamp[1])
    return array.astype(np.float32)
