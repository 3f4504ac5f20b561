"""Gaussian heatmap targets (eq. 1 of the paper) and heatmap decoding (argmax + parabola refinement).

Conventions: heatmaps are channels_last, (batch, [z,] y, x, landmarks), in array order; landmark
coordinates are (x, y[, z]) in heatmap-pixel units, so coordinate k indexes spatial axis ndim-1-k.
Written in `keras.ops` so that the same code serves the TensorFlow training loop and other backends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from keras import ops


def gaussian_heatmaps(coords, valid, sigmas, spatial_shape: Sequence[int], gamma: float):
    """Target heatmaps g_i(x) = gamma / ((2 pi)^(d/2) sigma_i^d) exp(-|x - x_i|^2 / (2 sigma_i^2)).

    coords: (B, N, d) float, NaN allowed where invalid; valid: (B, N) bool or 0/1; sigmas: (N,), the
    learnable per-landmark widths (gradients flow to them); spatial_shape: array order.
    Invalid landmarks get an all-zero heatmap. Returns (B, *spatial_shape, N) float32.
    The Gaussian is separable, so it is built as a product of d one-dimensional factors.
    """
    ndim = len(spatial_shape)
    valid = ops.cast(valid, "float32")
    coords = ops.where(valid[..., None] > 0, ops.cast(coords, "float32"), 0.0)
    sigmas = ops.cast(sigmas, "float32")
    heatmap = None
    for axis, size in enumerate(spatial_shape):
        grid = ops.arange(size, dtype="float32")
        centre = coords[:, :, ndim - 1 - axis]
        factor = ops.exp(-ops.square(grid[None, :, None] - centre[:, None, :]) / (2.0 * ops.square(sigmas)))
        shape = [-1] + [1] * ndim + [factor.shape[-1]]
        shape[1 + axis] = size
        factor = ops.reshape(factor, shape)
        heatmap = factor if heatmap is None else heatmap * factor
    norm = gamma / ((2.0 * math.pi) ** (ndim / 2.0) * sigmas**ndim)
    return heatmap * ops.reshape(norm[None, :] * valid, [-1] + [1] * ndim + [valid.shape[-1]])


def decode_heatmaps(heatmaps):
    """Landmark coordinates and peak values from heatmaps (B, *spatial, N).

    The argmax of each heatmap is refined on every axis by the vertex of the parabola through the maximum
    and its two neighbours, offset 0.5 (a - c) / (a - 2b + c); no refinement at a border or where the
    three values are not a proper maximum. Returns coords (B, N, d) in (x, y[, z]) heatmap pixels and
    values (B, N) at the integer maximum.
    """
    spatial = tuple(heatmaps.shape[1:-1])
    ndim = len(spatial)
    num_landmarks = heatmaps.shape[-1]
    flat = ops.reshape(heatmaps, (-1, math.prod(spatial), num_landmarks))
    # top_k, not argmax (both take the first of equal maxima): Keras' TensorFlow argmax tells -0.0 from 0.0
    # through a bitcast, which ONNX cannot express (scn-export)
    index = ops.top_k(ops.transpose(flat, (0, 2, 1)), 1)[1][..., 0]
    values = ops.squeeze(ops.take_along_axis(flat, index[:, None, :], axis=1), axis=1)
    strides = [math.prod(spatial[axis + 1 :]) for axis in range(ndim)]
    coords = []
    for axis in range(ndim):
        position = (index // strides[axis]) % spatial[axis]
        has_before = position > 0
        has_after = position < spatial[axis] - 1
        before_index = ops.where(has_before, index - strides[axis], index)
        after_index = ops.where(has_after, index + strides[axis], index)
        before = ops.squeeze(ops.take_along_axis(flat, before_index[:, None, :], axis=1), axis=1)
        after = ops.squeeze(ops.take_along_axis(flat, after_index[:, None, :], axis=1), axis=1)
        denominator = before - 2.0 * values + after
        refine = has_before & has_after & (denominator < 0)
        offset = ops.where(refine, 0.5 * (before - after) / ops.where(refine, denominator, -1.0), 0.0)
        coords.append(ops.cast(position, "float32") + offset)
    return ops.stack(coords[::-1], axis=-1), values
