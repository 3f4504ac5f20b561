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
from scn_tf.data.resampling import (
    ElasticInSourceField,
    continued_bspline,
    interpolate,
    resample,
    resample_elastic_in_source,
    source_indices,
    transformed_points,
)


def random_image(size, spacing, origin, direction, seed=0):
    image = sitk.GetImageFromArray(np.random.default_rng(seed).normal(size=size[::-1]).astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection([float(v) for v in np.ravel(direction)])
    return image


def test_interpolation_by_hand():
    array = np.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]], np.float32)  # y, x
    indices = np.array(
        [
            [0.5, 1.0, -0.4, -0.6, 2.0, 2.49, 2.5, 1.25],  # x
            [0.5, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.75],
        ],
        np.float32,
    )  # y
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
    assert 0.05 < np.mean(exact == -5.0) < 0.9  # both inside and outside pixels are compared
    mismatch = (exact == -5.0) != (field == -5.0)
    assert mismatch.sum() <= 2  # a position within float32 rounding of the border
    np.testing.assert_allclose(field[~mismatch], exact[~mismatch], atol=2e-4)


@pytest.mark.parametrize(
    "name, source_size, source_spacing, seeds, bound",
    [("skull2d", [1935, 2400], [0.1, 0.1], 3, 0.005), ("spine3d", [512, 512, 160], [0.34, 0.34, 2.06], 2, 0.1)],
)
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
    augmentation = AugmentationConfig(
        translation=5.0, rotation=0.3, scale_axis=0.1, elastic_grid=5, elastic_magnitude=8.0, elastic_space="source"
    )
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
    """The resampled smooth source as the exact path gives it, on both sides of the source's edge: a pixel is
    outside in one and inside in the other only where its exact position lies within the position bound
    (0.25 mm, below) of the source's edge, and values agree within that bound times the image's gradient."""
    source, spatial = source_elastic_case(ndim)
    exact = sitk.GetArrayFromImage(spatial.resample(source, -5.0, "exact"))
    field = sitk.GetArrayFromImage(spatial.resample(source, -5.0, "field"))
    assert 0.1 < np.mean(exact == -5.0) < 0.9  # both inside and outside pixels are compared
    mismatch = (exact == -5.0) != (field == -5.0)
    edge_distance = distance_to_source_edge(source, spatial)
    assert mismatch.mean() < 0.01 and (edge_distance[mismatch] < 0.25).all()
    np.testing.assert_allclose(field[~mismatch], exact[~mismatch], atol=0.25 * 0.29)  # max gradient 0.29 per mm


def exact_source_indices(source, spatial):
    """The continuous source indices (d, *output array order) of every output pixel by the exact transform."""
    ndim = source.GetDimension()
    size, spacing = spatial.geometry.size, spatial.geometry.spacing
    exact = transformed_points(spatial.transform, size, spacing, [0.0] * ndim)
    direction = np.array(source.GetDirection()).reshape(ndim, ndim)
    return np.einsum(
        "ij,j...->i...",
        np.linalg.inv(direction * np.array(source.GetSpacing())),
        exact - np.array(source.GetOrigin()).reshape((ndim,) + (1,) * ndim),
    )


def distance_to_source_edge(source, spatial):
    """Per output pixel, how far (mm) its exact source position lies from the nearest face of the source's
    buffer (half-pixel border included) along an axis."""
    ndim = source.GetDimension()
    indices = exact_source_indices(source, spatial)
    bounds = np.array(source.GetSize()).reshape((ndim,) + (1,) * ndim)
    spacing = np.reshape(source.GetSpacing(), (ndim,) + (1,) * ndim)
    return (np.minimum(np.abs(indices + 0.5), np.abs(indices - (bounds - 0.5))) * spacing).min(axis=0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_continued_bspline_is_itks_inside_and_smooth_beyond(ndim):
    """Inside the (rotated) domain the continued B-spline is the original; along a line through the domain's
    edge it stays smooth (second differences as small as inside), where the original jumps to zero."""
    _, spatial = source_elastic_case(ndim)
    elastic = spatial.elastic
    continued = continued_bspline(elastic)
    origin = np.array(elastic.GetTransformDomainOrigin())
    direction = np.array(elastic.GetTransformDomainDirection()).reshape(ndim, ndim)
    extent = np.array(elastic.GetTransformDomainPhysicalDimensions())

    def at(transform, unit):
        return np.array([transform.TransformPoint(p.tolist()) for p in origin + (unit * extent) @ direction.T])

    unit = np.random.default_rng(0).uniform(0, 1, (500, ndim))
    np.testing.assert_allclose(at(continued, unit), at(elastic, unit), atol=1e-9)
    line = np.full((401, ndim), 0.5)
    line[:, 0] = np.linspace(0.8, 1.2, 401)  # crosses the face x = 1 of the domain
    second = np.abs(np.diff(at(continued, line), 2, axis=0)).max(axis=1)
    assert second.max() < 10 * second[:150].max() + 1e-9
    assert np.abs(np.diff(at(elastic, line), 2, axis=0)).max() > 100 * second.max()


@pytest.mark.parametrize("ndim", [2, 3])
def test_elastic_in_source_positions_and_outside_pixels(ndim):
    """The structured field: every pixel it sends outside lies outside the source by the exact transform,
    every other pixel within 0.25 mm of the exact position. This elastic part is strongly curved (+-8 mm
    coefficients 30 mm apart: |f''| up to 32 / 30**2 per mm), which bounds the coarse grid's error by
    h**2/8 |f''| = 0.22 mm per axis at h = 7 mm (0.11 mm measured); the generic coarse grid alone is
    millimetres off here."""
    source, spatial = source_elastic_case(ndim)
    size, spacing = spatial.geometry.size, spatial.geometry.spacing
    field = ElasticInSourceField(source, spatial.affine, spatial.elastic, size, spacing, 4)
    indices = np.concatenate(list(field.slabs(int(size[-1]))), axis=1).astype(np.float64)
    exact_indices = exact_source_indices(source, spatial)
    bounds = np.array(source.GetSize()).reshape((ndim,) + (1,) * ndim)
    outside = np.any((exact_indices < -0.5) | (exact_indices >= bounds - 0.5), axis=0)
    sent_out = field.outside(0, int(size[-1]))
    assert 0.1 < sent_out.mean() < 0.9 and outside[sent_out].all()
    errors = np.linalg.norm((indices - exact_indices) * np.reshape(source.GetSpacing(), (ndim,) + (1,) * ndim), axis=0)[
        ~sent_out
    ]
    assert errors.max() < 0.25


def test_elastic_in_source_needs_the_sources_domain():
    source, spatial = source_elastic_case(2)
    other = sitk.Image([10, 10], sitk.sitkFloat32)
    with pytest.raises(ValueError, match="source's extent"):
        resample_elastic_in_source(other, spatial.affine, spatial.elastic, [8, 8], [1.0, 1.0])


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
        assert process - calling < 0.3 * calling  # the filter ran in the calling thread alone
        source = LandmarkSource(write_dataset(tmp_path), tmp_path, ["a"], verbose=False)
        next(iter(make_dataset(source, preset("skull2d").augmentation, workers=1, sitk_threads=1)))
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 3
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def test_bad_method_is_an_error():
    with pytest.raises(ValueError, match="data.resampling"):
        DataConfig(resampling="cubic")
    with pytest.raises(ValueError, match="resampling method"):
        resample(
            sitk.Image([4, 4], sitk.sitkFloat32),
            sitk.Transform(2, sitk.sitkIdentity),
            [2, 2],
            [1.0, 1.0],
            method="cubic",
        )
