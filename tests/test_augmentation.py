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
    window = array[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
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
    2: dict(
        size=(600, 480),
        spacing=(0.3, 0.5),
        origin=(12.0, -30.0),
        angle=[0.5],
        image_size=[96, 96],
        net_spacing=None,
        blob=5.0,
        preset="skull2d",
    ),
    3: dict(
        size=(80, 72, 60),
        spacing=(2.5, 2.8, 4.0),
        origin=(-40.0, 25.0, 100.0),
        angle=[0.3, -0.2, 0.4],
        image_size=[48, 48, 48],
        net_spacing=[4.0, 4.0, 4.0],
        blob=8.0,
        preset="spine3d",
    ),
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
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(a.resample(image, method="field")),
        sitk.GetArrayFromImage(b.resample(image, method="field")),
    )
    assert not np.allclose(a.to_network(points), c.to_network(points))


def test_crop_z_draws_window_inside_long_volume():
    image = sitk.Image([8, 8, 200], sitk.sitkFloat32)
    image.SetSpacing([2.0, 2.0, 2.0])
    data = DataConfig(ndim=3, num_landmarks=1, image_size=[8, 8, 40], spacing=[2.0, 2.0, 2.0])
    augmentation = AugmentationConfig(crop_z=True)
    centres = [
        make_transform(image, data, augmentation, np.random.default_rng(s)).affine.TransformPoint([7.0, 7.0, 39.0])[2]
        for s in range(50)
    ]
    assert min(centres) >= 39.0 - 1.0 - 1e-9 and max(centres) <= 398.0 + 1.0 + 1e-9
    assert max(centres) - min(centres) > 200  # the window moves along the whole volume


def test_scale_multiplies_the_point_map():
    """The original draws s in [1 - r, 1 + r] and multiplies the network -> source map by it (the image
    appears zoomed by 1/s); zooming the image by s would put the map's factors in [1/1.4, 1/0.6]."""
    image = sitk.Image([64, 64], sitk.sitkFloat32)
    data = DataConfig(ndim=2, num_landmarks=1, image_size=[32, 32], spacing=[1.0, 1.0])
    augmentation = AugmentationConfig(scale=0.4)
    factors = [
        make_transform(image, data, augmentation, np.random.default_rng(s)).affine.GetMatrix()[0] for s in range(200)
    ]
    assert min(factors) >= 0.6 - 1e-9 and max(factors) <= 1.4 + 1e-9
    assert min(factors) < 0.65 and max(factors) > 1.35


def border_case(max_min_distance, elastic=True):
    """A 100x100 source (1 mm pixels) seen through a centred 50x50 window: network x = source x - 25."""
    image = sitk.Image([100, 100], sitk.sitkFloat32)
    data = DataConfig(ndim=2, num_landmarks=3, image_size=[50, 50], spacing=[1.0, 1.0])
    augmentation = AugmentationConfig(
        elastic_grid=5 if elastic else 0, elastic_magnitude=1e-3, max_min_distance=max_min_distance
    )
    transform = make_transform(image, data, augmentation, np.random.default_rng(0))
    # 5 mm left of the view; just inside the last pixel's cell (c = 49.3 < 50); 40 mm below the view
    points = np.array([[20.0, 50.0], [74.3, 50.0], [50.0, 114.0]])
    return transform.landmark_pixels(points, max_min_distance)


def test_landmark_outside_view_stays_valid_at_the_border_within_max_min_distance():
    coords, valid = border_case(30.0)
    np.testing.assert_array_equal(valid, [True, True, False])
    np.testing.assert_allclose(coords[0], [0.0, 25.0], atol=1e-2)  # placed at the border pixel
    np.testing.assert_allclose(coords[1], [49.3, 25.0], atol=1e-2)  # valid where 0 <= c < size
    assert np.isnan(coords[2]).all()
    # farther out than max_min_distance, without it, or without the elastic part: invalid
    np.testing.assert_array_equal(border_case(3.0)[1], [False, True, False])
    np.testing.assert_array_equal(border_case(None)[1], [False, True, False])
    np.testing.assert_array_equal(border_case(30.0, elastic=False)[1], [False, True, False])


def test_presets_keep_border_landmarks_as_the_original():
    assert preset("skull2d").augmentation.max_min_distance == 30.0
    assert preset("skull2d_cpu").augmentation.max_min_distance == 30.0
    assert preset("spine3d").augmentation.max_min_distance == 2 * preset("spine3d").data.spacing[0]


def test_spine_elastic_grid_spans_the_input_ct_in_input_space():
    image = sitk.Image([40, 30, 80], sitk.sitkFloat32)
    image.SetSpacing([2.0, 2.5, 3.0])
    image.SetOrigin([5.0, -7.0, 11.0])
    augmentation = preset("spine3d").augmentation
    assert augmentation.elastic_space == "source"
    data = DataConfig(ndim=3, num_landmarks=1, image_size=[16, 16, 32], spacing=[2.0, 2.0, 2.0])
    transform = make_transform(image, data, augmentation, np.random.default_rng(0))
    np.testing.assert_allclose(transform.elastic.GetTransformDomainOrigin(), [4.0, -8.25, 9.5])
    np.testing.assert_allclose(transform.elastic.GetTransformDomainPhysicalDimensions(), [80.0, 75.0, 240.0])
    assert np.max(np.abs(transform.elastic.GetParameters())) <= 15.0
    point = [10.0, 12.0, 20.0]  # the affine map first, then the deformation of the CT
    expected = transform.elastic.TransformPoint(transform.affine.TransformPoint(point))
    np.testing.assert_allclose(transform.transform.TransformPoint(point), expected, atol=1e-9)
    np.testing.assert_allclose(transform.to_source(transform.to_network(np.array([expected]))), [expected], atol=1e-4)


def test_crop_z_offsets_short_volumes_too():
    """(L - 384 mm) * U(-0.5, 0.5): a 40 mm volume under a 384 mm window moves by up to +-172 mm."""
    image = sitk.Image([8, 8, 20], sitk.sitkFloat32)
    image.SetSpacing([2.0, 2.0, 2.0])
    data = DataConfig(ndim=3, num_landmarks=1, image_size=[8, 8, 192], spacing=[2.0, 2.0, 2.0])
    centre = [7.0, 7.0, 191.0]
    offsets = [
        make_transform(image, data, AugmentationConfig(crop_z=True), np.random.default_rng(s)).affine.TransformPoint(
            centre
        )[2]
        - 19.0
        for s in range(100)
    ]
    assert max(np.abs(offsets)) <= 172.0 + 1e-9 and max(offsets) - min(offsets) > 250


def test_hand_displacements_in_network_pixels():
    """hand2d: translation +-20 and elastic +-5 network pixels (here 4 mm each), not source pixels."""
    image = sitk.Image([2048, 1024], sitk.sitkFloat32)
    config = preset("hand2d")
    assert config.augmentation.spatial_units == "network_pixels" and config.training.weight_decay == 0.0005
    data = DataConfig(ndim=2, num_landmarks=1, image_size=[512, 512], spacing=None)
    augmentation = AugmentationConfig(
        translation=20.0, elastic_grid=12, elastic_magnitude=5.0, spatial_units="network_pixels"
    )
    shifts, coefficients = [], []
    for seed in range(50):
        transform = make_transform(image, data, augmentation, np.random.default_rng(seed))
        shifts.append(np.array(transform.affine.GetTranslation()) - (1023.5 - 1022.0, 511.5 - 1022.0))
        coefficients.append(np.max(np.abs(transform.elastic.GetParameters())))
    assert np.max(np.abs(shifts)) <= 80.0 + 1e-9 and np.max(np.abs(shifts)) > 60.0
    assert max(coefficients) <= 20.0 + 1e-9 and max(coefficients) > 15.0
