"""Inference round trips: oracle heatmaps rendered from the true landmarks come back as the true landmarks."""

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk

from scn_tf.configs import DataConfig, preset
from scn_tf.data.augmentation import rotation_matrix
from scn_tf.heatmaps import gaussian_heatmaps
from scn_tf.inference import Predictor, window_starts


def source_image(size, spacing, origin, angles):
    ndim = len(size)
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection([float(v) for v in rotation_matrix(np.array(angles), ndim).ravel()])
    return image


class Oracle:
    """Renders Gaussians at the true landmarks' network coordinates (known from the predictor's transform)."""

    def __init__(self, predictor, image, points):
        transform = predictor.transform(image)
        self.coords = transform.to_network(points) / transform.geometry.spacing
        self.spatial = tuple(reversed(transform.geometry.size.tolist()))

    def __call__(self, batch):
        assert batch.shape[1:-1] == self.spatial
        valid = np.ones((len(batch), len(self.coords)))
        coords = np.repeat(self.coords[None], len(batch), axis=0)
        sigmas = np.full(len(self.coords), 2.0, np.float32)
        return np.asarray(gaussian_heatmaps(coords, valid, sigmas, self.spatial, 100.0))


@pytest.mark.parametrize("ndim", [2, 3])
def test_oracle_round_trip_returns_true_landmarks(ndim):
    rng = np.random.default_rng(ndim)
    if ndim == 2:
        image = source_image((300, 240), (0.3, 0.5), (5.0, -7.0), [0.4])
        data = DataConfig(ndim=2, num_landmarks=5, image_size=[64, 64], spacing=None)
    else:
        image = source_image((60, 50, 40), (1.5, 1.8, 2.5), (-20.0, 10.0, 30.0), [0.2, -0.1, 0.3])
        data = DataConfig(ndim=3, num_landmarks=5, image_size=[32, 32, 32], spacing=None)
    index = rng.uniform(0.2, 0.8, size=(5, ndim)) * np.array(image.GetSize())
    points = np.array([image.TransformContinuousIndexToPhysicalPoint(i.tolist()) for i in index])
    predictor = Predictor(None, data, sigmas=np.full(5, 2.0))
    predictor._run = Oracle(predictor, image, points)
    prediction = predictor.predict_image(image, "x")
    assert np.abs(prediction.points - points).max() < 0.1
    np.testing.assert_allclose(prediction.indices, index, atol=0.1 / min(image.GetSpacing()))
    assert prediction.confidence.shape == (5,) and np.all(prediction.confidence > 0)
    network_spacing = np.asarray(predictor.transform(image).geometry.spacing)
    assert prediction.sigma_mm == pytest.approx(np.full(5, 2.0 * network_spacing[0]))
    in_pixels = 2.0 * np.mean(network_spacing / np.asarray(image.GetSpacing()))  # anisotropic source pixels
    assert prediction.sigma_px == pytest.approx(np.full(5, in_pixels))
    assert prediction.sigma_in("pixel") is prediction.sigma_px and prediction.sigma_in("mm") is prediction.sigma_mm


def test_window_starts():
    assert window_starts(100, 192, 64) == [0]
    assert window_starts(192, 192, 64) == [0]
    assert window_starts(256, 192, 64) == [0, 64]
    assert window_starts(300, 192, 64) == [0, 64, 108]
    assert window_starts(120, 56, 64) == [0, 56, 64]  # a step longer than the window would skip slices 56-63


def test_sliding_windows_equal_whole_volume():
    """A translation-equivariant 'network' (bright and dark blobs as two channels) on a volume twice the window
    length: windows merged by maximum give the whole-volume result."""
    image = sitk.Image([16, 16, 64], sitk.sitkFloat32)
    image.SetSpacing([2.0, 2.0, 2.0])
    array = np.zeros((64, 16, 16), np.float32)
    z, y, x = np.mgrid[:64, :16, :16]
    array += np.exp(-((z - 10.3) ** 2 + (y - 7.2) ** 2 + (x - 8.6) ** 2) / 4.0)
    array -= np.exp(-((z - 50.7) ** 2 + (y - 5.5) ** 2 + (x - 9.1) ** 2) / 4.0)
    volume = sitk.GetImageFromArray(array)
    volume.CopyInformation(image)
    calls = []

    def network(batch):
        calls.append(batch.shape)
        return np.concatenate([batch, -batch], axis=-1)

    windowed = DataConfig(ndim=3, num_landmarks=2, image_size=[16, 16, 32], spacing=[2.0, 2.0, 2.0], window_step=8)
    whole = DataConfig(ndim=3, num_landmarks=2, image_size=[16, 16, 64], spacing=[2.0, 2.0, 2.0])
    predicted = Predictor(network, windowed, batch_size=2).predict_image(volume)
    assert len(calls) == 3 and calls[0] == (2, 32, 16, 16, 1)  # windows at 0, 8, 16, 24, 32 in batches of 2
    reference = Predictor(network, whole).predict_image(volume)
    np.testing.assert_allclose(predicted.points, reference.points, atol=1e-9)
    np.testing.assert_allclose(predicted.indices, [[8.6, 7.2, 10.3], [9.1, 5.5, 50.7]], atol=0.1)


def test_zero_origin_predictions_are_in_the_zero_origin_frame():
    """A header with an origin and a rotated direction, landmarks in the original's zero-origin frame: the
    predictions come back in that frame, not in the header's."""
    from scn_tf.data.io import apply_image_frame

    image = source_image((60, 50, 40), (1.5, 1.8, 2.5), (-20.0, 10.0, 30.0), [0.2, -0.1, 0.3])
    framed = apply_image_frame(image, "zero_origin")
    index = np.random.default_rng(3).uniform(0.2, 0.8, size=(4, 3)) * np.array(image.GetSize())
    points = index * np.array(image.GetSpacing())
    data = DataConfig(ndim=3, num_landmarks=4, image_size=[32, 32, 32], spacing=None, image_frame="zero_origin")
    predictor = Predictor(None, data)
    predictor._run = Oracle(predictor, framed, points)
    prediction = predictor.predict_image(image, "x")
    assert np.abs(prediction.points - points).max() < 0.1
    np.testing.assert_allclose(prediction.indices, index, atol=0.1)


def test_short_test_volume_is_padded_with_minus_one():
    """Beyond a volume shorter than the window the spine input is -3024 HU: -1 after x/2048 and the clamp."""
    image = sitk.GetImageFromArray(np.zeros((10, 8, 8), np.float32))
    image.SetSpacing([2.0, 2.0, 2.0])
    data = dataclasses.replace(preset("spine3d").data, num_landmarks=1, image_size=[8, 8, 32], smoothing_sigma=0.0)
    seen = []
    predictor = Predictor(lambda batch: seen.append(batch) or np.zeros(batch.shape[:-1] + (1,)), data)
    predictor.predict_image(image, "short")
    z_profile = seen[0][0, :, 4, 4, 0]
    assert np.sum(z_profile == 0.0) == 10 and np.sum(z_profile == -1.0) == 22
