"""Synthetic data: deterministic, truly ambiguous locally, landmarks cut by the field of view are NaN."""

import numpy as np
import pytest
import SimpleITK as sitk

from scn_tf.configs import DataConfig
from scn_tf.data.pipeline import LandmarkSource
from scn_tf.synthetic import generate_sample, synthetic_config, write_dataset


def patch(image, point_mm, spacing, half):
    """The (2 half + 1)^d pixels centred exactly (linear interpolation) on a point in mm."""
    volume = sitk.GetImageFromArray(image)
    volume.SetSpacing([float(s) for s in spacing])
    origin = [float(p - half * s) for p, s in zip(point_mm, spacing, strict=True)]
    window = sitk.Resample(
        volume,
        [2 * half + 1] * image.ndim,
        sitk.Transform(),
        sitk.sitkLinear,
        origin,
        volume.GetSpacing(),
        volume.GetDirection(),
        0.0,
        sitk.sitkFloat32,
    )
    return sitk.GetArrayFromImage(window)


def ncc(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


@pytest.mark.parametrize("ndim", [2, 3])
def test_deterministic_for_a_seed(ndim):
    config = synthetic_config(ndim)
    a, p = generate_sample(config, np.random.default_rng([4, 2]))
    b, q = generate_sample(config, np.random.default_rng([4, 2]))
    c, _ = generate_sample(config, np.random.default_rng([5, 2]))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(p, q)
    assert not np.array_equal(a, c)
    assert a.shape == tuple(reversed(config.size))


@pytest.mark.parametrize("ndim", [2, 3])
def test_landmarks_look_alike(ndim):
    config = synthetic_config(ndim)
    half = int(round(config.blob_radius / config.spacing[0]))
    scores = []
    for seed in range(8):
        image, points = generate_sample(config, np.random.default_rng([1, seed]))
        inside = [
            p
            for p in points
            if np.all(np.isfinite(p))
            and np.all(p / config.spacing >= half + 1)
            and np.all(p / config.spacing <= np.array(config.size) - half - 2)
        ]
        for first, second in zip(inside[:-1], inside[1:], strict=True):
            scores.append(ncc(patch(image, first, config.spacing, half), patch(image, second, config.spacing, half)))
    assert len(scores) > 20
    assert np.median(scores) > 0.8


@pytest.mark.parametrize("ndim", [2, 3])
def test_field_of_view_cuts_are_nan(ndim):
    config = synthetic_config(ndim)
    cut = 0
    for seed in range(30):
        _, points = generate_sample(config, np.random.default_rng([2, seed]))
        missing = np.isnan(points).any(axis=1)
        cut += missing.sum()
        valid = points[~missing] / config.spacing
        assert np.all(valid >= 0) and np.all(valid <= np.array(config.size) - 1)
    assert cut > 0


def test_written_dataset_is_readable(tmp_path):
    config = synthetic_config(2)
    root = write_dataset(tmp_path, config, num_train=3, num_test=2, seed=7)
    ids = (root / "train.txt").read_text().split() + (root / "test.txt").read_text().split()
    assert len(ids) == 5
    data = DataConfig(
        ndim=2,
        num_landmarks=config.num_landmarks,
        image_suffix=".mha",
        landmarks_csv="landmarks.csv",
        image_size=[64, 64],
    )
    source = LandmarkSource(data, root, ids, verbose=False)
    image = source.images[ids[0]]
    assert image.GetSpacing() == config.spacing
    _, points = generate_sample(config, np.random.default_rng([7, 0]))
    np.testing.assert_allclose(source.points[ids[0]], points, atol=1e-4)
