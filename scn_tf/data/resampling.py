"""Resampling a source image through any SimpleITK transform, fast: the transform is evaluated once on a
coarse grid of the output, every output pixel takes its source position by linear interpolation of that
grid (exactly where the grid cannot be trusted, see below), then its value by linear interpolation of the
source (what ITK's linear interpolator computes).

Resampling through the composite transform evaluates the elastic B-spline at every output pixel (64 weights
per pixel and axis in 3D), which costs about 10x the rest of the resampling. The coarse grid needs a
B-spline evaluation per `step`**d output pixels only; the positions in between are exact for an affine map
and off by at most h**2/8 times the transform's second derivative (h = `step` output spacings) for a smooth
one. A transform need not be smooth: a B-spline has no displacement outside its domain, so one over the
source's extent jumps at the source's edge, and a cell of the grid across the jump mixes both sides
(millimetres off). Each cell is therefore checked at its centre: the transform there against the centre
predicted from the grid (the corners' mean less their second differences / 8, right to third order for a
smooth transform; a jump J across the cell misses by at least |J| / 2**d). A cell that misses by more than
`tolerance` output spacings takes the transform at each of its pixels (in 3D, the cells along a CT's edge
for the spine). "exact" resamples through the transform at every pixel, as SimpleITK's ResampleImageFilter
does. Either works for any SimpleITK transform (neither looks inside it).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import SimpleITK as sitk

METHODS = ("field", "exact")
FIELD_STEP = 4  # output pixels between the coarse grid's points, per axis
FIELD_TOLERANCE = 0.005  # what a cell's centre may miss by before its pixels are exact, in output spacings
_CHUNK = 1 << 16  # output pixels interpolated at a time (temporaries stay in cache)


def resample(
    source: sitk.Image,
    transform: sitk.Transform,
    size: Sequence[int],
    spacing: Sequence[float],
    outside_value: float = 0.0,
    method: str = "field",
    step: int = FIELD_STEP,
    tolerance: float = FIELD_TOLERANCE,
    threads: int = 0,
) -> sitk.Image:
    """The float32 image of `size` pixels at `spacing` (origin 0, identity direction) whose pixel at physical
    point p has the source's linearly interpolated value at `transform`(p); `outside_value` where that lies
    outside the source. `threads` > 0 limits SimpleITK's filters to that many threads (0: its default)."""
    if method not in METHODS:
        raise ValueError(f"resampling method must be one of {METHODS}, got {method!r}")
    if method == "exact":
        return _resample_exact(source, transform, size, spacing, outside_value, threads)
    return _resample_through(
        source, SourceField(source, transform, size, spacing, step, tolerance, threads), size, spacing, outside_value
    )


def resample_elastic_in_source(
    source: sitk.Image,
    affine: sitk.AffineTransform,
    elastic: sitk.BSplineTransform,
    size: Sequence[int],
    spacing: Sequence[float],
    outside_value: float = 0.0,
    step: int = FIELD_STEP,
    threads: int = 0,
) -> sitk.Image:
    """`resample` through elastic(affine(p)) for a B-spline whose domain contains the source (the spine's
    source-space elastic part), with no cell evaluated exactly: see `ElasticInSourceField`."""
    return _resample_through(
        source,
        ElasticInSourceField(source, affine, elastic, size, spacing, step, threads),
        size,
        spacing,
        outside_value,
    )


def _resample_through(
    source: sitk.Image, field, size: Sequence[int], spacing: Sequence[float], outside_value: float
) -> sitk.Image:
    """The source interpolated at the continuous indices of `field`'s slabs, as a float32 image."""
    array = sitk.GetArrayViewFromImage(source)
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    planes = max(_CHUNK // int(np.prod(size[:-1])), 1)
    result = sitk.GetImageFromArray(
        np.concatenate([interpolate(array, slab, outside_value) for slab in field.slabs(planes)], axis=0)
    )
    result.SetSpacing([float(s) for s in spacing])
    return result


def source_indices(
    source: sitk.Image,
    transform: sitk.Transform,
    size: Sequence[int],
    spacing: Sequence[float],
    step: int = FIELD_STEP,
    tolerance: float = FIELD_TOLERANCE,
    threads: int = 0,
) -> np.ndarray:
    """The continuous source indices (d, *output array order, x first) at which "field" samples the source."""
    return np.concatenate(
        list(SourceField(source, transform, size, spacing, step, tolerance, threads).slabs(int(size[-1]))), axis=1
    )


class SourceField:
    """The source positions of the output pixels: the coarse grid's continuous source indices, the output
    pixels of the cells that failed their check (a mask in output array order) and their exact indices."""

    def __init__(
        self,
        source: sitk.Image,
        transform: sitk.Transform,
        size: Sequence[int],
        spacing: Sequence[float],
        step: int,
        tolerance: float,
        threads: int = 0,
    ):
        if step < 1:
            raise ValueError(f"resampling step must be a positive number of pixels, got {step}")
        if not tolerance >= 0:
            raise ValueError(f"resampling tolerance must be >= 0 output spacings, got {tolerance}")
        ndim = len(size)
        self.size = [int(n) for n in size]
        self.coarse = coarse_size(size, step)
        coarse_spacing = [s * max(n - 1, 1) / (c - 1) for n, c, s in zip(size, self.coarse, spacing, strict=True)]
        points = transformed_points(transform, self.coarse, coarse_spacing, [0.0] * ndim, threads)
        centres = transformed_points(
            transform, [c - 1 for c in self.coarse], coarse_spacing, [0.5 * s for s in coarse_spacing], threads
        )
        failed = np.linalg.norm(centres - predicted_centres(points), axis=0) > tolerance * min(spacing)
        cells = [_cell_of_pixel(n, c) for n, c in zip(self.size[::-1], self.coarse[::-1], strict=True)]
        self.mask = failed[np.ix_(*cells)]
        pixels = np.stack(np.nonzero(self.mask)[::-1], axis=-1) * np.asarray(spacing, np.float64)
        exact = transform_points(transform, pixels, threads)
        self.grid = _to_index(source, np.moveaxis(points, 0, -1))
        self.exact = _to_index(source, exact)  # (d, refined pixels)
        self._offsets = np.concatenate([[0], np.cumsum(self.mask.reshape(self.mask.shape[0], -1).sum(axis=1))])

    def slabs(self, planes: int) -> Iterator[np.ndarray]:
        """The source indices (d, planes, *rest of the output array order) of `planes` output planes at a time
        along the slowest axis, all but that axis interpolated once."""
        ndim = len(self.size)
        grid = self.grid
        for axis in range(1, ndim):
            grid = _lerp_axis(grid, axis, self.size[ndim - 1 - axis])
        depth = self.size[-1]
        for first in range(0, depth, planes):
            stop = min(first + planes, depth)
            slab = _lerp_axis(grid, 0, depth, first, stop)
            self._fill(slab, first, stop)
            yield slab

    def _fill(self, slab: np.ndarray, first: int, stop: int) -> None:
        """Puts the exact indices of the refined pixels of output planes first..stop into `slab`."""
        slab[:, self.mask[first:stop]] = self.exact[:, self._offsets[first] : self._offsets[stop]]


class ElasticInSourceField(SourceField):
    """The source positions of elastic(affine(p)) for a B-spline over exactly the source's extent (the
    spine's source-space elastic part, `augmentation.source_domain`), without exact cells.

    Outside its domain the B-spline has no displacement, so the composite jumps at the domain's edge. Here
    the coarse grid interpolates the composite with the B-spline continued smoothly beyond its domain
    (`continued_bspline`), and a pixel whose affine point lies outside the domain, where the true composite
    is the affine map alone, is sent outside the source: the domain is the buffer with its half-pixel
    border, what the interpolator counts as inside, so such a pixel takes `outside_value` either way. The
    test is exact (an affine map, evaluated per pixel as a sum of one term per axis); the positions inside
    carry only the smooth error of the coarse grid.
    """

    def __init__(
        self,
        source: sitk.Image,
        affine: sitk.AffineTransform,
        elastic: sitk.BSplineTransform,
        size: Sequence[int],
        spacing: Sequence[float],
        step: int,
        threads: int = 0,
    ):
        if step < 1:
            raise ValueError(f"resampling step must be a positive number of pixels, got {step}")
        _check_domain_is_source(elastic, source)
        ndim = len(size)
        self.size = [int(n) for n in size]
        self.coarse = coarse_size(size, step)
        coarse_spacing = [s * max(n - 1, 1) / (c - 1) for n, c, s in zip(size, self.coarse, spacing, strict=True)]
        composite = sitk.CompositeTransform([continued_bspline(elastic), affine])  # the affine map first
        points = transformed_points(composite, self.coarse, coarse_spacing, [0.0] * ndim, threads)
        self.grid = _to_index(source, np.moveaxis(points, 0, -1))
        self._weights, self._offset = _pixel_to_domain_units(affine, elastic, spacing)

    def outside(self, first: int, stop: int) -> np.ndarray:
        """Whether each pixel of output planes first..stop (array order) has its affine point outside the
        domain."""
        ndim = len(self.size)
        ranges = [np.arange(first, stop)] + [np.arange(n) for n in self.size[-2::-1]]  # array order
        result = np.zeros([len(r) for r in ranges], bool)
        for unit in range(ndim):
            value = np.full(result.shape, self._offset[unit])
            for axis, pixels in enumerate(ranges):
                shape = [1] * ndim
                shape[axis] = -1
                value = value + (pixels * self._weights[ndim - 1 - axis, unit]).reshape(shape)
            result |= (value < 0) | (value >= 1)
        return result

    def _fill(self, slab: np.ndarray, first: int, stop: int) -> None:
        slab[:, self.outside(first, stop)] = _OUTSIDE


_OUTSIDE = -1.0e6  # a continuous index beyond every source's half-pixel border


def continued_bspline(elastic: sitk.BSplineTransform, cells: int = 2) -> sitk.BSplineTransform:
    """The cubic `elastic` with its domain grown by `cells` control cells per side, equal to it inside its
    domain and, beyond, the cubic polynomial of the nearest cell continued: the coefficients go on as a
    cubic sequence (constant third differences), which a cubic B-spline turns into that polynomial."""
    if elastic.GetOrder() != 3:
        raise ValueError(f"only cubic B-splines can be continued, got order {elastic.GetOrder()}")
    images = elastic.GetCoefficientImages()
    ndim = images[0].GetDimension()
    direction = np.array(images[0].GetDirection()).reshape(ndim, ndim)
    spacing = np.array(images[0].GetSpacing())
    continued = []
    for image in images:
        array = sitk.GetArrayFromImage(image)
        for axis in range(ndim):
            array = _continue_cubic(array, axis, cells)
        grown = sitk.GetImageFromArray(array)
        grown.SetSpacing(image.GetSpacing())
        grown.SetDirection(image.GetDirection())
        grown.SetOrigin([float(v) for v in np.array(image.GetOrigin()) - direction @ (cells * spacing)])
        continued.append(grown)
    return sitk.BSplineTransform(continued, 3)


def _continue_cubic(array: np.ndarray, axis: int, count: int) -> np.ndarray:
    """`array` extended by `count` entries at both ends of `axis`, each the cubic through the 4 before it."""
    for _ in range(count):
        n = array.shape[axis]
        ends = []
        for picks in ([3, 2, 1, 0], [n - 4, n - 3, n - 2, n - 1]):
            a, b, c, d = (array.take([i], axis=axis) for i in picks)
            ends.append(4 * d - 6 * c + 4 * b - a)
        array = np.concatenate([ends[0], array, ends[1]], axis=axis)
    return array


def _pixel_to_domain_units(
    affine: sitk.AffineTransform, elastic: sitk.BSplineTransform, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) with output pixel index (x first) @ W + b = the affine point in the domain's unit coordinates
    (the domain is [0, 1) per axis)."""
    ndim = len(spacing)
    matrix = np.array(affine.GetMatrix()).reshape(ndim, ndim)
    centre = np.array(affine.GetCenter())
    shift = centre + np.array(affine.GetTranslation()) - matrix @ centre
    direction = np.array(elastic.GetTransformDomainDirection()).reshape(ndim, ndim)
    extent = np.array(elastic.GetTransformDomainPhysicalDimensions())
    origin = np.array(elastic.GetTransformDomainOrigin())
    weights = (np.diag(np.asarray(spacing, np.float64)) @ matrix.T @ direction) / extent
    return weights, ((shift - origin) @ direction) / extent


def _check_domain_is_source(elastic: sitk.BSplineTransform, source: sitk.Image) -> None:
    """Refuses a B-spline whose domain is not the source's extent with its half-pixel border."""
    ndim = source.GetDimension()
    origin = np.array(source.TransformContinuousIndexToPhysicalPoint([-0.5] * ndim))
    extent = np.array(source.GetSize()) * np.array(source.GetSpacing())
    tolerance = 1e-6 * float(np.max(extent))
    if not (
        np.allclose(elastic.GetTransformDomainOrigin(), origin, atol=tolerance)
        and np.allclose(elastic.GetTransformDomainPhysicalDimensions(), extent, atol=tolerance)
        and np.allclose(elastic.GetTransformDomainDirection(), source.GetDirection(), atol=1e-9)
    ):
        raise ValueError(
            "resample_elastic_in_source needs a B-spline over the source's extent "
            "(augmentation.source_domain); use resample() for other transforms"
        )


def limit_threads(process: sitk.ProcessObject, threads: int) -> None:
    """At most `threads` threads for one filter (0: SimpleITK's default); one runs in the calling thread.

    The number of work units must be limited too: with the threads alone, the default threader still
    splits the work over the process-wide default number of threads."""
    if threads > 0:
        process.SetNumberOfThreads(threads)
        process.SetNumberOfWorkUnits(threads)


def coarse_size(size: Sequence[int], step: int) -> list[int]:
    """Points per axis of the coarse grid: at most `step` pixels apart, at least two, the first and the last
    on the first and last pixel (a transform with a bounded domain, as a B-spline's, is never sampled beyond
    the output)."""
    return [max(int(np.ceil((n - 1) / step)) + 1, 2) for n in size]


def transformed_points(
    transform: sitk.Transform, size: Sequence[int], spacing: Sequence[float], origin: Sequence[float], threads: int = 0
) -> np.ndarray:
    """`transform` at the points of a grid (x first, identity direction): physical points (d, *array order)."""
    ndim = len(size)
    generator = sitk.TransformToDisplacementFieldFilter()
    generator.SetOutputPixelType(sitk.sitkVectorFloat64)
    generator.SetSize([int(n) for n in size])
    generator.SetOutputOrigin([float(v) for v in origin])
    generator.SetOutputSpacing([float(s) for s in spacing])
    generator.SetOutputDirection([float(v) for v in np.eye(ndim).ravel()])
    limit_threads(generator, threads)
    displacement = sitk.GetArrayFromImage(generator.Execute(transform))  # (*array order, d), mm
    axes = [o + np.arange(n) * s for n, s, o in zip(size[::-1], spacing[::-1], origin[::-1], strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij")[::-1], axis=-1)  # the points themselves, x first
    return np.moveaxis(grid + displacement, -1, 0)


def transform_points(transform: sitk.Transform, points: np.ndarray, threads: int = 0) -> np.ndarray:
    """`transform` at physical points (m, d), all in one filter run: the points are laid out on a line of
    pixels (origin 0, spacing 1) that a displacement field moves onto them, and the transform follows."""
    count, ndim = points.shape
    if count == 0:
        return np.empty((0, ndim))
    line = np.zeros((count, ndim))
    line[:, 0] = np.arange(count)
    field = sitk.GetImageFromArray((points - line).reshape((1,) * (ndim - 1) + (count, ndim)), isVector=True)
    composite = sitk.CompositeTransform([transform, sitk.DisplacementFieldTransform(field)])  # the field first
    return (
        transformed_points(composite, [count] + [1] * (ndim - 1), [1.0] * ndim, [0.0] * ndim, threads)
        .reshape(ndim, count)
        .T
    )


def predicted_centres(points: np.ndarray) -> np.ndarray:
    """Where a smooth transform takes the cells' centres, from the grid's points (d, *array order) alone: the
    mean of each cell's corners, less an eighth of their second differences per axis (the corners' mean
    exceeds the centre's value by h**2 / 8 times the second derivative per axis)."""
    prediction = _corner_mean(points)
    for axis in range(points.ndim - 1):
        prediction -= _corner_mean(_second_difference(points, axis)) / 8
    return prediction


def _corner_mean(values: np.ndarray) -> np.ndarray:
    """The mean over each cell's 2**d corners of values at the grid's points (d, *array order)."""
    for axis in range(1, values.ndim):
        n = values.shape[axis]
        values = 0.5 * (values.take(range(n - 1), axis=axis) + values.take(range(1, n), axis=axis))
    return values


def _second_difference(points: np.ndarray, axis: int) -> np.ndarray:
    """Per grid point, the second difference along array `axis` of the smallest of the centred, backward
    and forward stencils: one that straddles a jump is large, so a jump does not enter the predictions of
    the cells beside it (which would then fail their check and be refined too). Zero with two points."""
    n = points.shape[axis + 1]
    if n < 3:
        return np.zeros_like(points)
    second = np.diff(points, 2, axis=axis + 1)  # centred on points 1 .. n - 2

    def shifted(before: int, after: int) -> np.ndarray:
        widths = [(0, 0)] * points.ndim
        widths[axis + 1] = (before, after)
        return np.pad(second, widths, constant_values=np.inf)

    stencils = np.stack([shifted(1, 1), shifted(2, 0), shifted(0, 2)])  # point i: centred, backward, forward
    choice = np.argmin(np.linalg.norm(stencils, axis=1), axis=0)  # a missing stencil has norm inf
    return np.take_along_axis(stencils, choice[None, None], axis=0)[0]


def _cell_of_pixel(n: int, points: int) -> np.ndarray:
    """The cell (along one axis) whose corners interpolate each of n output pixels, as in `_lerp_axis`."""
    return np.minimum(np.floor(np.arange(n) * (points - 1) / max(n - 1, 1)).astype(np.int64), points - 2)


def _to_index(source: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Physical points (..., d) as continuous source indices (d, ...), float32."""
    ndim = source.GetDimension()
    direction = np.array(source.GetDirection()).reshape(ndim, ndim)
    to_index = np.linalg.inv(direction * np.array(source.GetSpacing()))
    indices = (points - np.array(source.GetOrigin())) @ to_index.T
    return np.ascontiguousarray(np.moveaxis(indices, -1, 0), dtype=np.float32)


def _lerp_axis(field: np.ndarray, axis: int, n: int, first: int = 0, stop: int | None = None) -> np.ndarray:
    """Output pixels first..stop (default all n) of array `axis` of a (d, *array order) grid, linearly
    interpolated from the grid's points along that axis (the first on pixel 0, the last on pixel n - 1)."""
    points = field.shape[axis + 1]
    position = np.arange(first, n if stop is None else stop) * (points - 1) / max(n - 1, 1)
    low = np.minimum(np.floor(position).astype(np.int64), points - 2)
    weight = (position - low).astype(np.float32).reshape((-1,) + (1,) * (field.ndim - 2 - axis))
    below, above = field.take(low, axis=axis + 1), field.take(low + 1, axis=axis + 1)
    return below + weight * (above - below)


def interpolate(array: np.ndarray, indices: np.ndarray, outside_value: float) -> np.ndarray:
    """Linear interpolation of `array` (array order) at continuous indices (d, *output array order, x first),
    as ITK's linear interpolator in the resample filter: inside the buffer's half-pixel border the nearest
    pixel's value is extended, beyond it `outside_value`."""
    ndim = array.ndim
    shape = np.array(array.shape[::-1])  # x, y[, z]
    strides = np.concatenate([[1], np.cumprod(shape[:-1])]).astype(np.int64)
    steps = np.where(shape > 1, strides, 0)
    flat = array.reshape(-1)
    coordinates = indices.reshape(ndim, -1)
    result = np.empty(coordinates.shape[1], np.float32)
    for start in range(0, coordinates.shape[1], _CHUNK):
        chunk = coordinates[:, start : start + _CHUNK]
        inside = np.ones(chunk.shape[1], bool)
        for axis in range(ndim):  # Python numbers keep the arithmetic in float32
            inside &= (chunk[axis] >= -0.5) & (chunk[axis] < int(shape[axis]) - 0.5)
        if not inside.any():
            result[start : start + _CHUNK] = outside_value
            continue
        if inside.mean() < 0.5:  # interpolate the pixels inside only
            result[start : start + _CHUNK] = outside_value
            result[start : start + _CHUNK][inside] = interpolate(array, chunk[:, inside], outside_value)
            continue
        offset = np.zeros(chunk.shape[1], np.int64)
        fractions = []
        for axis in range(ndim):
            c, n = chunk[axis], int(shape[axis])
            c = np.clip(c, 0.0, float(n - 1))
            low = np.minimum(np.floor(c), float(max(n - 2, 0)))
            fractions.append(c - low)
            offset += low.astype(np.int64) * strides[axis]
        corners = {
            bits: flat.take(offset + int(np.dot(bits, steps))) for bits in itertools.product((0, 1), repeat=ndim)
        }
        for axis in range(ndim):  # lerp along x, then y[, then z]
            corners = {
                bits[1:]: corners[(0,) + bits[1:]]
                + fractions[axis] * (corners[(1,) + bits[1:]] - corners[(0,) + bits[1:]])
                for bits in corners
                if bits[0] == 0
            }
        values = corners[()]
        values[~inside] = outside_value
        result[start : start + _CHUNK] = values
    return result.reshape(indices.shape[1:])


def _resample_exact(
    source: sitk.Image,
    transform: sitk.Transform,
    size: Sequence[int],
    spacing: Sequence[float],
    outside_value: float,
    threads: int,
) -> sitk.Image:
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(s) for s in size])
    resampler.SetOutputSpacing([float(s) for s in spacing])
    resampler.SetOutputOrigin([0.0] * source.GetDimension())
    resampler.SetTransform(transform)
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(float(outside_value))
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    limit_threads(resampler, threads)
    return resampler.Execute(source)
