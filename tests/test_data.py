"""Readers, presets, the tf.data pipeline and scn-augment on small datasets written to a temporary folder."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import write_dataset, write_dicom_series
from scn_tf.configs import PRESETS, DataConfig, ExperimentConfig, load_config, preset
from scn_tf.data.io import DataError, read_id_list, read_image, read_landmarks_csv, strip_image_suffix
from scn_tf.data.pipeline import LandmarkSource, make_dataset, make_sample

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_presets_round_trip_through_json(tmp_path):
    for name in PRESETS:
        config = preset(name)
        path = tmp_path / f"{name}.json"
        path.write_text(config.to_json())
        assert load_config(path).to_dict() == config.to_dict()
    values = preset("skull2d").to_dict()
    for key in (
        "ndim",
        "num_landmarks",
        "image_dir",
        "image_suffix",
        "landmarks_csv",
        "landmark_units",
        "image_spacing",
        "image_size",
    ):
        assert key in values["data"]
    assert values["training"]["iterations"] == 30_000 and values["network"]["filters"] == 128
    assert preset("spine3d").data.image_size == [96, 96, 192]


def test_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"data": {"ndim": 2, "imagesize": [1, 2]}}))
    with pytest.raises(ValueError, match="imagesize"):
        load_config(path, preset("skull2d"))
    with pytest.raises(ValueError, match="landmark_units"):
        DataConfig(landmark_units="cm")


def test_landmark_csv_errors_name_file_and_row(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("a,1,2,3,4\nb,1,2,3\n")
    with pytest.raises(DataError, match=r"l\.csv, row 2 \(id 'b'\): 4 columns, expected 5"):
        read_landmarks_csv(path, 2, 2)
    path.write_text("a,1,2,NaN,NaN\n")
    assert np.isnan(read_landmarks_csv(path, 2, 2)["a"][1]).all()
    path.write_text("a,1,x,3,4\n")
    with pytest.raises(DataError, match="row 1"):
        read_landmarks_csv(path, 2, 2)


def test_image_reader_errors_and_single_slice(tmp_path):
    bad = tmp_path / "broken.mha"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.mha: cannot read image"):
        read_image(bad)
    with pytest.raises(DataError, match="does not exist"):
        read_image(tmp_path / "missing.mha")
    volume = sitk.Image([5, 6, 4], sitk.sitkUInt8)
    sitk.WriteImage(volume, str(tmp_path / "vol.nii.gz"))
    with pytest.raises(DataError, match=r"vol\.nii\.gz: image is 3D .* expects 2D"):
        read_image(tmp_path / "vol.nii.gz", ndim=2)
    single = sitk.Image([5, 6, 1], sitk.sitkUInt8)
    sitk.WriteImage(single, str(tmp_path / "single.mha"))
    assert read_image(tmp_path / "single.mha", ndim=2).GetSize() == (5, 6)
    rgb = sitk.Compose([sitk.Image([4, 3], sitk.sitkUInt8) + 7] * 3)
    sitk.WriteImage(rgb, str(tmp_path / "grey.png"))
    grey = read_image(tmp_path / "grey.png", ndim=2, spacing=[0.1, 0.1])
    assert grey.GetNumberOfComponentsPerPixel() == 1 and grey.GetSpacing() == (0.1, 0.1)
    assert sitk.GetArrayFromImage(grey).max() == 7
    assert strip_image_suffix("dir/x.nii.gz") == "x" and strip_image_suffix("001.jpg") == "001"


def test_dicom_series(tmp_path):
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    series = tmp_path / "series"
    write_dicom_series(series, array)
    image = read_image(series, ndim=3)
    assert image.GetSize() == (6, 5, 4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)


def test_source_errors_name_the_id(tmp_path):
    data = write_dataset(tmp_path)
    with pytest.raises(DataError, match="no annotation row for id.*zz"):
        LandmarkSource(data, tmp_path, ["a", "zz"], verbose=False)
    (tmp_path / "landmarks.csv").write_text((tmp_path / "landmarks.csv").read_text() + "d," + "1," * 5 + "1\n")
    with pytest.raises(DataError, match=r"id d: image .*d\.mha does not exist"):
        LandmarkSource(data, tmp_path, ["a", "d"], verbose=False)


def test_pipeline_reproducible_and_resumable(tmp_path):
    data = write_dataset(tmp_path)
    source = LandmarkSource(data, tmp_path, ["a", "b", "c"], verbose=False)
    augmentation = preset("skull2d").augmentation

    def take(seed, start=0, workers=2, count=4):
        dataset = make_dataset(source, augmentation, seed=seed, start_step=start, workers=workers)
        return [tuple(np.asarray(t) for t in batch) for batch in dataset.take(count)]

    first = take(seed=1)
    assert first[0][0].shape == (1, 32, 32, 1) and first[0][1].shape == (1, 3, 2) and first[0][2].dtype == bool
    for a, b in zip(first, take(seed=1, workers=1), strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    other = take(seed=2)
    assert not np.array_equal(first[0][0], other[0][0])
    resumed = take(seed=1, start=2, count=2)
    np.testing.assert_array_equal(resumed[0][0], first[2][0])
    # the missing landmark of 'b' is never valid; valid coordinates lie inside the field of view
    for _, coords, valid in first:
        assert np.all(np.isnan(coords[~valid]))
        assert np.all((coords[valid] >= 0) & (coords[valid] <= 31))
    test = [tuple(np.asarray(t) for t in batch) for batch in make_dataset(source, None, repeat=False)]
    assert len(test) == 3 and not test[1][2][0, 1]


def test_sample_landmark_pixels_and_spacing(tmp_path):
    data = write_dataset(tmp_path)
    source = LandmarkSource(data, tmp_path, ["a"], verbose=False)
    sample = make_sample(source, "a", None, None)
    # test geometry: fit 60*0.8 = 48 mm into 32 pixels -> 1.5 mm, centred
    np.testing.assert_allclose(sample.transform.geometry.spacing, [1.5, 1.5])
    image = source.images["a"]
    centre = (np.array(image.GetSize()) - 1) / 2 * np.array(image.GetSpacing())
    expected = (source.points["a"] - centre) / 1.5 + 15.5
    np.testing.assert_allclose(sample.coords, expected, atol=1e-6)


@pytest.mark.slow
def test_scn_augment_command(tmp_path):
    data = write_dataset(tmp_path / "data")
    config = ExperimentConfig(
        data,
        *[
            section()
            for section in (
                type(preset("skull2d").augmentation),
                type(preset("skull2d").network),
                type(preset("skull2d").training),
            )
        ],
    )
    config.augmentation.rotation = 0.2
    config_path = tmp_path / "tiny.json"
    config_path.write_text(config.to_json())
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "scn_tf.cli.augment",
        "--config",
        str(config_path),
        "--data_dir",
        str(tmp_path / "data"),
        "--ids",
        "a,b",
        "--samples",
        "2",
        "--seed",
        "3",
        "--output_dir",
        str(out),
    ]
    subprocess.run(command, check=True, capture_output=True)
    for name in ("a_0", "a_1", "b_0", "b_1"):
        image = sitk.ReadImage(str(out / f"{name}.nii.gz"))
        assert image.GetSize() == (32, 32)
        assert (out / f"{name}.png").stat().st_size > 1000
        row = (out / f"{name}.csv").read_text().strip().split(",")
        assert row[0] == name[0] and len(row) == 7
    assert (out / "b_0.csv").read_text().strip().split(",")[3:5] == ["NaN", "NaN"]
    printed = subprocess.run(
        [sys.executable, "-m", "scn_tf.cli.augment", "--preset", "spine3d", "--print_config"],
        check=True,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    ).stdout
    assert json.loads(printed) == preset("spine3d").to_dict()


@pytest.mark.skipif(not (SHARED / "hand_xray" / "all.csv").exists(), reason="../shared/data/hand_xray is absent")
def test_real_hand_radiographs_read_as_2d():
    config = preset("hand2d").data
    source = LandmarkSource(config, SHARED / "hand_xray", ["3147", "3167"], verbose=False)
    assert all(image.GetDimension() == 2 for image in source.images.values())
    sample = make_sample(source, "3167", None, None)
    assert sample.image.shape == (512, 512, 1) and sample.valid.sum() == 37


@pytest.mark.skipif(not (SHARED / "isbi2015_ceph").exists(), reason="../shared/data/isbi2015_ceph is absent")
def test_real_cephalogram_geometry():
    source = LandmarkSource(preset("skull2d").data, SHARED / "isbi2015_ceph", ["001"], verbose=False)
    image = source.images["001"]
    assert image.GetSize() == (1935, 2400) and image.GetSpacing() == (0.1, 0.1)
    sample = make_sample(source, "001", None, None)
    assert sample.valid.all()
    np.testing.assert_allclose(sample.transform.geometry.spacing, [0.46875, 0.46875])
    assert len(read_id_list(Path(__file__).resolve().parents[1] / "data_splits" / "isbi2015_ceph" / "test1.txt")) == 150


def test_k_fold_is_seeded_and_partitions():
    from scn_tf.data.folds import k_fold

    ids = [f"id{i:02d}" for i in range(60)]
    folds = [k_fold(ids, 5, k, seed=3) for k in range(5)]
    tests = [set(test) for _, test in folds]
    assert all(len(t) == 12 for t in tests) and set().union(*tests) == set(ids)
    assert all(not set(train) & test for (train, _), test in zip(folds, tests, strict=True))
    assert k_fold(ids, 5, 2, seed=3) == folds[2] and k_fold(ids, 5, 2, seed=4) != folds[2]
