"""scn-plan: its decisions against hand-computed values on small data sets, the data it refuses, and a plan
that scn-train accepts."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import write_dataset, write_dicom_series, write_pixel_dataset
from scn_tf import planning
from scn_tf.configs import preset
from scn_tf.data.io import DataError


def test_field_of_view_by_hand():
    offsets = np.array([[[10.0, -4.0], [np.nan, np.nan]], [[-6.0, 8.0], [2.0, 1.0]]])
    fov = planning.field_of_view(offsets, rotation=0.0, scale=0.0, translation=0.0)
    assert fov == pytest.approx([2.2 * 10, 2.2 * 8])
    turned = planning.field_of_view(offsets, rotation=0.1, scale=0.2, translation=3.0)
    reach_x = max(10 + math.sin(0.1) * 4, 6 + math.sin(0.1) * 8, 2 + math.sin(0.1) * 1) * 1.2 + 3
    assert turned[0] == pytest.approx(2.2 * reach_x)


def test_input_sizes_fit_the_network():
    """Every planned input builds: its sides divide by the U-Net's and the spatial configuration's pooling,
    which sees the whole input; no side exceeds its native size where a smaller fitting one exists."""
    from scn_tf.configs import NetworkConfig, check_network_fits
    from scn_tf.models.receptive_fields import spatial_configuration

    data = preset("cpu2d").data
    for fov, native, longest in [
        ((200.0, 160.0), [200, 160], 256),
        ((1400.0, 2130.0), [1400, 2136], 224),
        ((30.0, 400.0), [32, 400], 256),
        ((500.0, 500.0), [504, 504], 2048),
    ]:
        sizes, (downsampling, kernel) = planning.input_size(longest, np.array(fov), native, 4, 8)
        assert spatial_configuration(4, kernel, downsampling) >= max(sizes)
        network = NetworkConfig(network="scn", levels=4, spatial_downsampling=downsampling, spatial_kernel_size=kernel)
        check_network_fits(network, dataclasses.replace(data, image_size=sizes))
        assert all(
            s <= n or s == planning.round_size(downsampling * (kernel // 2 + 1), 8)
            for s, n in zip(sizes, native, strict=True)
        )
    assert planning.input_size(256, np.array([200.0, 160.0]), [200, 160], 4, 8)[0] == [200, 160]


def test_survey_of_pixel_data(tmp_path):
    write_pixel_dataset(tmp_path, ids=("a", "b", "c"), size=(60, 50))
    (tmp_path / "images" / "extra.png").write_bytes((tmp_path / "images" / "a.png").read_bytes())
    csv = tmp_path / "landmarks.csv"
    csv.write_text("id,tip_x,tip_y,notch_x,notch_y,corner_x,corner_y\n" + csv.read_text())
    found = planning.survey(tmp_path, "landmarks.csv")
    assert found.landmark_names == ["tip", "notch", "corner"]  # from the header row
    assert found.ids == ["a", "b", "c"] and found.skipped == ["extra"]
    assert (found.ndim, found.num_landmarks, found.landmark_units, found.suffix) == (2, 3, "pixel", ".png")
    assert found.median_spacing.tolist() == [1.0, 1.0]
    rows = csv.read_text().splitlines()
    first = np.array([float(v) for v in rows[1].split(",")[1:3]])
    assert found.offsets[0, 0] == pytest.approx(first - np.array([29.5, 24.5]))  # centre of 60x50 pixels


def test_plan_with_a_timer_by_hand(tmp_path):
    """With a step time proportional to the pixels, the plan takes the largest input that leaves the CPU
    preset's iterations in the minutes and fills them."""
    write_dataset(tmp_path, ids=("a", "b", "c"), size=(400, 300), spacing=(0.8, 0.6))
    timer = lambda config: 4e-6 * math.prod(config.data.image_size)  # noqa: E731
    config, decisions = planning.plan(tmp_path, budget="cpu", minutes=3.0, timer=timer)
    sizes = config.data.image_size
    found = planning.survey(tmp_path, "landmarks.csv")
    fov = planning.field_of_view(found.offsets, 0.2, 0.2, 0.05 * float(np.max(found.median_extent)))
    fov = np.minimum(fov, found.median_extent)
    assert config.data.spacing[0] >= 0.6 - 1e-6  # never finer than the images' spacing
    assert config.data.spacing[0] == pytest.approx(float(np.max(fov / np.array(sizes))), rel=1e-3)
    overhead = planning.FIXED_SECONDS + planning.SECONDS_PER_IMAGE * 3

    def steps(candidate):
        return (180 - overhead) / (4e-6 * math.prod(candidate) * planning.STEP_MARGIN) // 100 * 100

    least = preset("cpu2d").training.iterations
    assert config.training.iterations == min(int(steps(sizes)), planning.MAX_ITERATIONS[2]) and steps(sizes) >= least
    larger = [L for L in planning.CPU_SIZES[2] if L > max(sizes)]
    candidate = [min(planning.round_size(larger[0] * f / max(fov), 8), planning.round_size(f / 0.6, 8)) for f in fov]
    assert candidate == sizes or steps(candidate) < least  # the next larger input trains too few iterations
    assert config.data.landmark_units == "mm" and config.data.image_suffix == ".mha"
    assert {d.key for d in decisions} >= {"data.image_size", "training.iterations", "intensity"}


def test_plan_refuses_unplannable_data(tmp_path):
    mixed = tmp_path / "mixed"
    write_dataset(mixed)
    sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkUInt8), str(mixed / "images" / "v.mha"))
    with pytest.raises(DataError, match=r"mixed dimensionality .* 3D: v\.mha"):
        planning.survey(mixed, "landmarks.csv")
    far = tmp_path / "far"
    write_pixel_dataset(far)
    rows = [row.split(",") for row in (far / "landmarks.csv").read_text().splitlines()]
    (far / "landmarks.csv").write_text(
        "\n".join(",".join([r[0]] + [str(float(v) + 500) if v != "nan" else v for v in r[1:]]) for r in rows) + "\n"
    )
    with pytest.raises(DataError, match="outside their images"):
        planning.survey(far, "landmarks.csv")
    plain = tmp_path / "plain"
    write_pixel_dataset(plain)
    with pytest.raises(DataError, match="give --image_spacing"):
        planning.survey(plain, "landmarks.csv", landmark_units="mm")


@pytest.mark.slow
def test_scn_plan_prints_only_the_plan_and_scn_train_accepts_it(tmp_path):
    import subprocess
    import sys

    write_pixel_dataset(tmp_path / "data", ids=("a", "b", "c", "d"))
    result = subprocess.run(
        [sys.executable, "-m", "scn_tf.cli.plan", "--data_dir", str(tmp_path / "data"), "--minutes", "0.6"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)  # stdout holds the plan and nothing else
    assert "plan: data.image_size" in result.stderr and "plan: training.iterations" in result.stderr
    (tmp_path / "plan.json").write_text(result.stdout)
    (tmp_path / "data" / "train.txt").write_text("a\nb\nc\n")
    from scn_tf.cli import train

    status = train.run(
        [
            "scn-train",
            "--config",
            str(tmp_path / "plan.json"),
            "--data_dir",
            str(tmp_path / "data"),
            "--train_ids",
            "train.txt",
            "--iterations",
            "2",
            "--filters",
            "4",
            "--workers",
            "1",
            "--output_dir",
            str(tmp_path / "run"),
        ]
    )
    assert status == 0 and plan["data"]["landmark_units"] == "pixel"
    assert (tmp_path / "run" / "last.weights.h5").exists()


def write_ct(root, ids=("c1", "c2", "c3"), size=(40, 30, 12), spacing=(0.5, 0.5, 2.5)):
    """int16 CT-like volumes (air -1024 HU, a bone block) with a rotated direction and an origin, and mm
    landmarks placed at continuous indices through SimpleITK; returns the images and the indices."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    images, indices, rows = [], [], []
    for image_id in ids:
        array = np.full(size[::-1], -1024, np.int16)
        array[3:9, 8:22, 10:30] = 700
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin((10.0, -20.0, 5.0))
        image.SetDirection((0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
        sitk.WriteImage(image, str(root / "images" / f"{image_id}.nii.gz"))
        index = rng.uniform(0.25, 0.75, size=(4, 3)) * (np.array(size) - 1)
        points = [image.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in index]
        rows.append(",".join([image_id] + [repr(v) for p in points for v in p]))
        images.append(image)
        indices.append(index)
    (root / "landmarks.csv").write_text("\n".join(rows) + "\n")
    return images, indices


def test_gpu_plan_of_an_anisotropic_ct(tmp_path):
    """A rotated, anisotropic CT: offsets from the image centre as SimpleITK places both, the HU mapping,
    the anisotropy noted, the paper's scale (96 voxels along the longest axis), isotropic network voxels and
    the spine preset's iterations; no step is timed for the GPU budget."""
    from scn_tf.configs import check_network_fits

    images, indices = write_ct(tmp_path)
    found = planning.survey(tmp_path, "landmarks.csv")
    assert (found.ndim, found.landmark_units, found.suffix) == (3, "mm", ".nii.gz")
    size, spacing = np.array(images[0].GetSize()), np.array(images[0].GetSpacing())
    for offsets, index in zip(found.offsets, indices, strict=True):  # along the image's axes, as the network's
        assert offsets == pytest.approx((index - (size - 1) / 2) * spacing)

    def no_timing(config):
        raise AssertionError("the GPU budget times no step")

    config, decisions = planning.plan(tmp_path, budget="gpu", timer=no_timing)
    made = {d.key: d for d in decisions}
    assert made["anisotropy"].value == pytest.approx(5.0)
    assert (config.data.normalization, config.data.intensity_shift, config.data.intensity_scale) == (
        "fixed",
        0.0,
        pytest.approx(1 / 2048),
    )
    assert config.data.outside_value <= -1024 and config.data.landmarks_csv == "landmarks.csv"
    assert config.training.iterations == preset("spine3d").training.iterations
    assert len(set(config.data.spacing)) == 1 and config.data.spacing[0] >= 0.5 - 1e-6
    fov = np.minimum(
        planning.field_of_view(found.offsets, 0.2, 0.1, 0.05 * float(np.max(found.median_extent))),
        found.median_extent,
    )
    sizes = config.data.image_size
    assert config.data.spacing[0] == pytest.approx(float(np.max(fov / np.array(sizes))), rel=1e-3)
    assert max(sizes) <= 96 + 8 and all(s % 8 == 0 for s in sizes)
    check_network_fits(config.network, config.data)
    assert config.data.window_step == sizes[2] // 2 and config.augmentation.crop_z
    spine = preset("spine3d")
    ratio = config.data.spacing[0] / spine.data.spacing[0]  # the paper's elastic and smoothing, per network voxel
    assert config.augmentation.elastic_magnitude == pytest.approx(spine.augmentation.elastic_magnitude * ratio, 1e-3)
    assert config.data.smoothing_sigma == pytest.approx(spine.data.smoothing_sigma * ratio, rel=1e-3)
    assert config.augmentation.max_min_distance == pytest.approx(spine.augmentation.max_min_distance * ratio, 1e-3)
    assert config.training.sigma_init == spine.training.sigma_init


def test_single_slice_volumes_plan_as_2d(tmp_path):
    """(x, y, 1) volumes are 2D images; float MR-like volumes map per image, CT-like 2D slices do not take
    the HU mapping (it is for volumes)."""
    (tmp_path / "images").mkdir()
    rows = []
    for k, image_id in enumerate(("s1", "s2", "s3")):
        array = np.random.default_rng(k).normal(300, 50, size=(1, 50, 60)).astype(np.float32)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.7, 0.7, 3.0))
        sitk.WriteImage(image, str(tmp_path / "images" / f"{image_id}.mha"))
        rows.append(f"{image_id},10.5,12.0,30.1,20.7")
    (tmp_path / "landmarks.csv").write_text("\n".join(rows) + "\n")
    found = planning.survey(tmp_path, "landmarks.csv")
    assert (found.ndim, found.num_landmarks) == (2, 2)
    assert found.median_spacing.tolist() == [0.7, 0.7]
    config, _ = planning.plan(tmp_path, budget="gpu", found=found)
    assert config.data.ndim == 2 and len(config.data.image_size) == 2
    assert config.training.iterations == preset("skull2d").training.iterations
    low, high = np.percentile(
        np.concatenate(
            [sitk.GetArrayFromImage(sitk.ReadImage(str(p))).ravel() for p in sorted((tmp_path / "images").iterdir())]
        ),
        planning.INTENSITY_PERCENTILES,
    )
    assert config.data.intensity_scale == pytest.approx(2 / (high - low), rel=1e-3)
    assert config.data.intensity_shift == pytest.approx(-(low + high) / 2, rel=1e-3)
    assert config.data.outside_value == pytest.approx(low, abs=1e-3)  # padding as dark as the data: -1

    volumes = tmp_path / "mr"
    (volumes / "images").mkdir(parents=True)
    for image_id in ("m1", "m2"):
        image = sitk.GetImageFromArray(np.random.default_rng(0).normal(300, 50, (12, 30, 40)).astype(np.float32))
        sitk.WriteImage(image, str(volumes / "images" / f"{image_id}.mha"))
    (volumes / "landmarks.csv").write_text("m1,10,12,5\nm2,11,13,6\n")
    keys, _ = planning.intensity_plan(planning.survey(volumes, "landmarks.csv"))
    assert keys["normalization"] == "percentile"
    for image_id in ("m1", "m2"):  # CT stored as float32 (as many NIfTI files are) is still CT
        ct = sitk.GetImageFromArray(
            np.where(np.arange(40) < 20, -1000.0, 40.0).astype(np.float32) * np.ones((12, 30, 1))
        )
        sitk.WriteImage(ct, str(volumes / "images" / f"{image_id}.mha"))
    keys, _ = planning.intensity_plan(planning.survey(volumes, "landmarks.csv"))
    assert (keys["normalization"], keys["intensity_scale"]) == ("fixed", pytest.approx(1 / 2048))


def test_plain_images_plan_one_pixel_spacing_whatever_their_dpi(tmp_path):
    """A 300 dpi JPEG reads with 0.0847 mm pixels; the plan's pixel landmarks and field of view are in pixels,
    so it writes image_spacing 1 and training reads the same geometry."""
    from PIL import Image

    from scn_tf.data.io import read_image

    (tmp_path / "images").mkdir()
    for image_id in ("j1", "j2", "j3"):
        pixels = np.random.default_rng(0).integers(0, 255, (400, 300), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "images" / f"{image_id}.jpg", dpi=(300, 300))
    (tmp_path / "landmarks.csv").write_text("".join(f"{i},100,150,200,250\n" for i in ("j1", "j2", "j3")))
    assert read_image(tmp_path / "images" / "j1.jpg").GetSpacing()[0] == pytest.approx(25.4 / 300, rel=1e-3)
    config, _ = planning.plan(tmp_path, budget="gpu")
    assert config.data.image_spacing == [1.0, 1.0] and config.data.landmark_units == "pixel"
    image = read_image(tmp_path / "images" / "j1.jpg", 2, config.data.image_spacing)
    assert image.GetSpacing() == (1.0, 1.0)
    assert config.data.spacing[0] * max(config.data.image_size) <= 400 * 1.05  # the network sees the image
    with pytest.raises(DataError, match=r"--image_spacing \[0.1, 0.1, 0.1\]: 3 values for 2D images"):
        planning.survey(tmp_path, "landmarks.csv", image_spacing=[0.1, 0.1, 0.1])


def test_dicom_series_folders_are_images(tmp_path):
    """images/<id>/ holding a DICOM series is the image of <id> (image_suffix ""), with the series' geometry."""
    for image_id in ("d1", "d2"):
        array = np.full((6, 32, 32), 100, np.int16)
        write_dicom_series(tmp_path / "images" / image_id, array, (0.8, 0.8, 2.0), (5.0, 6.0, 7.0))
    (tmp_path / "landmarks.csv").write_text("d1,10,12,12,15,16,14\nd2,11,13,13,16,17,15\n")
    found = planning.survey(tmp_path, "landmarks.csv")
    assert (found.ids, found.suffix, found.ndim) == (["d1", "d2"], "", 3)
    assert found.median_spacing == pytest.approx([0.8, 0.8, 2.0])
    centre = np.array([5.0, 6.0, 7.0]) + np.array([0.8, 0.8, 2.0]) * (np.array([32, 32, 6]) - 1) / 2
    assert found.offsets[0, 0] == pytest.approx(np.array([10.0, 12.0, 12.0]) - centre)
    config, _ = planning.plan(tmp_path, budget="gpu", found=found)
    assert (config.data.image_suffix, config.data.ndim) == ("", 3)
