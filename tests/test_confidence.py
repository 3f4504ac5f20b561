"""Confidence on the training images' scale, the left-right mirror check and heatmaps in the input's frame."""

import numpy as np
import pytest
import SimpleITK as sitk

from scn_tf.confidence import (
    ConfidenceReference,
    describe,
    image_score,
    load_reference,
    measure_reference,
    write_reference,
)
from scn_tf.configs import DataConfig
from scn_tf.inference import Predictor, mirror_x, source_frame_heatmaps
from test_inference import Oracle, source_image

# training peaks of 4 images x 2 landmarks; image 1 has landmark 1 unannotated
PEAKS = np.array([[0.1, 0.5], [0.3, np.nan], [0.2, 0.4], [0.4, 0.6]])


def test_fraction_below_and_relative_confidence_by_hand(tmp_path):
    reference = ConfidenceReference(["a", "b", "c", "d"], PEAKS)
    # landmark 0: 0.1 and 0.2 of 4 are below 0.3 (0.3 itself is not); landmark 1: 0.4 of the 3 annotated
    np.testing.assert_allclose(reference.fraction_below([0.3, 0.5]), [2 / 4, 1 / 3])
    np.testing.assert_allclose(reference.fraction_below([0.05, 0.7]), [0.0, 1.0])
    np.testing.assert_allclose(reference.median_peaks, [0.25, 0.5])
    assert reference.relative([0.3, 0.5]) == pytest.approx(np.median([0.3 / 0.25, 0.5 / 0.5]))
    usual, low = describe(np.array([0.3, 0.5]), reference), describe(np.array([0.05, 0.1]), reference)
    assert usual["low_confidence"] is False and low["low_confidence"] is True
    assert low["relative_confidence"] == pytest.approx(0.2)
    assert describe(np.array([0.3, 0.5]), None)["confidence_fraction"] is None
    assert image_score(np.array([0.3, 0.6]), None) == pytest.approx(0.45)

    write_reference(tmp_path, reference)
    loaded = load_reference(tmp_path)
    np.testing.assert_array_equal(loaded.peaks, PEAKS)
    assert loaded.image_ids == ["a", "b", "c", "d"]
    assert load_reference(tmp_path, "best") is None and load_reference(tmp_path / "none") is None


def test_landmark_never_annotated_in_training_has_no_scale():
    reference = ConfidenceReference(["a", "b"], np.array([[0.2, np.nan], [0.4, np.nan]]))
    entry = describe(np.array([0.3, 0.9]), reference)
    assert entry["confidence_fraction"] == [0.5, None]
    assert entry["relative_confidence"] == pytest.approx(1.0)


def test_measure_reference_masks_unannotated_landmarks():
    class Fixed:
        def predict_prepared(self, image, image_id):
            return type("P", (), {"confidence": np.array([float(image), 2 * float(image)])})

    points = {"a": np.array([[1.0, 2.0], [np.nan, np.nan]]), "b": np.array([[1.0, 2.0], [3.0, 4.0]])}
    reference = measure_reference(Fixed(), {"a": 0.25, "b": 0.5}, points)
    np.testing.assert_array_equal(reference.peaks, [[0.25, np.nan], [0.5, 1.0]])


SHIFT = 8  # network pixels from a landmark's bright blob to its dark partner on the right


def matched_filter(batch):
    """A 'network' that knows the object's orientation: heatmap 0 peaks at a bright blob with a dark blob SHIFT
    pixels to its right (2 for that pattern, 1 for its mirror image), heatmap 1 at the dark blob."""
    image = batch[..., 0]
    right = np.roll(image, -SHIFT, axis=2)
    left = np.roll(image, SHIFT, axis=2)
    return np.stack([np.maximum(image - right, 0), np.maximum(left - image, 0)], axis=-1)


def asymmetric_image():
    """80x64 pixels at 0.5 mm, origin (3, -2): a bright blob and, SHIFT network pixels to its right, a dark one."""
    data = DataConfig(ndim=2, num_landmarks=2, image_size=[64, 64], spacing=None, smoothing_sigma=0.0)
    network_spacing = 40.0 / 64
    bright = np.array([30.0, 36.0])
    dark = bright + [SHIFT * network_spacing / 0.5, 0.0]
    y, x = np.mgrid[:64, :80]
    array = np.zeros((64, 80), np.float32)
    for (cx, cy), sign in ((bright, 1.0), (dark, -1.0)):
        array += sign * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 3.0**2))
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([0.5, 0.5])
    image.SetOrigin([3.0, -2.0])
    return image, data, np.stack([bright, dark])


def test_mirror_auto_detects_and_undoes_a_mirrored_image():
    image, data, truth = asymmetric_image()
    reference = ConfidenceReference(["t"], np.array([[2.0, 2.0]]))
    predictor = Predictor(matched_filter, data, confidence_reference=reference)

    upright = predictor.predict_image(image, "upright", mirror="auto")
    assert not upright.mirrored and upright.mirror_scores["original"] > 1.5 * upright.mirror_scores["mirrored"]
    np.testing.assert_allclose(upright.indices, truth, atol=0.2)

    flipped = mirror_x(image)
    flipped_truth = np.stack([79 - truth[:, 0], truth[:, 1]], axis=1)
    plain = predictor.predict_image(flipped, "flipped")
    assert describe(plain.confidence, reference)["relative_confidence"] < 0.6  # the mirror pattern answers at half
    kept = predictor.predict_image(flipped, "flipped", mirror="auto")
    assert kept.mirrored and kept.mirror_scores["mirrored"] > 1.5 * kept.mirror_scores["original"]
    np.testing.assert_allclose(kept.indices, flipped_truth, atol=0.2)
    np.testing.assert_allclose(
        kept.points, [flipped.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in flipped_truth], atol=0.1
    )
    assert kept.confidence == pytest.approx(upright.confidence)
    with pytest.raises(ValueError, match="2D"):
        Predictor(matched_filter, DataConfig(ndim=3, num_landmarks=2, image_size=[8, 8, 8])).predict_image(
            sitk.Image([8, 8, 8], sitk.sitkFloat32), mirror="auto"
        )


def peak_points(heatmaps: sitk.Image) -> np.ndarray:
    """Each component's maximum as a physical point of the heatmap image's grid."""
    array = sitk.GetArrayFromImage(heatmaps)  # (*spatial, N)
    flat = array.reshape(-1, array.shape[-1]).argmax(axis=0)
    return np.array(
        [
            heatmaps.TransformIndexToPhysicalPoint([int(v) for v in np.unravel_index(i, array.shape[:-1])[::-1]])
            for i in flat
        ]
    )


def check_input_frame(heatmaps: sitk.Image, image: sitk.Image, num_landmarks: int):
    assert heatmaps.GetSize() == image.GetSize() and heatmaps.GetNumberOfComponentsPerPixel() == num_landmarks
    np.testing.assert_allclose(heatmaps.GetOrigin(), image.GetOrigin())
    np.testing.assert_allclose(heatmaps.GetSpacing(), image.GetSpacing())
    np.testing.assert_allclose(heatmaps.GetDirection(), image.GetDirection())


@pytest.mark.parametrize("ndim", [2, 3])
def test_heatmaps_in_the_input_frame_peak_at_the_predicted_points(ndim):
    """Oracle heatmaps on a rotated, anisotropic, shifted source: each written component peaks at its predicted
    physical point, within a source pixel plus the half network pixel that linear resampling rounds to."""
    rng = np.random.default_rng(ndim)
    if ndim == 2:
        image = source_image((120, 96), (0.3, 0.5), (5.0, -7.0), [0.4])
        data = DataConfig(ndim=2, num_landmarks=4, image_size=[48, 48], spacing=None)
    else:
        image = source_image((40, 36, 30), (1.5, 1.8, 2.5), (-20.0, 10.0, 30.0), [0.2, -0.1, 0.3])
        data = DataConfig(ndim=3, num_landmarks=4, image_size=[24, 24, 24], spacing=None)
    index = rng.uniform(0.3, 0.7, size=(4, ndim)) * np.array(image.GetSize())
    points = np.array([image.TransformContinuousIndexToPhysicalPoint(i.tolist()) for i in index])
    predictor = Predictor(None, data)
    predictor._run = Oracle(predictor, image, points)
    prediction = predictor.predict_image(image, "x", keep_heatmaps=True)
    heatmaps = source_frame_heatmaps(prediction, image)
    check_input_frame(heatmaps, image, 4)
    network_spacing = predictor.transform(image).geometry.spacing
    tolerance = 0.5 * np.linalg.norm(network_spacing) + np.linalg.norm(image.GetSpacing())
    distances = np.linalg.norm(peak_points(heatmaps) - prediction.points, axis=1)
    assert np.all(distances < tolerance), distances
    assert np.all(np.abs(prediction.points - points).max(axis=1) < 0.1)


def test_heatmaps_of_a_mirrored_reading_are_mirrored_back():
    image, data, _ = asymmetric_image()
    flipped = mirror_x(image)
    kept = Predictor(matched_filter, data).predict_image(flipped, "flipped", mirror="auto", keep_heatmaps=True)
    assert kept.mirrored
    heatmaps = source_frame_heatmaps(kept, flipped)
    check_input_frame(heatmaps, flipped, 2)
    distances = np.linalg.norm(peak_points(heatmaps) - kept.points, axis=1)
    assert np.all(distances < 0.5 * np.sqrt(2) * 40 / 64 + 0.5 * np.sqrt(2)), distances
    with pytest.raises(ValueError, match="keep_heatmaps"):
        source_frame_heatmaps(Predictor(matched_filter, data).predict_image(flipped), flipped)
