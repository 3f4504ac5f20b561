"""The fast resampler against SimpleITK's exact one: the same linear interpolation (border rules included),
exact for affine maps, source positions within 0.1 mm for the presets' elastic deformations, and SimpleITK
threads limited per filter without a process-wide change."""

import time

import numpy as np
import pytest
import SimpleITK as sitk

from scn_tf.configs import DataConfig, preset
from scn_tf.data.augmentation import make_transform
from scn_tf.data.pipeline import LandmarkSource, make_dataset
from scn_tf.data.resampling import interpolate, resample, source_index_grid, upsample

from conftest import write_dataset


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
    pytest.param("spine3d", [512, 512, 160], [0.34, 0.34, 2.06], 1, 0.1, marks=pytest.mark.xfail(
        strict=True, reason="known defect: the source-space elastic B-spline ends at the CT's border, where the "
        "coarse-grid field interpolates across its discontinuity (up to 6 mm within one coarse cell)"))])
def test_elastic_positions_close_to_the_exact_transform(name, source_size, source_spacing, seeds, bound):
    """The coarse grid's interpolated positions against the transform at every pixel, for the preset's
    network geometry and augmentation (docs/pipeline_speed.md: at most 0.0012 and 0.043 mm measured)."""
    config = preset(name)
    ndim, size, spacing = config.data.ndim, config.data.image_size, config.data.spacing
    source = sitk.Image(source_size, sitk.sitkUInt8)
    source.SetSpacing(source_spacing)
    identity = sitk.Image([2] * ndim, sitk.sitkUInt8)  # continuous indices of this one are mm
    checked = [len(range(1, n, 3)) for n in size]      # every third pixel from 1: all offsets to the grid
    axes = [(1 + 3 * np.arange(n)) * s for n, s in zip(checked[::-1], spacing[::-1])]
    points = np.stack(np.meshgrid(*axes, indexing="ij")[::-1], axis=0)
    for seed in range(seeds):
        transform = make_transform(source, config.data, config.augmentation, np.random.default_rng(seed)).transform
        field = upsample(source_index_grid(identity, transform, size, spacing, 4), size)
        dense = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, checked, list(spacing),
                                                  [3.0 * s for s in spacing], np.eye(ndim).ravel().tolist())
        exact = points + np.moveaxis(sitk.GetArrayFromImage(dense), -1, 0)
        error = np.linalg.norm(field[(slice(None),) + (slice(1, None, 3),) * ndim] - exact, axis=0)
        assert 0 < error.max() < bound, (seed, error.max())


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
