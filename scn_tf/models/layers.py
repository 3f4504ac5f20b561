"""Building blocks shared by the SCN, LA-Net and U-Net: padded convolutions and fixed-kernel upsampling.

Everything here uses Keras layers and `keras.ops` only, so the models run under any Keras backend.
Tensors are channels_last: (batch, [z,] y, x, channels).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import keras
import numpy as np
from keras import ops

_CONV = {2: keras.layers.Conv2D, 3: keras.layers.Conv3D}
_AVG_POOL = {2: keras.layers.AveragePooling2D, 3: keras.layers.AveragePooling3D}
_MAX_POOL = {2: keras.layers.MaxPooling2D, 3: keras.layers.MaxPooling3D}
_NEAREST_UP = {2: keras.layers.UpSampling2D, 3: keras.layers.UpSampling3D}


def check_ndim(ndim: int) -> int:
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    return ndim


def average_pooling(ndim: int, factor: int, name: str | None = None) -> keras.layers.Layer:
    return _AVG_POOL[check_ndim(ndim)](pool_size=factor, strides=factor, padding="valid", name=name)


def max_pooling(ndim: int, factor: int, name: str | None = None) -> keras.layers.Layer:
    return _MAX_POOL[check_ndim(ndim)](pool_size=factor, strides=factor, padding="valid", name=name)


def nearest_upsampling(ndim: int, factor: int, name: str | None = None) -> keras.layers.Layer:
    return _NEAREST_UP[check_ndim(ndim)](size=factor, name=name)


def activation_fn(name: str | None, leaky_relu_slope: float = 0.1) -> Callable | None:
    """Maps an activation name to a function of `keras.ops`; None means linear."""
    if name is None or name == "linear":
        return None
    if name == "leaky_relu":
        return lambda x: ops.leaky_relu(x, negative_slope=leaky_relu_slope)
    if name == "relu":
        return ops.relu
    if name == "tanh":
        return ops.tanh
    raise ValueError(f"unknown activation {name!r}")


class Conv(keras.layers.Layer):
    """Convolution with 'same' zero padding or reflection padding ('reflect': pad, then a valid conv).

    The kernel is He-initialised (fan-in, truncated normal) unless `init_std` asks for a truncated normal
    of that standard deviation, as the original does for the heatmap layers; biases start at zero.
    """

    def __init__(
        self,
        ndim: int,
        filters: int,
        kernel_size: int,
        padding: str = "same",
        activation: str | None = None,
        leaky_relu_slope: float = 0.1,
        init_std: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if padding not in ("same", "reflect"):
            raise ValueError(f"padding must be 'same' or 'reflect', got {padding!r}")
        self.ndim = check_ndim(ndim)
        self.padding = padding
        self.kernel_size = kernel_size
        initializer = "he_normal" if init_std is None else keras.initializers.TruncatedNormal(stddev=init_std)
        self.conv_padding = "same" if padding == "same" else "valid"  # reflect: padded in call, then valid
        self.conv = _CONV[ndim](
            filters,
            kernel_size,
            padding=self.conv_padding,
            kernel_initializer=initializer,
            bias_initializer="zeros",
            name="conv",
        )
        self.activation = activation_fn(activation, leaky_relu_slope)
        self.matmul_kernel_gradient = (
            kernel_size**self.ndim <= MATMUL_KERNEL_GRADIENT_MAX_TAPS and _tensorflow_cpu_only()
        )

    def build(self, input_shape):
        shape = list(input_shape)
        if self.padding == "reflect":
            for axis in range(1, self.ndim + 1):
                shape[axis] = None if shape[axis] is None else shape[axis] + self.kernel_size - 1
        self.conv.build(tuple(shape))

    def call(self, x):
        if self.padding == "reflect" and self.kernel_size > 1:
            x = ops.pad(x, same_pad_width(self.ndim, self.kernel_size), mode="reflect")
        if self.matmul_kernel_gradient and _fits_matmul_kernel_gradient(x.shape):
            x = convolution(x, ops.cast(self.conv.kernel, x.dtype), self.conv_padding) + ops.cast(
                self.conv.bias, x.dtype
            )
        else:
            x = self.conv(x)
        return x if self.activation is None else self.activation(x)


# Kernels of at most this many taps (2D 3x3) take the matrix-product kernel gradient under TensorFlow on a
# CPU. Larger ones keep TensorFlow's own, which is faster there with oneDNN: 3x3x3 (531 against 803 ms at
# 128x64x64x32) and the spatial configuration's 11x11 at a coarse resolution. So do inputs of more than
# MATMUL_KERNEL_GRADIENT_MAX_ELEMENTS values per sample, whose shifted copies would cost more memory than
# the time saved (512x512x128 of the paper-size cephalogram network: 9.0 GB peak against 5.3 GB).
MATMUL_KERNEL_GRADIENT_MAX_TAPS = 9
MATMUL_KERNEL_GRADIENT_MAX_ELEMENTS = 2**23


def _fits_matmul_kernel_gradient(shape) -> bool:
    return all(n is not None for n in shape[1:]) and math.prod(shape[1:]) <= MATMUL_KERNEL_GRADIENT_MAX_ELEMENTS


def same_pad_width(ndim: int, kernel_size: int) -> list[list[int]]:
    """The (before, after) padding per axis of a (batch, *spatial, channels) tensor that makes a valid
    convolution of `kernel_size` keep the spatial size."""
    return [[0, 0]] + [[(kernel_size - 1) // 2, kernel_size // 2]] * ndim + [[0, 0]]


@functools.cache
def _tensorflow_cpu_only() -> bool:
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


def convolution(x, kernel, padding: str):
    """Stride-1 convolution ('same' or 'valid') whose kernel gradient is one matrix product per kernel tap,
    the shifted input (positions x in-channels) transposed times the upstream gradient (positions x
    out-channels): faster on a CPU than TensorFlow's Conv2DBackpropFilter, same values (7.6 against 10.5 ms
    at 160x128x32 and 86 against 210 ms at 256x256x64 with oneDNN; benchmarks/conv_gradients.py)."""
    return _CONVOLUTION[padding](x, kernel)


def _convolution_with_matmul_kernel_gradient(padding: str):
    def kernel_gradient(x, kernel, upstream):
        size, ndim = kernel.shape[0], len(kernel.shape) - 2
        if padding == "same":
            x = ops.pad(x, same_pad_width(ndim, size))
        positions = upstream.shape[1:-1]
        upstream = ops.reshape(upstream, (-1, upstream.shape[-1]))
        taps = []
        for offset in np.ndindex(*([size] * ndim)):
            window = x[(slice(None),) + tuple(slice(o, o + n) for o, n in zip(offset, positions, strict=True))]
            taps.append(ops.matmul(ops.transpose(ops.reshape(window, (-1, x.shape[-1]))), upstream))
        return ops.reshape(ops.stack(taps), kernel.shape)

    @ops.custom_gradient
    def convolution(x, kernel):
        def gradients(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            return (
                ops.conv_transpose(upstream, kernel, strides=1, padding=padding),
                kernel_gradient(x, kernel, upstream),
            )

        return ops.conv(x, kernel, strides=1, padding=padding), gradients

    return convolution


_CONVOLUTION = {padding: _convolution_with_matmul_kernel_gradient(padding) for padding in ("same", "valid")}


def keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.5 gives Catmull-Rom-like cubic interpolation)."""
    x = np.abs(x)
    inner = (a + 2) * x**3 - (a + 3) * x**2 + 1
    outer = a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return np.where(x <= 1, inner, np.where(x < 2, outer, 0.0))


def filler_kernel(interpolation: str, factor: int) -> np.ndarray:
    """The original's fixed 1D upsampling kernel of size 2*support*factor - factor%2."""
    if interpolation == "linear":
        support, kernel = 1, lambda t: np.maximum(0.0, 1.0 - np.abs(t))
    elif interpolation == "cubic":
        support, kernel = 2, keys_cubic
    else:
        raise ValueError(f"interpolation must be 'linear' or 'cubic', got {interpolation!r}")
    size = 2 * support * factor - factor % 2
    positions = (np.arange(size) - (size - 1) / 2) / factor
    return kernel(positions).astype(np.float64)


class FixedUpsampling(keras.layers.Layer):
    """Per-channel upsampling by an integer factor with the original's fixed interpolation kernel.

    Equals a transposed convolution (stride = factor) with the separable filler kernel, followed by a
    centred crop to exactly factor times the input size; borders act as zero padding. It is computed
    separably per axis in polyphase form (each output phase is a short sum of shifted inputs), which needs
    no transposed convolution and costs O(taps) per output element.
    """

    def __init__(self, ndim: int, factor: int, interpolation: str = "linear", **kwargs):
        super().__init__(**kwargs)
        self.ndim = check_ndim(ndim)
        self.factor = int(factor)
        self.interpolation = interpolation
        self.shifts, self.phase_weights = _polyphase_matrix(filler_kernel(interpolation, self.factor), self.factor)

    def call(self, x):
        if self.factor == 1:
            return x
        if self.ndim == 2 and self.factor == 2 and self.interpolation == "linear":
            return self._linear_x2(x)
        for axis in range(1, self.ndim + 1):
            x = self._upsample_axis(x, axis)
        return x

    def _linear_x2(self, x):
        """Linear x2 as nearest-neighbour repetition and a fixed 3x3 depthwise blur: the filler kernel
        (1/4, 3/4, 3/4, 1/4) is the repetition box (1, 1) convolved with (1/4, 1/2, 1/4), and zero 'same'
        padding gives the transposed convolution's borders. Two fused ops instead of the polyphase sums:
        about a quarter of the 2D SCN's training step on a CPU (measured 225 -> 163 ms)."""
        x = ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
        taps = np.array([0.25, 0.5, 0.25])
        kernel = np.repeat(np.outer(taps, taps)[:, :, None, None], x.shape[-1], axis=2)
        return ops.depthwise_conv(x, ops.cast(kernel, x.dtype), padding="same")

    def _upsample_axis(self, x, axis: int):
        """All output phases of one axis at once: the input at each distinct tap shift, stacked, times the
        (shifts x phases) weight matrix, so that the backward pass slices each shift once rather than once
        per phase and tap (8 phases x 4 taps for cubic x8)."""
        pad_before, pad_after = max(max(self.shifts), 0), max(-min(self.shifts), 0)
        pad_width = [[0, 0]] * len(x.shape)
        pad_width[axis] = [pad_before, pad_after]
        padded = ops.pad(x, pad_width)
        length = x.shape[axis]
        windows = []
        for shift in self.shifts:
            index = [slice(None)] * len(x.shape)
            index[axis] = slice(pad_before - shift, pad_before - shift + length)
            windows.append(padded[tuple(index)])
        letters = "abcdefgh"[: len(x.shape)]
        stacked_letters = letters[: axis + 1] + "s" + letters[axis + 1 :]
        phased_letters = letters[: axis + 1] + "r" + letters[axis + 1 :]
        phases = ops.einsum(
            f"{stacked_letters},sr->{phased_letters}",
            ops.stack(windows, axis=axis + 1),
            ops.cast(self.phase_weights, x.dtype),
        )
        shape = list(x.shape)
        shape[0] = -1
        shape[axis] = length * self.factor
        return ops.reshape(phases, shape)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis in range(1, self.ndim + 1):
            shape[axis] = None if shape[axis] is None else shape[axis] * self.factor
        return tuple(shape)


def _polyphase_matrix(kernel: np.ndarray, factor: int) -> tuple[list[int], np.ndarray]:
    """The distinct input shifts m and the (shifts x phases) weights W with out[f*i + r] = sum_m W[m, r] x[i - m]:
    the transposed convolution (stride f) with `kernel`, centre-cropped to f times the input size."""
    size = len(kernel)
    crop = (size - factor) // 2
    taps = {}
    for r in range(factor):
        for m in range(math.ceil((-r - crop) / factor), math.floor((size - 1 - r - crop) / factor) + 1):
            weight = float(kernel[r + crop + m * factor])
            if weight != 0.0:
                taps.setdefault(m, np.zeros(factor))[r] = weight
    shifts = sorted(taps)
    return shifts, np.stack([taps[m] for m in shifts])
