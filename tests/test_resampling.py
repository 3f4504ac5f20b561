"""The fast resampler against SimpleITK's exact one: the same linear interpolation (border rules included),
exact for affine maps, source positions within 0.1 mm for the presets' elastic deformations and for an
elastic part that ends inside the output (a jump the coarse grid must not smooth over), and SimpleITK
threads limited per filter without a process-wide change."""

import time

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import write_dataset
from scn_tf.configs import AugmentationConfig, DataConfig, preset
from scn_tf.data.augmentation import make_transform
from scn_tf.data.pipeline import LandmarkSource, make_dataset
from scn_tf.data.resampling import interpolate, resample, source_indices, transformed_points


def random_image(size, spacing, origin, direction, seed=0):
    image = sitk.GetImageFromArray(np.random.default_rng(seed).normal(size=size[::-1]).astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection([float(v) for v in np.ravel(direction)])
    return image


def test_interpolation_by_hand():
    array = np.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]], np.float32)     # y, x
    indices = np.array([[0.5, 1.0, -0.4, -0.6, 2.0, 2.49, 2.5, 1.25],            # x
                        [0.5, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.75]], np.float32)  # y
    expected = [5.5, 11.0, 0.0, -7.0, 2.0, 12.0, -7.0, 8.75]  # half-pixel border: nearest; beyond: outside
    np.testing.assert_allclose(interpolate(array, indices, -7.0), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_field_equals_exact_for_affine_maps_and_at_the_border(ndim):
    """Rotation, anisotropic scaling and a shift that puts the output's edge in the source's half-pixel
    border: every pixel as SimpleITK's linear interpolation gives it (float32 positions aside)."""
    size = (40, 30) if ndim == 2 else (20, 16, 12)
    direction = np.eye(ndim)[::-1] if ndim == 2 else np.eye(3)[[1, 2, 0]]
    image = random_image(size, [0.7, 1.3, 2.0][:ndim], [5.0, -3.0, 8.0][:ndim], direction)
    affine = sitk.AffineTransform(ndim)
    angle = 0.3
    matrix = np.eye(ndim)
    matrix[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    affine.SetMatrix([float(v) for v in (direction @ matrix @ np.diag([1.1, 0.8, 0.9][:ndim])).ravel()])
    affine.SetTranslation([5.0 - 0.3, -3.0 + 0.2, 8.0][:ndim])
    out_size, out_spacing = [24, 20, 10][:ndim], [1.5, 1.0, 1.7][:ndim]
    exact = sitk.GetArrayFromImage(resample(image, affine, out_size, out_spacing, -5.0, "exact"))
    field = sitk.GetArrayFromImage(resample(image, affine, out_size, out_spacing, -5.0, "field", step=7))
    assert 0.05 < np.mean(exact == -5.0) < 0.9          # both inside and outside pixels are compared
    mismatch = (exact == -5.0) != (field == -5.0)
    assert mismatch.sum() <= 2                          # a position within float32 rounding of the border
    np.testing.assert_allclose(field[~mismatch], exact[~mismatch], atol=2e-4)


@pytest.mark.parametrize("name, source_size, source_spacing, seeds, bound", [
    ("skull2d", [1935, 2400], [0.1, 0.1], 3, 0.005),
    ("spine3d", [512, 512, 160], [0.34, 0.34, 2.06], 2, 0.1)])
def test_elastic_positions_close_to_the_exact_transform(name, source_size, source_spacing, seeds, bound):
    """The field's source positions against the transform at every pixel, for the preset's network geometry
    and augmentation (docs/pipeline_speed.md: at most 0.0014 and 0.056 mm measured). The spine's elastic
    part covers the CT only, so its displacement jumps to zero at the CT's edge inside the output."""
    config = preset(name)
    size, spacing = config.data.image_size, config.data.spacing
    source = sitk.Image(source_size, sitk.sitkUInt8)
    source.SetSpacing(source_spacing)
    for seed in range(seeds):
        transform = make_transform(source, config.data, config.augmentation, np.random.default_rng(seed)).transform
        error = position_errors(transform, size, spacing)
        assert 0 < error.max() < bound, (seed, error.max())


def position_errors(transform, size, spacing, **options):
    """Per output pixel, the distance (mm) between the field's and the exact transform's source position."""
    identity = sitk.Image([2] * len(size), sitk.sitkUInt8)  # continuous indices of this one are mm
    field = source_indices(identity, transform, size, spacing, **options)
    return np.linalg.norm(field - transformed_points(transform, size, spacing, [0.0] * len(size)), axis=0)


def source_elastic_case(ndim):
    """A smooth source smaller than the output's field of view and a transform with an elastic part in
    source space (over the source only, as the spine's), rotated and shifted: its displacement (up to
    8 mm) jumps to zero across the source's edge, inside the output."""
    size, spacing = [30, 24, 20][:ndim], [2.0, 2.5, 3.0][:ndim]
    axes = np.meshgrid(*[np.arange(n) * s for n, s in zip(size[::-1], spacing[::-1], strict=True)], indexing="ij")
    array = sum(np.sin(axis / (8.0 + 3 * i)) for i, axis in enumerate(axes)).astype(np.float32)
    source = sitk.GetImageFromArray(array)
    source.SetSpacing(spacing)
    source.SetOrigin([4.0, -3.0, 2.0][:ndim])
    data = DataConfig(ndim=ndim, num_landmarks=1, image_size=[48, 40, 32][:ndim], spacing=[1.75] * ndim)
    augmentation = AugmentationConfig(translation=5.0, rotation=0.3, scale_axis=0.1, elastic_grid=5,
                                      elastic_magnitude=8.0, elastic_space="source")
    return source, make_transform(source, data, augmentation, np.random.default_rng(3))


@pytest.mark.parametrize("ndim", [2, 3])
def test_positions_across_an_elastic_domain_edge(ndim):
    """Cells across the jump take the transform at each pixel: every pixel's position within 0.1 mm of the
    exact one, where the coarse grid alone (no refinement) is millimetres off."""
    _, spatial = source_elastic_case(ndim)
    size, spacing = spatial.geometry.size, spatial.geometry.spacing
    assert position_errors(spatial.transform, size, spacing).max() < 0.1
    assert position_errors(spatial.transform, size, spacing, tolerance=np.inf).max() > 1.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_values_across_an_elastic_domain_edge(ndim):
    """The resampled smooth source as the exact path gives it, on both sides of the source's edge."""
    source, spatial = source_elastic_case(ndim)
    exact = sitk.GetArrayFromImage(spatial.resample(source, -5.0, "exact"))
    field = sitk.GetArrayFromImage(spatial.resample(source, -5.0, "field"))
    assert 0.1 < np.mean(exact == -5.0) < 0.9          # both inside and outside pixels are compared
    mismatch = (exact == -5.0) != (field == -5.0)
    assert mismatch.sum() <= 2                          # a position within float32 rounding of the border
    np.testing.assert_allclose(field[~mismatch], exact[~mismatch], atol=0.01)  # 0.1 mm x 0.3 per mm


def test_sitk_threads_per_filter_and_no_process_wide_change(tmp_path):
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(3)
    try:
        config = preset("spine3d")
        data = DataConfig(ndim=3, num_landmarks=1, image_size=[40, 40, 40], spacing=[2.0, 2.0, 2.0])
        image = random_image([60, 60, 60], [1.5, 1.5, 1.5], [0.0] * 3, np.eye(3))
        transform = make_transform(image, data, config.augmentation, np.random.default_rng(0))
        calling, process = time.thread_time(), time.process_time()
        transform.resample(image, method="exact", threads=1)
        calling, process = time.thread_time() - calling, time.process_time() - process
        assert process - calling < 0.3 * calling          # the filter ran in the calling thread alone
        source = LandmarkSource(write_dataset(tmp_path), tmp_path, ["a"], verbose=False)
        next(iter(make_dataset(source, preset("skull2d").augmentation, workers=1, sitk_threads=1)))
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 3
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def test_bad_method_is_an_error():
    with pytest.raises(ValueError, match="data.resampling"):
        DataConfig(resampling="cubic")
    with pytest.raises(ValueError, match="resampling method"):
        resample(sitk.Image([4, 4], sitk.sitkFloat32), sitk.Transform(2, sitk.sitkIdentity), [2, 2], [1.0, 1.0],
                 method="cubic")
