"""Resampling a source image through any SimpleITK transform, fast: the transform is evaluated once on a
coarse grid of the output, and every output pixel takes its source position by linear interpolation of that
grid, then its value by linear interpolation of the source (what ITK's linear interpolator computes).

Resampling through the composite transform evaluates the elastic B-spline at every output pixel (64 weights
per pixel and axis in 3D), which costs about 10x the rest of the resampling. The coarse grid needs a
B-spline evaluation per `step`**d output pixels only; the positions in between are exact for an affine map
and off by at most h**2/8 times the transform's second derivative (h = `step` output spacings) elsewhere:
at most 0.002 mm (skull2d) and 0.05 mm (spine3d) for the presets' deformations (docs/pipeline_speed.md).
"exact" resamples through the transform at every pixel, as SimpleITK's ResampleImageFilter does. Either
works for any SimpleITK transform (the coarse grid needs no knowledge of how it is composed).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import SimpleITK as sitk

METHODS = ("field", "exact")
FIELD_STEP = 4       # output pixels between the coarse grid's points, per axis
_CHUNK = 1 << 16     # output pixels interpolated at a time (temporaries stay in cache)


def resample(source: sitk.Image, transform: sitk.Transform, size: Sequence[int], spacing: Sequence[float],
             outside_value: float = 0.0, method: str = "field", step: int = FIELD_STEP,
             threads: int = 0) -> sitk.Image:
    """The float32 image of `size` pixels at `spacing` (origin 0, identity direction) whose pixel at physical
    point p has the source's linearly interpolated value at `transform`(p); `outside_value` where that lies
    outside the source. `threads` > 0 limits SimpleITK's filters to that many threads (0: its default)."""
    if method not in METHODS:
        raise ValueError(f"resampling method must be one of {METHODS}, got {method!r}")
    if method == "exact":
        return _resample_exact(source, transform, size, spacing, outside_value, threads)
    if step < 1:
        raise ValueError(f"resampling step must be a positive number of pixels, got {step}")
    grid = source_index_grid(source, transform, size, spacing, step, threads)
    ndim = len(size)
    for axis in range(1, ndim):                   # all but the slowest array axis now, that one slab by slab
        grid = _lerp_axis(grid, axis, int(size[ndim - 1 - axis]))
    array = sitk.GetArrayViewFromImage(source)
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    planes, depth = max(_CHUNK // int(np.prod(size[:-1])), 1), int(size[-1])
    slabs = [interpolate(array, _lerp_axis(grid, 0, depth, first, min(first + planes, depth)), outside_value)
             for first in range(0, depth, planes)]
    result = sitk.GetImageFromArray(np.concatenate(slabs, axis=0))
    result.SetSpacing([float(s) for s in spacing])
    return result


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


def source_index_grid(source: sitk.Image, transform: sitk.Transform, size: Sequence[int],
                      spacing: Sequence[float], step: int, threads: int = 0) -> np.ndarray:
    """Continuous source indices (d, *coarse array order) of the transformed points of the coarse grid."""
    ndim = len(size)
    coarse = coarse_size(size, step)
    coarse_spacing = [s * max(n - 1, 1) / (c - 1) for n, c, s in zip(size, coarse, spacing)]
    generator = sitk.TransformToDisplacementFieldFilter()
    generator.SetOutputPixelType(sitk.sitkVectorFloat64)
    generator.SetSize(coarse)
    generator.SetOutputOrigin([0.0] * ndim)
    generator.SetOutputSpacing(coarse_spacing)
    generator.SetOutputDirection([float(v) for v in np.eye(ndim).ravel()])
    limit_threads(generator, threads)
    displacement = sitk.GetArrayFromImage(generator.Execute(transform))  # (*array order, d), mm
    axes = [np.arange(n) * s for n, s in zip(coarse[::-1], coarse_spacing[::-1])]
    grid = np.stack(np.meshgrid(*axes, indexing="ij")[::-1], axis=-1)       # the points themselves, x first
    points = grid + displacement
    direction = np.array(source.GetDirection()).reshape(ndim, ndim)
    to_index = np.linalg.inv(direction * np.array(source.GetSpacing()))
    indices = (points - np.array(source.GetOrigin())) @ to_index.T
    return np.ascontiguousarray(np.moveaxis(indices, -1, 0), dtype=np.float32)


def upsample(grid: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Linear interpolation of a coarse grid (d, *coarse array order), its first and last points on the first and
    last output pixel, to the output pixels (d, *array order)."""
    field = grid.astype(np.float32)
    for axis, n in enumerate(reversed(size)):
        field = _lerp_axis(field, axis, int(n))
    return field


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
    shape = np.array(array.shape[::-1])                     # x, y[, z]
    strides = np.concatenate([[1], np.cumprod(shape[:-1])]).astype(np.int64)
    steps = np.where(shape > 1, strides, 0)
    flat = array.reshape(-1)
    coordinates = indices.reshape(ndim, -1)
    result = np.empty(coordinates.shape[1], np.float32)
    for start in range(0, coordinates.shape[1], _CHUNK):
        chunk = coordinates[:, start:start + _CHUNK]
        inside = np.ones(chunk.shape[1], bool)
        offset = np.zeros(chunk.shape[1], np.int64)
        fractions = []
        for axis in range(ndim):
            c, n = chunk[axis], int(shape[axis])            # Python numbers keep the arithmetic in float32
            inside &= (c >= -0.5) & (c < n - 0.5)
            c = np.clip(c, 0.0, float(n - 1))
            low = np.minimum(np.floor(c), float(max(n - 2, 0)))
            fractions.append(c - low)
            offset += low.astype(np.int64) * strides[axis]
        corners = {bits: flat[offset + int(np.dot(bits, steps))] for bits in itertools.product((0, 1), repeat=ndim)}
        for axis in range(ndim):                              # lerp along x, then y[, then z]
            corners = {bits[1:]: corners[(0,) + bits[1:]] + fractions[axis] * (corners[(1,) + bits[1:]]
                                                                               - corners[(0,) + bits[1:]])
                       for bits in corners if bits[0] == 0}
        values = corners[()]
        values[~inside] = outside_value
        result[start:start + _CHUNK] = values
    return result.reshape(indices.shape[1:])


def _resample_exact(source: sitk.Image, transform: sitk.Transform, size: Sequence[int], spacing: Sequence[float],
                    outside_value: float, threads: int) -> sitk.Image:
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
