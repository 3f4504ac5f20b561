"""Landmarks stay on their anatomy: blobs drawn at landmarks of a source image with anisotropic spacing,
a non-zero origin and a rotated direction are found at the mapped landmarks after full random augmentation."""

import numpy as np
import pytest
import SimpleITK as sitk

from scn_tf.configs import AugmentationConfig, DataConfig, preset
from scn_tf.data.augmentation import make_transform, rotation_matrix


def blob_image(size, spacing, origin, direction, points, sigma):
    """A source image with a Gaussian blob (std `sigma` mm) at each physical point."""
    ndim = len(size)
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection([float(v) for v in np.ravel(direction)])
    index = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), axis=-1).reshape(-1, ndim)
    physical = np.array(origin) + index @ (np.array(direction) * np.array(spacing)).T
    values = np.zeros(len(index))
    for point in points:
        values += np.exp(-np.sum((physical - point) ** 2, axis=1) / (2 * sigma**2))
    array = values.reshape(size).transpose(tuple(reversed(range(ndim))))  # x-major -> array order
    result = sitk.GetImageFromArray(array.astype(np.float32))
    result.CopyInformation(image)
    return result


def local_peak(array, centre_xyz, radius=4):
    """Parabola-refined maximum of `array` (array order) in a window around a point given in (x, y[, z])."""
    ndim = array.ndim
    centre = np.round(centre_xyz[::-1]).astype(int)
    low = np.maximum(centre - radius, 1)
    high = np.minimum(centre + radius + 1, np.array(array.shape) - 1)
    window = array[tuple(slice(a, b) for a, b in zip(low, high))]
    peak = np.array(np.unravel_index(np.argmax(window), window.shape)) + low
    refined = peak.astype(float)
    for axis in range(ndim):
        before, after = peak.copy(), peak.copy()
        before[axis] -= 1
        after[axis] += 1
        a, b, c = array[tuple(before)], array[tuple(peak)], array[tuple(after)]
        if a - 2 * b + c < 0:
            refined[axis] += 0.5 * (a - c) / (a - 2 * b + c)
    return refined[::-1]


CASES = {
    2: dict(size=(600, 480), spacing=(0.3, 0.5), origin=(12.0, -30.0), angle=[0.5],
            image_size=[96, 96], net_spacing=None, blob=5.0, preset="skull2d"),
    3: dict(size=(80, 72, 60), spacing=(2.5, 2.8, 4.0), origin=(-40.0, 25.0, 100.0), angle=[0.3, -0.2, 0.4],
            image_size=[48, 48, 48], net_spacing=[4.0, 4.0, 4.0], blob=8.0, preset="spine3d"),
}


def source_and_points(ndim, rng):
    case = CASES[ndim]
    direction = rotation_matrix(np.array(case["angle"]), ndim)
    extent = np.array(case["size"]) * np.array(case["spacing"])
    # well-separated blobs on a jittered grid, so that no blob shifts another's peak
    fractions = [0.25, 0.5, 0.75] if ndim == 2 else [0.3, 0.7]
    grid = np.stack(np.meshgrid(*[fractions] * ndim, indexing="ij"), axis=-1).reshape(-1, ndim)
    index_points = (grid + rng.uniform(-0.03, 0.03, grid.shape)) * np.array(case["size"])
    origin = np.array(case["origin"])
    points = origin + index_points @ (direction * np.array(case["spacing"])).T
    image = blob_image(case["size"], case["spacing"], case["origin"], direction, points, case["blob"])
    assert extent.min() > 100
    data = DataConfig(ndim=ndim, num_landmarks=len(points), image_size=case["image_size"], spacing=case["net_spacing"])
    return image, points, data, preset(case["preset"]).augmentation


@pytest.mark.parametrize("method", ["field", "exact"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_blobs_follow_landmarks_through_full_augmentation(ndim, method):
    rng = np.random.default_rng(10 + ndim)
    image, points, data, augmentation = source_and_points(ndim, rng)
    assert augmentation.elastic_grid and augmentation.elastic_magnitude
    checked = 0
    for seed in range(4):
        transform = make_transform(image, data, augmentation, np.random.default_rng(seed))
        assert transform.elastic is not None
        array = sitk.GetArrayFromImage(transform.resample(image, method=method))
        coords = transform.to_network(points) / transform.geometry.spacing
        inside = np.all((coords >= 3) & (coords <= transform.geometry.size - 4), axis=1)
        for landmark in np.flatnonzero(inside):
            peak = local_peak(array, coords[landmark])
            assert np.linalg.norm(peak - coords[landmark]) < 0.5, (seed, landmark, peak, coords[landmark])
            checked += 1
        # the numerical inverse really inverts: network -> source -> network
        back = transform.to_source(transform.to_network(points))
        np.testing.assert_allclose(back, points, atol=1e-3)
    assert checked >= 16


def test_composite_applies_elastic_first():
    image, points, data, augmentation = source_and_points(2, np.random.default_rng(0))
    transform = make_transform(image, data, augmentation, np.random.default_rng(3))
    point = [40.0, 50.0]
    expected = transform.affine.TransformPoint(transform.elastic.TransformPoint(point))
    np.testing.assert_allclose(transform.transform.TransformPoint(point), expected, atol=1e-9)


def test_test_geometry_centres_the_image_and_undoes_direction():
    image, points, data, _ = source_and_points(2, np.random.default_rng(1))
    transform = make_transform(image, data, None, None)
    assert transform.elastic is None
    centre_index = (np.array(image.GetSize()) - 1) / 2
    centre = image.TransformContinuousIndexToPhysicalPoint(centre_index.tolist())
    np.testing.assert_allclose(transform.affine.TransformPoint(transform.geometry.centre.tolist()), centre, atol=1e-9)
    # fit to size: the longer physical side (480 * 0.5 = 240 mm) fills the 96 pixels
    np.testing.assert_allclose(transform.geometry.spacing, [2.5, 2.5])
    # moving one network pixel along x moves one network spacing along the image's own x axis
    direction = np.array(image.GetDirection()).reshape(2, 2)
    step = np.array(transform.affine.TransformPoint([2.5, 0.0])) - transform.affine.TransformPoint([0.0, 0.0])
    np.testing.assert_allclose(step, direction[:, 0] * 2.5, atol=1e-9)


def test_seeds_reproduce_and_differ():
    image, points, data, augmentation = source_and_points(2, np.random.default_rng(2))
    a = make_transform(image, data, augmentation, np.random.default_rng(5))
    b = make_transform(image, data, augmentation, np.random.default_rng(5))
    c = make_transform(image, data, augmentation, np.random.default_rng(6))
    np.testing.assert_array_equal(a.to_network(points), b.to_network(points))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a.resample(image, method="field")),
                                  sitk.GetArrayFromImage(b.resample(image, method="field")))
    assert not np.allclose(a.to_network(points), c.to_network(points))


def test_crop_z_draws_window_inside_long_volume():
    image = sitk.Image([8, 8, 200], sitk.sitkFloat32)
    image.SetSpacing([2.0, 2.0, 2.0])
    data = DataConfig(ndim=3, num_landmarks=1, image_size=[8, 8, 40], spacing=[2.0, 2.0, 2.0])
    augmentation = AugmentationConfig(crop_z=True)
    centres = [make_transform(image, data, augmentation, np.random.default_rng(s)).affine.TransformPoint(
        [7.0, 7.0, 39.0])[2] for s in range(50)]
    assert min(centres) >= 39.0 - 1.0 - 1e-9 and max(centres) <= 398.0 + 1.0 + 1e-9
    assert max(centres) - min(centres) > 200  # the window moves along the whole volume
