"""The training step's shared arithmetic (scn_tf/training/step.py) against hand-computed values."""

import numpy as np
import pytest
from keras import ops

from scn_tf.configs import TrainingConfig
from scn_tf.heatmaps import gaussian_heatmaps
from scn_tf.training.step import LOSS_SCALE_GROWTH_STEPS, clipped_gradients, keep_if_finite, loss_terms, step_counters


def test_clipping_scales_to_the_norm_and_reports_the_norm_before():
    gradients, norm, finite = clipped_gradients(
        [np.array([3.0, 0.0], np.float32), np.array([[4.0]], np.float32)], np.float32(1.0), clip_norm=1.0
    )
    assert float(norm) == pytest.approx(5.0) and bool(finite)
    np.testing.assert_allclose(ops.convert_to_numpy(gradients[0]), [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(gradients[1]), [[0.8]], rtol=1e-6)
    unclipped, _, _ = clipped_gradients([np.array([3.0, 4.0], np.float32)], np.float32(1.0), clip_norm=None)
    np.testing.assert_array_equal(ops.convert_to_numpy(unclipped[0]), [3.0, 4.0])
    small, _, _ = clipped_gradients([np.array([0.3, 0.4], np.float32)], np.float32(1.0), clip_norm=1.0)
    np.testing.assert_allclose(ops.convert_to_numpy(small[0]), [0.3, 0.4], rtol=1e-6)


@pytest.mark.parametrize("loss,gradient", [(np.nan, 1.0), (np.inf, 1.0), (1.0, np.inf), (1.0, np.nan)])
def test_a_non_finite_loss_or_gradient_is_not_applied(loss, gradient):
    _, _, finite = clipped_gradients([np.array([gradient, 1.0], np.float32)], np.float32(loss), clip_norm=1e4)
    assert not bool(finite)


def test_keep_if_finite_selects_leaf_by_leaf():
    new = ([np.array([1.0, 2.0])], np.array(3.0))
    old = ([np.array([5.0, 6.0])], np.array(7.0))
    kept = keep_if_finite(np.array(False), new, old)
    np.testing.assert_array_equal(ops.convert_to_numpy(kept[0][0]), [5.0, 6.0])
    assert float(kept[1]) == 7.0
    assert float(keep_if_finite(np.array(True), new, old)[1]) == 3.0


def test_loss_terms_by_hand():
    config = TrainingConfig(alpha=20.0, gamma=100.0, weight_decay=0.001)
    coords, valid, sigmas = np.array([[[4.0, 3.0]]], np.float32), np.array([[True]]), np.array([2.0], np.float32)
    target = gaussian_heatmaps(coords, valid, sigmas, (8, 8), config.gamma)
    kernel = np.ones((2, 2), np.float32)
    exact = loss_terms(target, coords, valid, sigmas, [kernel], config)
    assert float(exact["heatmap"]) == 0.0
    assert float(exact["sigma"]) == pytest.approx(20.0 * 0.5 * 4.0)  # alpha / 2 * sigma^2, batch 1
    assert float(exact["weight_decay"]) == pytest.approx(0.001 * 0.5 * 4.0)
    assert float(exact["loss"]) == pytest.approx(40.002)
    off = loss_terms(ops.zeros_like(target), coords, valid, sigmas, [kernel], config, replicas=2.0)
    expected = 0.5 * float(ops.sum(ops.square(target))) / 2.0
    assert float(off["heatmap"]) == pytest.approx(expected, rel=1e-6)
    assert float(off["loss"]) == pytest.approx(expected + 40.002 / 2.0, rel=1e-6)


def counters(**values):
    defaults = dict(loss_scale=8.0, clean_steps=5, nonfinite_steps=2, last_nonfinite_step=-1, step=40)
    defaults.update(values)
    return {name: np.array(value, np.float32 if name == "loss_scale" else np.int64) for name, value in defaults.items()}


def read(values):
    return {name: float(ops.convert_to_numpy(value)) for name, value in values.items()}


@pytest.mark.parametrize(
    "finite,loss_finite,mixed,expected",
    [
        (True, True, False, dict(loss_scale=8.0, clean_steps=5, nonfinite_steps=2, last_nonfinite_step=-1)),
        (False, True, False, dict(loss_scale=8.0, clean_steps=5, nonfinite_steps=3, last_nonfinite_step=40)),
        (True, True, True, dict(loss_scale=8.0, clean_steps=6, nonfinite_steps=2, last_nonfinite_step=-1)),
        # an overflow of the scaled gradients of a finite loss: the scale halves, the step is not counted
        (False, True, True, dict(loss_scale=4.0, clean_steps=0, nonfinite_steps=2, last_nonfinite_step=-1)),
        (False, False, True, dict(loss_scale=8.0, clean_steps=5, nonfinite_steps=3, last_nonfinite_step=40)),
    ],
)
def test_step_counters(finite, loss_finite, mixed, expected):
    updated = step_counters(np.array(finite), np.array(loss_finite), counters(), mixed)
    assert read(updated) == expected


def test_loss_scale_grows_after_clean_steps_and_never_halves_below_one():
    grown = step_counters(np.array(True), np.array(True), counters(clean_steps=LOSS_SCALE_GROWTH_STEPS - 1), True)
    assert read(grown)["loss_scale"] == 16.0 and read(grown)["clean_steps"] == 0
    floor = step_counters(np.array(False), np.array(True), counters(loss_scale=1.0), True)
    assert read(floor)["loss_scale"] == 1.0
