"""Preprocessing against analytic expectations."""

import types

import numpy as np
import pytest
import SimpleITK as sitk

from scn_tf.configs import AugmentationConfig, DataConfig
from scn_tf.data.augmentation import augment_intensity
from scn_tf.data.pipeline import make_sample
from scn_tf.data.preprocessing import (
    foreground_quantiles,
    histogram_match,
    normalize_intensity,
    otsu_foreground,
    smooth,
)


def test_smoothing_sigma_is_in_millimetres():
    array = np.zeros((101, 101), np.float32)
    array[50, 50] = 1.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([0.5, 0.5])
    smoothed = sitk.GetArrayFromImage(smooth(image, 2.0))  # 2 mm = 4 pixels
    profile = smoothed[50] / smoothed[50].sum()
    x = np.arange(101) - 50
    assert np.sqrt(np.sum(profile * x**2)) == pytest.approx(4.0, rel=0.05)
    assert smooth(image, 0) is image


def test_histogram_matching_inside_foreground():
    rng = np.random.default_rng(0)
    reference = np.zeros((80, 80), np.float32)
    reference[20:60, 20:60] = rng.uniform(100, 200, (40, 40))
    source = np.zeros((80, 80), np.float32)
    source[10:70, 15:55] = rng.uniform(100, 200, (60, 40)) * 0.5 + 10  # foreground in [60, 110]
    matched = sitk.GetArrayFromImage(histogram_match(sitk.GetImageFromArray(source), foreground_quantiles(reference)))
    foreground = otsu_foreground(source)
    assert foreground.sum() == 60 * 40
    # the linear intensity change is undone: foreground maps back onto the reference's range
    # atol: the quantile noise of 1600 against 2400 samples
    np.testing.assert_allclose(matched[foreground], (source[foreground] - 10) / 0.5, atol=6.0)
    assert np.percentile(matched[foreground], 50) == pytest.approx(np.percentile(reference[20:60, 20:60], 50), abs=3)


def test_normalization():
    array = np.array([0.0, 64.0, 128.0, 255.0, 300.0], np.float32)
    fixed = normalize_intensity(array, "fixed", shift=-128, scale=1 / 128, clamp=[-1, 1])
    np.testing.assert_allclose(fixed, [-1, -0.5, 0, 127 / 128, 1])
    values = np.linspace(0, 100, 101).astype(np.float32)
    percentile = normalize_intensity(values, "percentile", percentiles=(10, 90))
    assert percentile[10] == pytest.approx(-1) and percentile[90] == pytest.approx(1)
    assert percentile[50] == pytest.approx(0)


def test_intensity_augmentation_bounds():
    array = np.full((4, 4), 0.5, np.float32)
    augmentation = AugmentationConfig(intensity_shift=0.25, intensity_scale=0.25)
    values = [
        float(augment_intensity(array, augmentation, np.random.default_rng(s), [-1, 1])[0, 0]) for s in range(200)
    ]
    assert min(values) >= (0.5 - 0.25) * 0.75 - 1e-6 and max(values) <= 1.0
    assert max(values) - min(values) > 0.4
    assert augment_intensity(array, augmentation, None, None) is array


def test_training_sample_clamps_once_after_the_random_shift_and_scale():
    """A value normalised to 2.0 stays at the clamp 1.0 under any shift in +-0.5 (one clamp, after the shift);
    clamping before the shift as well would darken it to 1 + shift."""
    image = sitk.GetImageFromArray(np.full((16, 16), 384.0, np.float32))
    data = DataConfig(
        ndim=2,
        num_landmarks=1,
        image_size=[8, 8],
        spacing=[1.0, 1.0],
        intensity_shift=-128.0,
        intensity_scale=1 / 128,
        intensity_clamp=[-1.0, 1.0],
    )
    source = types.SimpleNamespace(data=data, images={"a": image}, points={"a": np.array([[7.5, 7.5]])})
    augmentation = AugmentationConfig(intensity_shift=0.5)
    for seed in range(10):
        sample = make_sample(source, "a", augmentation, np.random.default_rng(seed))
        np.testing.assert_array_equal(sample.image, 1.0)
    np.testing.assert_array_equal(make_sample(source, "a", None, None).image, 1.0)
