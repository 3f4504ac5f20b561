"""Landmark formats: 3D Slicer markups (.mrk.json, .fcsv; RAS and LPS), COCO keypoints and CSVs with a header
row, read and written back; scn-convert --dataset landmarks; scn-predict --format and ensembles."""

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import write_untrained_model
from scn_tf.cli import convert
from scn_tf.configs import DataConfig
from scn_tf.data.formats import (
    coco_document,
    read_coco_table,
    read_slicer,
    read_slicer_table,
    write_fcsv,
    write_slicer_json,
)
from scn_tf.data.io import DataError, physical_to_pixel, read_landmarks_table, write_landmarks_csv

NAMES = ["tip", "notch", "corner"]
POINTS = np.array([[1.5, -2.0, 3.25], [np.nan, np.nan, np.nan], [10.0, 20.0, -30.0]])


def test_slicer_json_round_trip_keeps_labels_positions_and_missing_points(tmp_path):
    write_slicer_json(tmp_path / "a.mrk.json", NAMES, POINTS)
    document = json.loads((tmp_path / "a.mrk.json").read_text())
    assert document["markups"][0]["coordinateSystem"] == "LPS"
    assert document["markups"][0]["controlPoints"][1]["positionStatus"] == "undefined"
    points = read_slicer(tmp_path / "a.mrk.json")
    assert points.labels == NAMES
    np.testing.assert_array_equal(points.positions, POINTS)


def test_fcsv_round_trip_and_reordering_by_names(tmp_path):
    write_fcsv(tmp_path / "a.fcsv", NAMES, POINTS)
    assert "# CoordinateSystem = LPS" in (tmp_path / "a.fcsv").read_text()
    table = read_slicer_table(tmp_path / "a.fcsv", names=["corner", "notch", "tip"])
    assert table.names == ["corner", "notch", "tip"]
    np.testing.assert_array_equal(table.landmarks["a"], POINTS[::-1])


def test_slicer_ras_file_gives_the_known_lps_point_through_scn_convert(tmp_path):
    """A volume with origin (10, 20, 5) and 2 mm voxels: voxel (3, 4, 1) lies at LPS (16, 28, 7), which Slicer
    writes in RAS as (-16, -28, 7). scn-convert gives LPS millimetres that index that voxel."""
    image = sitk.Image([8, 8, 4], sitk.sitkUInt8)
    image.SetOrigin([10.0, 20.0, 5.0])
    image.SetSpacing([2.0, 2.0, 2.0])
    sitk.WriteImage(image, str(tmp_path / "case1.nii.gz"))
    markups = tmp_path / "markups"
    markups.mkdir()
    ras = {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/Markups/Resources/"
        "Schema/markups-schema-v1.0.3.json#",
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": "RAS",
                "coordinateUnits": "mm",
                "controlPoints": [
                    {"id": "1", "label": "b", "position": [0.0, 0.0, 0.0], "positionStatus": "undefined"},
                    {"id": "2", "label": "a", "position": [-16.0, -28.0, 7.0], "positionStatus": "defined"},
                ],
            }
        ],
    }
    (markups / "case1.mrk.json").write_text(json.dumps(ras))
    (markups / "case2.fcsv").write_text(
        "# Markups fiducial file version = 4.10\n# CoordinateSystem = 0\n"
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
        "vtkMRMLMarkupsFiducialNode_0,-16,-28,7,0,0,0,1,1,1,0,a,,\n"
        "vtkMRMLMarkupsFiducialNode_1,-12,-22,9,0,0,0,1,1,1,0,b,,\n"
    )
    out = tmp_path / "data"
    arguments = ["scn-convert", "--dataset", "landmarks", "--from", "slicer", "--input", str(markups)]
    status = convert.run([*arguments, "--landmark_names", "a,b", "--output_dir", str(out)])
    assert status == 0
    data = json.loads((out / "data.json").read_text())["data"]
    assert data == {
        "num_landmarks": 2,
        "ndim": 3,
        "landmark_units": "mm",
        "landmark_names": ["a", "b"],
        "landmarks_csv": "landmarks.csv",
        "image_frame": "header",
    }
    table = read_landmarks_table(out / "landmarks.csv", 2, 3)
    np.testing.assert_allclose(table.landmarks["case1"][0], [16.0, 28.0, 7.0])
    assert np.isnan(table.landmarks["case1"][1]).all()
    np.testing.assert_allclose(table.landmarks["case2"], [[16, 28, 7], [12, 22, 9]])
    np.testing.assert_allclose(physical_to_pixel(image, table.landmarks["case1"][:1]), [[3.0, 4.0, 1.0]])
    assert (out / "ids.txt").read_text().split() == ["case1", "case2"]
    assert convert.run([*arguments, "--output_dir", str(out)]) == 1  # exists: nothing replaced without --overwrite


def test_coco_round_trip_visibility_zero_is_missing(tmp_path):
    coords = np.array([[3.0, 4.5], [np.nan, np.nan], [0.0, 7.0]])
    document = coco_document(NAMES, [("x/a.png", (40, 30), coords), ("b.jpg", (40, 30), coords[::-1])])
    assert document["annotations"][0]["keypoints"][3:6] == [0.0, 0.0, 0]
    (tmp_path / "k.json").write_text(json.dumps(document))
    table = read_coco_table(tmp_path / "k.json")
    assert table.names == NAMES and sorted(table.landmarks) == ["a", "b"]
    np.testing.assert_array_equal(table.landmarks["a"], coords)
    np.testing.assert_array_equal(read_coco_table(tmp_path / "k.json", NAMES[::-1]).landmarks["a"], coords[::-1])
    with pytest.raises(DataError, match="label 'notch' is not one of the landmark names"):
        read_coco_table(tmp_path / "k.json", ["corner", "tip"])
    out = tmp_path / "data"
    images = tmp_path / "images"
    images.mkdir()
    sitk.WriteImage(sitk.Image([40, 30], sitk.sitkUInt8), str(images / "a.png"))
    status = convert.run(
        ["scn-convert", "--dataset", "landmarks", "--from", "coco", "--input", str(tmp_path / "k.json")]
        + ["--images", str(images), "--output_dir", str(out)]
    )
    assert status == 0
    data = json.loads((out / "data.json").read_text())["data"]
    assert data["landmark_units"] == "pixel" and data["image_suffix"] == ".png" and data["landmark_names"] == NAMES
    assert (out / "images" / "a.png").is_symlink()
    np.testing.assert_array_equal(read_landmarks_table(out / "landmarks.csv", 3, 2).landmarks["a"], coords)


def test_csv_with_header_round_trip_and_conversion(tmp_path):
    landmarks = {"a": np.array([[1.0, 2.0], [np.nan, np.nan], [5.5, 6.0]]), "b": np.arange(6.0).reshape(3, 2)}
    write_landmarks_csv(tmp_path / "h.csv", landmarks, header=NAMES)
    assert (tmp_path / "h.csv").read_text().startswith("id,tip_x,tip_y,notch_x,notch_y,corner_x,corner_y\n")
    table = read_landmarks_table(tmp_path / "h.csv", None, 2)
    assert table.names == NAMES
    np.testing.assert_array_equal(table.landmarks["a"], landmarks["a"])
    (tmp_path / "plain.csv").write_text("image,tip,notch,corner\na,1,2,NaN,,5.5,6\n")
    plain = read_landmarks_table(tmp_path / "plain.csv", 3, 2)
    assert plain.names == NAMES
    np.testing.assert_array_equal(plain.landmarks["a"], landmarks["a"])
    (tmp_path / "short.csv").write_text("id,tip_x,tip_y\na,1,2,3,4,5,6\n")
    with pytest.raises(DataError, match=r"short.csv, row 1 \(header\): names 1 landmarks, expected 3"):
        read_landmarks_table(tmp_path / "short.csv", 3, 2)
    (tmp_path / "twice.csv").write_text("id,tip_x,tip_y,tip_z,notch_x,notch_y,notch_z\na,1,2,3,4,5,6\n")
    with pytest.raises(DataError, match=r"twice.csv, row 1 \(header\): names 3D coordinates \(tip_x, tip_y, tip_z\)"):
        read_landmarks_table(tmp_path / "twice.csv", None, 2)
    three = ["scn-convert", "--dataset", "landmarks", "--from", "csv", "--input", str(tmp_path / "twice.csv")]
    assert convert.run([*three, "--landmark_units", "mm", "--output_dir", str(tmp_path / "d3")]) == 0
    assert json.loads((tmp_path / "d3" / "data.json").read_text())["data"]["ndim"] == 3  # from the header
    duplicated = [*three, "--landmark_units", "mm", "--landmark_names", "tip,tip", "--output_dir", str(tmp_path / "e")]
    assert convert.run(duplicated) == 1 and not (tmp_path / "e").exists()
    absent = [*three[:-1], str(tmp_path / "nope.csv"), "--landmark_units", "mm", "--output_dir", str(tmp_path / "n")]
    assert convert.run(absent) == 1  # an error naming the file, no traceback
    out = tmp_path / "data"
    arguments = ["scn-convert", "--dataset", "landmarks", "--from", "csv", "--input", str(tmp_path / "h.csv")]
    assert convert.run([*arguments, "--output_dir", str(out)]) == 1  # units needed
    status = convert.run(
        [*arguments, "--landmark_units", "pixel", "--landmark_names", "corner,tip,notch", "--output_dir", str(out)]
    )
    assert status == 0
    converted = read_landmarks_table(out / "landmarks.csv", 3, 2)
    assert converted.names is None  # the annotation CSV has no header
    np.testing.assert_array_equal(converted.landmarks["a"], landmarks["a"][[2, 0, 1]])
    assert json.loads((out / "data.json").read_text())["data"]["landmark_names"] == ["corner", "tip", "notch"]


def test_predictor_averages_an_ensembles_heatmaps():
    from scn_tf.inference import Predictor

    data = DataConfig(ndim=2, num_landmarks=2, image_size=[8, 8])
    ones = lambda batch: np.ones((*batch.shape[:-1], 2), np.float32)  # noqa: E731
    threes = lambda batch: np.full((*batch.shape[:-1], 2), 3.0, np.float32)  # noqa: E731
    np.testing.assert_array_equal(Predictor([ones, threes], data).heatmaps(np.zeros((8, 8))), 2.0)


@pytest.mark.slow
def test_predict_formats_and_ensemble(tmp_path, monkeypatch):
    """scn-predict --format slicer|coco|csv give the CSV's landmarks in LPS mm and in pixel indices; an
    ensemble of a model with itself predicts as the model and says what it is; differing data configurations
    are refused, naming the key."""
    from scn_tf.cli import predict

    run = write_untrained_model(tmp_path)
    images = [str(tmp_path / "data" / "images" / f"{i}.mha") for i in ("a", "c")]
    monkeypatch.chdir(tmp_path)
    assert predict.run(["scn-predict", "--model_dir", str(run), "--output", "p.csv", *images]) == 0
    plain = read_landmarks_table(tmp_path / "p.csv", 3, 2)
    assert plain.names is None
    status = predict.run(["scn-predict", "--model_dir", str(run), "--output", "s.csv", "--format", "slicer", *images])
    assert status == 0
    np.testing.assert_allclose(read_slicer_table(tmp_path / "s").landmarks["a"], plain.landmarks["a"], atol=1e-3)
    assert read_slicer(tmp_path / "s" / "a.mrk.json").labels == [f"landmark_{k}" for k in range(3)]
    assert predict.run(["scn-predict", "--model_dir", str(run), "--output", "k.csv", "--format", "coco", *images]) == 0
    image = sitk.ReadImage(images[0])
    coco = read_coco_table(tmp_path / "k.coco.json")
    np.testing.assert_allclose(coco.landmarks["a"], physical_to_pixel(image, plain.landmarks["a"]), atol=1e-3)
    assert predict.run(["scn-predict", "--model_dir", str(run), "--output", "h.csv", "--format", "csv", *images]) == 0
    headed = read_landmarks_table(tmp_path / "h.csv", 3, 2)
    assert headed.names == [f"landmark_{k}" for k in range(3)]
    np.testing.assert_array_equal(headed.landmarks["c"], plain.landmarks["c"])

    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    status = predict.run(["scn-predict", "--model_dir", f"{run},{twin}", "--output", "e.csv", *images])
    assert status == 0
    ensemble = read_landmarks_table(tmp_path / "e.csv", 3, 2).landmarks
    np.testing.assert_allclose(ensemble["a"], plain.landmarks["a"], atol=1e-6)
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["method"] == "ensemble of 2 models (SCN, SCN)" and summary["models"] == [str(run), str(twin)]
    assert not summary["calibrated"] and "does not apply to an ensemble" in summary["confidence_meaning"]
    assert summary["images"]["a"]["confidence_fraction"] is None
    from scn_tf.confidence import ConfidenceReference, write_reference

    write_reference(run, ConfidenceReference(["a"], np.ones((1, 3))))
    assert predict.run(["scn-predict", "--model_dir", f" {run},", "--output", "r.csv", *images]) == 0
    single = json.loads((tmp_path / "r.json").read_text())
    assert "ensemble" not in single["method"] and single["images"]["a"]["confidence_fraction"] is not None
    config = json.loads((twin / "config.json").read_text())
    config["data"]["intensity_scale"] = 0.5
    (twin / "config.json").write_text(json.dumps(config))
    status = predict.run(["scn-predict", "--model_dir", f"{run},{twin}", "--output", "f.csv", *images])
    assert status == 1 and not (tmp_path / "f.csv").exists()


def test_malformed_slicer_control_points_are_data_errors(tmp_path):
    for control in (None, 3, [[1.0, 2.0, 3.0]]):
        path = tmp_path / "bad.mrk.json"
        path.write_text(json.dumps({"markups": [{"type": "Fiducial", "controlPoints": control}]}))
        if control is None:
            assert read_slicer(path).labels == []
            continue
        with pytest.raises(DataError, match=r"bad\.mrk\.json: controlPoints is not a list of points"):
            read_slicer(path)


def test_single_slice_volume_keeps_its_slice_position_in_slicer_points(tmp_path):
    """A 16x16x1 volume, read as a 2D image, with origin z 37.5: index (3, 4) lies at (11.5, 22, 37.5) mm in the
    file, as Slicer shows it, not at z 0."""
    from scn_tf.data.io import file_physical_points, read_image

    volume = sitk.Image([16, 16, 1], sitk.sitkFloat32)
    volume.SetOrigin([10.0, 20.0, 37.5])
    volume.SetSpacing([0.5, 0.5, 2.0])
    sitk.WriteImage(volume, str(tmp_path / "slice.mha"))
    image = read_image(tmp_path / "slice.mha", 2)
    assert image.GetDimension() == 2
    points = file_physical_points(tmp_path / "slice.mha", image, np.array([[3.0, 4.0], [np.nan, np.nan]]))
    np.testing.assert_allclose(points[0], [11.5, 22.0, 37.5])
    assert np.isnan(points[1]).all()
    flat = sitk.Image([16, 16], sitk.sitkFloat32)
    flat.SetOrigin([10.0, 20.0])
    sitk.WriteImage(flat, str(tmp_path / "flat.mha"))
    np.testing.assert_allclose(
        file_physical_points(tmp_path / "flat.mha", read_image(tmp_path / "flat.mha", 2), np.array([[3.0, 4.0]])),
        [[13.0, 24.0]],
    )
