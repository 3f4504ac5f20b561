"""Fixed-kernel upsampling against a NumPy transposed convolution with the Keys / linear filler kernel; the
convolution with the matrix-product kernel gradient against NumPy sums and TensorFlow's own gradients."""

import numpy as np
import pytest
import tensorflow as tf

from scn_tf.models.layers import (
    MATMUL_KERNEL_GRADIENT_MAX_ELEMENTS,
    Conv,
    FixedUpsampling,
    _fits_matmul_kernel_gradient,
    convolution,
    filler_kernel,
    keys_cubic,
)


def numpy_transposed_upsample(x: np.ndarray, weights_1d: np.ndarray, factor: int) -> np.ndarray:
    """Full transposed convolution (stride = factor) with the outer-product kernel, then a centred crop.

    x: (*spatial) one channel. Independent of the layer: scatters the whole nD kernel at every input point.
    """
    ndim = x.ndim
    size = len(weights_1d)
    kernel = weights_1d
    for _ in range(ndim - 1):
        kernel = np.multiply.outer(kernel, weights_1d)
    full = np.zeros([(n - 1) * factor + size for n in x.shape])
    for index in np.ndindex(*x.shape):
        target = tuple(slice(i * factor, i * factor + size) for i in index)
        full[target] += x[index] * kernel
    crop = (size - factor) // 2
    return full[tuple(slice(crop, crop + n * factor) for n in x.shape)]


def test_linear_kernel_by_hand():
    np.testing.assert_allclose(filler_kernel("linear", 2), [0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(filler_kernel("linear", 3), [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3])


def test_keys_kernel_values():
    # Keys a = -0.5: K(0) = 1, K(+-1) = K(+-2) = 0, K(0.5) = 0.5625, K(1.5) = -0.0625.
    np.testing.assert_allclose(
        keys_cubic(np.array([0.0, 1.0, -1.0, 2.0, 0.5, 1.5, 2.5])), [1, 0, 0, 0, 0.5625, -0.0625, 0], atol=1e-12
    )
    cubic = filler_kernel("cubic", 4)
    assert len(cubic) == 16
    # Partition of unity: each output phase sums to one.
    for phase in range(4):
        assert cubic[phase::4].sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "ndim,factor,interpolation,size",
    [
        (2, 2, "linear", 6),
        (2, 3, "linear", 5),
        (2, 4, "cubic", 5),
        (2, 16, "cubic", 3),
        (3, 2, "linear", 4),
        (3, 8, "cubic", 3),
        (3, 3, "cubic", 3),
    ],
)
def test_upsampling_matches_numpy_transposed_convolution(ndim, factor, interpolation, size):
    rng = np.random.default_rng(factor + ndim)
    x = rng.normal(size=(2,) + (size,) * ndim + (3,)).astype(np.float32)
    y = np.asarray(FixedUpsampling(ndim, factor, interpolation)(x))
    assert y.shape == (2,) + (size * factor,) * ndim + (3,)
    weights = filler_kernel(interpolation, factor)
    for batch in range(2):
        for channel in range(3):
            expected = numpy_transposed_upsample(x[batch, ..., channel].astype(np.float64), weights, factor)
            np.testing.assert_allclose(y[batch, ..., channel], expected, atol=1e-5)


def test_cubic_upsampling_reproduces_constants_inside_and_decays_at_zero_padded_borders():
    x = np.ones((1, 6, 6, 1), np.float32)
    y = np.asarray(FixedUpsampling(2, 4, "cubic")(x))[0, ..., 0]
    np.testing.assert_allclose(y[8:16, 8:16], 1.0, atol=1e-6)
    assert abs(y[0, 0] - 1.0) > 0.01  # zero padding, unlike tf.image.resize's edge clamping


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_convolution_gradients_equal_numpy_sums(padding):
    rng = np.random.default_rng(0)
    x, kernel = rng.normal(size=(2, 5, 6, 2)), rng.normal(size=(3, 3, 2, 3))
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)]) if padding == "same" else x
    out_y, out_x = padded.shape[1] - 2, padded.shape[2] - 2
    weights = rng.normal(size=(2, out_y, out_x, 3))  # loss = sum(weights * y), so dL/dy = weights
    expected_y = np.zeros((2, out_y, out_x, 3))
    expected_dk = np.zeros_like(kernel)
    expected_dpadded = np.zeros_like(padded)
    for i, j in np.ndindex(3, 3):
        window = padded[:, i : i + out_y, j : j + out_x, :]
        expected_y += window @ kernel[i, j]
        expected_dk[i, j] = np.einsum("byxc,byxo->co", window, weights)
        expected_dpadded[:, i : i + out_y, j : j + out_x, :] += weights @ kernel[i, j].T
    expected_dx = expected_dpadded[:, 1:-1, 1:-1, :] if padding == "same" else expected_dpadded
    x_t, kernel_t = tf.constant(x, tf.float32), tf.constant(kernel, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([x_t, kernel_t])
        y = convolution(x_t, kernel_t, padding)
        loss = tf.reduce_sum(y * weights.astype(np.float32))
    dx, dk = tape.gradient(loss, [x_t, kernel_t])
    np.testing.assert_allclose(y.numpy(), expected_y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dk.numpy(), expected_dk, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx.numpy(), expected_dx, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding", ["same", "reflect"])
def test_conv_layer_matmul_kernel_gradient_equals_tensorflow_gradient(padding):
    layer = Conv(2, 4, 3, padding=padding, activation="leaky_relu")
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 9, 10, 3)), tf.float32)
    layer.build(x.shape)
    assert layer.matmul_kernel_gradient

    def outputs_and_gradients():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.sin(y))
        return [y, *tape.gradient(loss, [x, *layer.trainable_weights])]

    ours = outputs_and_gradients()
    layer.matmul_kernel_gradient = False
    for a, b in zip(ours, outputs_and_gradients(), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_matmul_kernel_gradient_only_for_known_shapes_within_the_memory_bound():
    assert _fits_matmul_kernel_gradient((None, 160, 128, 32))
    assert _fits_matmul_kernel_gradient((1, MATMUL_KERNEL_GRADIENT_MAX_ELEMENTS, 1, 1))
    assert not _fits_matmul_kernel_gradient((1, MATMUL_KERNEL_GRADIENT_MAX_ELEMENTS + 1, 1, 1))
    assert not _fits_matmul_kernel_gradient((1, 512, 512, 128))
    assert not _fits_matmul_kernel_gradient((1, None, 128, 32))
    assert not Conv(3, 4, 3).matmul_kernel_gradient and not Conv(2, 4, 11).matmul_kernel_gradient
