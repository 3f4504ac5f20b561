"""Gaussian targets, the learnable-sigma loss and decoding, against analytic and NumPy values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from scn_tf.heatmaps import decode_heatmaps, gaussian_heatmaps
from scn_tf.losses import heatmap_loss, weight_decay


@pytest.mark.parametrize("ndim", [2, 3])
def test_target_peak_and_invalid_landmark(ndim):
    shape = (12, 14, 16)[:ndim]
    coords = np.array([[[5.0, 4.0, 3.0][:ndim], [np.nan] * ndim, [2.0, 7.0, 9.0][:ndim]]], np.float32)
    valid = np.array([[True, False, True]])
    sigmas = np.array([2.0, 3.0, 1.5], np.float32)
    gamma = 100.0 if ndim == 2 else 1000.0
    heatmaps = np.asarray(gaussian_heatmaps(coords, valid, sigmas, shape, gamma))
    assert heatmaps.shape == (1, *shape, 3)
    for landmark in (0, 2):
        index = tuple(int(c) for c in coords[0, landmark][::-1])  # (x, y, z) -> array order
        peak = gamma / ((2 * math.pi) ** (ndim / 2) * sigmas[landmark] ** ndim)
        assert heatmaps[(0, *index, landmark)] == pytest.approx(peak, rel=1e-5)
        assert heatmaps[..., landmark].max() == pytest.approx(peak, rel=1e-5)
    assert np.all(heatmaps[..., 1] == 0)
    # One pixel off along x, the value drops by exp(-1 / (2 sigma^2)).
    index = (0,) + tuple(int(c) for c in coords[0, 0][::-1])
    shifted = index[:-1] + (index[-1] + 1,)
    assert heatmaps[shifted + (0,)] / heatmaps[index + (0,)] == pytest.approx(math.exp(-1 / 8), rel=1e-5)


def test_target_batched_matches_numpy():
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 10, size=(2, 2, 2)).astype(np.float32)
    sigmas = np.array([1.7, 2.2], np.float32)
    heatmaps = np.asarray(gaussian_heatmaps(coords, np.ones((2, 2)), sigmas, (10, 11), 100.0))
    y, x = np.mgrid[:10, :11]
    for b in range(2):
        for n in range(2):
            d2 = (x - coords[b, n, 0]) ** 2 + (y - coords[b, n, 1]) ** 2
            expected = 100 / (2 * math.pi * sigmas[n] ** 2) * np.exp(-d2 / (2 * sigmas[n] ** 2))
            np.testing.assert_allclose(heatmaps[b, ..., n], expected, rtol=1e-5, atol=1e-7)


def sigma_gradient(prediction_sigma: float, sigma: float, alpha: float = 0.0) -> float:
    coords = np.array([[[10.0, 9.0]]], np.float32)
    valid = np.ones((1, 1))
    predicted = gaussian_heatmaps(coords, valid, np.array([prediction_sigma], np.float32), (20, 20), 100.0)
    sigmas = tf.Variable([sigma])
    with tf.GradientTape() as tape:
        target = gaussian_heatmaps(coords, valid, sigmas, (20, 20), 100.0)
        terms = heatmap_loss(predicted, target, sigmas, valid, alpha)
        loss = terms["heatmap"] + terms["sigma"]
    return float(tape.gradient(loss, sigmas)[0])


def test_sigma_gradient_sign():
    assert sigma_gradient(prediction_sigma=3.0, sigma=2.0) < 0  # prediction wider: sigma should grow
    assert sigma_gradient(prediction_sigma=1.5, sigma=2.5) > 0  # prediction narrower: sigma should shrink
    assert abs(sigma_gradient(prediction_sigma=2.0, sigma=2.0)) < 1e-4
    assert sigma_gradient(prediction_sigma=2.0, sigma=2.0, alpha=20.0) > 0  # the sigma term pulls down


def test_loss_equals_numpy_with_batch_two():
    rng = np.random.default_rng(5)
    predicted = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
    target = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
    sigmas = np.array([1.5, 2.0, 3.0], np.float32)
    valid = np.array([[1, 0, 1], [1, 1, 0]], np.float32)
    kernels = [rng.normal(size=(3, 3, 1, 4)).astype(np.float32), rng.normal(size=(3, 3, 4, 3)).astype(np.float32)]
    terms = heatmap_loss(predicted, target, sigmas, valid, alpha=20.0)
    expected_heatmap = 0.5 * np.sum((predicted - target) ** 2) / 2
    expected_sigma = 20.0 * 0.5 * (2 * 1.5**2 + 2.0**2 + 3.0**2) / 2
    expected_decay = 0.001 * 0.5 * sum(np.sum(k**2) for k in kernels)
    assert float(terms["heatmap"]) == pytest.approx(expected_heatmap, rel=1e-5)
    assert float(terms["sigma"]) == pytest.approx(expected_sigma, rel=1e-6)
    assert float(weight_decay(kernels, 0.001)) == pytest.approx(expected_decay, rel=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
def test_decoding_recovers_subpixel_centre(ndim):
    rng = np.random.default_rng(ndim)
    shape = (20, 22, 24)[:ndim]
    coords = rng.uniform(4, 15, size=(3, 4, ndim)).astype(np.float32)
    sigmas = np.array([1.5, 2.0, 3.0, 4.0], np.float32)
    heatmaps = gaussian_heatmaps(coords, np.ones((3, 4)), sigmas, shape, 100.0)
    decoded, values = decode_heatmaps(heatmaps)
    decoded = np.asarray(decoded)
    assert decoded.shape == (3, 4, ndim)
    assert np.abs(decoded - coords).max() < 0.05
    # without refinement (integer argmax) the error would be up to 0.5 px
    assert np.abs(np.round(coords) - coords).max() > 0.2
    np.testing.assert_allclose(np.asarray(values), np.asarray(heatmaps).reshape(3, -1, 4).max(axis=1))


def test_decoding_at_border_and_flat_heatmap():
    heatmaps = np.zeros((1, 5, 6, 2), np.float32)
    heatmaps[0, 0, 5, 0] = 1.0  # corner: no neighbours on one side, no refinement
    decoded, values = decode_heatmaps(heatmaps)
    np.testing.assert_allclose(np.asarray(decoded)[0, 0], [5.0, 0.0])
    assert np.all(np.isfinite(np.asarray(decoded)))
    assert float(values[0, 0]) == 1.0
