"""Calibrated error radii, presence and test-time augmentation: conformal arithmetic against hand-computed
values and its coverage guarantee by simulation, crops that keep landmarks on their anatomy, shifts that
undo themselves, and the commands end to end on a tiny model."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import write_dataset
from scn_tf import calibration
from scn_tf.data import cropping
from scn_tf.data.io import physical_to_pixel, pixel_to_physical


def test_minimum_count_and_conformal_radius_by_hand():
    assert [calibration.minimum_count(c) for c in (0.8, 0.9, 0.95)] == [4, 9, 19]
    errors = np.arange(1.0, 10.0)  # 1..9: k = ceil(10 * 0.9) = 9
    assert calibration.conformal_radius(errors, 0.9) == 9.0
    assert calibration.conformal_radius(errors, 0.8) == 8.0  # k = ceil(10 * 0.8) = 8
    assert calibration.conformal_radius(errors[:8], 0.9) == math.inf  # 8 < minimum_count
    assert calibration.conformal_radius(np.append(errors, np.nan), 0.9) == 9.0  # NaN: not annotated
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            calibration.check_coverage(bad)


def test_radii_pool_over_landmarks_when_a_landmark_has_too_few_errors():
    errors = np.tile(np.arange(1.0, 21.0)[:, None], (1, 2))
    errors[5:, 1] = np.nan  # landmark 1: 5 errors, fewer than 9
    peaks = np.ones_like(errors)
    first = calibration.landmark_radii(errors, peaks, 0, 0.9)
    second = calibration.landmark_radii(errors, peaks, 1, 0.9)
    assert first.basis == ["landmark"] and first.radii == [19.0]  # k = ceil(21 * 0.9) = 19
    pooled = calibration.conformal_radius(errors[np.isfinite(errors)], 0.9)
    assert second.basis == ["all landmarks"] and second.radii == [pooled] and math.isfinite(pooled)


def test_confidence_bins_are_used_where_they_sharpen_the_radii(rng):
    peaks = rng.uniform(0.0, 1.0, (200, 2))
    errors = np.stack(
        [np.where(peaks[:, 0] > np.median(peaks[:, 0]), 1.0, 10.0) * rng.uniform(0.5, 1, 200), rng.uniform(0, 10, 200)],
        axis=1,
    )
    informative = calibration.landmark_radii(errors, peaks, 0, 0.9)
    assert informative.basis == ["bin", "bin"] and informative.radii[1] < informative.radii[0]
    assert informative.radius(0.99) == informative.radii[1] and informative.radius(0.01) == informative.radii[0]
    assert calibration.landmark_radii(errors, peaks, 1, 0.9).basis in (["landmark"], ["bin", "bin"])


@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_split_conformal_coverage_holds_by_simulation(coverage):
    """Over many draws of 30 calibration and 200 test errors of one distribution, the observed coverage is at
    least nominal and at most nominal + 1 / (n + 1), as split-conformal theory says."""
    rng = np.random.default_rng(1)
    observed = []
    for _ in range(400):
        calibration_errors, test_errors = rng.gamma(2.0, 1.0, 30), rng.gamma(2.0, 1.0, 200)
        observed.append(np.mean(test_errors <= calibration.conformal_radius(calibration_errors, coverage)))
    assert coverage - 0.01 <= np.mean(observed) <= coverage + 1 / 31 + 0.01


def test_best_threshold_separates_two_groups():
    threshold, accuracy = calibration.best_threshold(np.array([0.8, 0.9, 1.1]), np.array([0.1, 0.2, 0.3]))
    assert accuracy == 1.0 and 0.3 < threshold <= 0.8
    _, mixed = calibration.best_threshold(np.array([0.2, 0.9]), np.array([0.5, 0.1]))
    assert mixed == pytest.approx(0.75)


def test_calibration_round_trips_through_json():
    errors = np.array([[1.0, np.nan], [2.0, 3.0]])
    original = calibration.Calibration(["a", "b"], errors, np.ones((2, 2)), "px", "last", 0.4, {"images": 2})
    restored = calibration.Calibration.from_dict(json.loads(json.dumps(original.to_dict())))
    assert np.array_equal(restored.errors, errors, equal_nan=True) and restored.present_threshold == 0.4
    assert restored.to_dict()["levels"]["0.9"]["basis"] == [["all landmarks"], ["all landmarks"]]
    assert restored.present(np.array([0.5, 0.1])).tolist() == [True, False]


def test_crop_keeps_landmarks_on_their_anatomy(rng):
    """A bright pixel at each landmark stays under its (kept) landmark in the cropped image; cut-off ones are
    NaN and the physical space is unchanged."""
    array = np.zeros((40, 60), np.float32)
    indices = np.array([[5, 5], [50, 30], [30, 20], [10, 35]])
    array[indices[:, 1], indices[:, 0]] = 100.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.7))
    image.SetOrigin((3.0, -2.0))
    points = pixel_to_physical(image, indices.astype(float))
    cropped, kept, region = cropping.crop_out_landmarks(image, points, cropping.crop_rng(3, "x"), (1, 2))
    inside = np.all(np.isfinite(kept), axis=1)
    assert 1 <= (~inside).sum() <= 2
    kept_indices = np.rint(physical_to_pixel(cropped, kept[inside])).astype(int)
    values = sitk.GetArrayFromImage(cropped)[kept_indices[:, 1], kept_indices[:, 0]]
    assert np.all(values == 100.0)
    assert np.allclose(cropped.GetOrigin(), pixel_to_physical(image, region[:, 0][None].astype(float))[0])
    again = cropping.crop_out_landmarks(image, points, cropping.crop_rng(3, "x"), (1, 2))[2]
    assert np.array_equal(again, region)  # seeded by (seed, id)


def test_tta_shifts_undo_themselves():
    """Reading an image on shifted grids and shifting the heatmaps back gives the image's own reading: with a
    model that returns its input, the TTA mean equals the plain prediction away from the borders."""
    from scn_tf.configs import DataConfig
    from scn_tf.inference import Predictor, shift_back, tta_shifts

    heatmap = np.arange(20.0).reshape(4, 5, 1)
    assert shift_back(heatmap, np.array([1, 0]))[:, 1:, 0].tolist() == heatmap[:, :-1, 0].tolist()
    assert shift_back(heatmap, np.array([0, -1]))[:3, :, 0].tolist() == heatmap[1:, :, 0].tolist()
    shifts = tta_shifts(6, 2, seed=0)
    assert len({tuple(s) for s in shifts}) == 6 and all(np.abs(s).max() <= 3 and s.any() for s in shifts)
    with pytest.raises(ValueError, match="at most 48"):
        tta_shifts(49, 2)

    y, x = np.mgrid[:48, :48]
    image = sitk.GetImageFromArray(np.exp(-((x - 20.3) ** 2 + (y - 26.6) ** 2) / 18.0).astype(np.float32))
    data = DataConfig(ndim=2, num_landmarks=1, image_size=[48, 48], spacing=[1.0, 1.0], intensity_scale=1.0)
    plain = Predictor(lambda batch: batch, data).predict_prepared(image)
    averaged = Predictor(lambda batch: batch, data, tta=6).predict_prepared(image)
    assert np.allclose(averaged.indices, plain.indices, atol=1e-6)
    assert np.allclose(plain.indices, [[20.3, 26.6]], atol=0.05)


@pytest.mark.slow
def test_calibrated_model_predicts_radii_presence_and_circles(tmp_path, monkeypatch, caplog):
    """scn-train --calibration_fraction writes calibration.json; scn-predict then gives coverage, a finite
    error_radius and present per landmark and draws circles; without the file it says so; bad inputs to
    scn-calibrate and scn-predict end with exit 1 and nothing written."""
    from scn_tf.cli import calibrate, crop, predict, train

    ids = [f"i{k}" for k in range(12)]
    write_dataset(tmp_path / "data", ids=ids)
    (tmp_path / "data" / "train.txt").write_text("\n".join(ids[:10]) + "\n")
    (tmp_path / "data" / "rest.txt").write_text("\n".join(ids[10:]) + "\n")
    overrides = {
        "data": {"num_landmarks": 3, "image_suffix": ".mha", "landmark_units": "mm", "intensity_scale": 0.01},
        "network": {"levels": 2, "spatial_kernel_size": 3, "spatial_downsampling": 4},
        "augmentation": {"absent_fraction": 0.5},
    }
    (tmp_path / "data.json").write_text(json.dumps(overrides))
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    common = ["--preset", "cpu2d", "--config", "data.json", "--data_dir", "data", "--iterations", "3"]
    common += ["--filters", "4", "--image_size", "32,32", "--workers", "1"]
    status = train.run(
        ["scn-train", *common, "--train_ids", "train.txt", "--calibration_fraction", "0.5", "--output_dir", "run"]
    )
    assert status == 0
    held_out = (tmp_path / "run" / "calibration_ids.txt").read_text().split()
    assert len(held_out) == 5 and set(held_out) <= set(ids[:10])
    trained = json.loads((tmp_path / "run" / "confidence.json").read_text())["image_ids"]
    assert not set(held_out) & set(trained)
    stored = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert stored["units"] == "mm" and stored["levels"]["0.9"]["basis"][0] == ["all landmarks"]  # 5 < 9 errors

    images = [str(tmp_path / "data" / "images" / f"{i}.mha") for i in ids[10:]]
    assert (
        predict.run(
            [
                "scn-predict",
                "--model_dir",
                "run",
                "--output",
                "p.csv",
                "--overlay_dir",
                "ov",
                "--coverage",
                "0.8",
                *images,
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["calibrated"] and result["coverage"] == 0.8
    for entry in result["images"].values():
        assert len(entry["error_radius"]) == 3 and all(math.isfinite(r) for r in entry["error_radius"])
        assert len(entry["present"]) == 3
    assert (tmp_path / "ov" / "i10.png").exists()

    (tmp_path / "run" / "calibration.json").rename(tmp_path / "calibration.json")
    assert predict.run(["scn-predict", "--model_dir", "run", "--output", "q.csv", "--tta", "2", *images]) == 0
    plain = json.loads((tmp_path / "q.json").read_text())
    assert (
        not plain["calibrated"] and plain["coverage"] is None and "no calibration.json" in plain["calibration_meaning"]
    )
    assert plain["images"]["i10"]["error_radius"] is None and plain["tta"] == 2

    assert calibrate.run(["scn-calibrate", "--model_dir", "run", "--data_dir", "data", "--ids", "rest.txt"]) == 0
    assert (tmp_path / "run" / "calibration.json").exists()
    caplog.clear()
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    (tmp_path / "data" / "empty.txt").write_text("i11\n")
    (tmp_path / "data" / "one.txt").write_text("i10\n")
    rows = (tmp_path / "data" / "landmarks.csv").read_text().splitlines()
    rows = [row if not row.startswith("i11,") else "i11," + ",".join(["NaN"] * 6) for row in rows]
    (tmp_path / "data" / "landmarks.csv").write_text("\n".join(rows) + "\n")
    failures = {
        "are training images": ["--ids", "train.txt", "--overwrite"],
        "no annotated landmark": ["--ids", "empty.txt", "--overwrite"],
        "exists": ["--ids", "one.txt"],
        "MIN <= MAX": ["--ids", "one.txt", "--crop_outside", "2,1", "--overwrite"],
    }
    for expected, flags in failures.items():
        assert calibrate.run(["scn-calibrate", "--model_dir", "run", "--data_dir", "data", *flags]) == 1
        assert expected in caplog.text
        caplog.clear()
    assert calibrate.run(["scn-calibrate", "--model_dir", "data", "--data_dir", "data", "--ids", "one.txt"]) == 1
    (tmp_path / "run" / "last.weights.h5").rename(tmp_path / "w.h5")
    assert (
        calibrate.run(["scn-calibrate", "--model_dir", "run", "--data_dir", "data", "--ids", "one.txt", "--overwrite"])
        == 1
    )
    assert "no last.weights.h5" in caplog.text
    (tmp_path / "w.h5").rename(tmp_path / "run" / "last.weights.h5")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
    assert predict.run(["scn-predict", "--model_dir", "run", "--output", "r.csv", "--coverage", "1.5", *images]) == 1
    assert not (tmp_path / "r.csv").exists() and "strictly between 0 and 1" in caplog.text

    assert (
        crop.run(
            [
                "scn-crop",
                "--model_dir",
                "run",
                "--data_dir",
                "data",
                "--ids",
                "train.txt",
                "--seed",
                "2",
                "--outside",
                "1,1",
                "--output_dir",
                "cropped",
            ]
        )
        == 0
    )
    regions = json.loads((tmp_path / "cropped" / "crops.json").read_text())["images"]
    assert all(len(entry["cut_off"]) == 1 for entry in regions.values())
    assert (
        crop.run(
            ["scn-crop", "--model_dir", "run", "--data_dir", "data", "--ids", "train.txt", "--output_dir", "cropped"]
        )
        == 1
    )  # exists, no --overwrite


def test_overlay_draws_error_radii_in_physical_proportion(tmp_path):
    """A radius of 4 x-pixels on 0.5 x 1.0 mm pixels is 2 mm: 8 pixels wide, 4 pixels high; none for an
    absent (NaN) landmark; the title says what the circles are."""
    from matplotlib.patches import Ellipse

    from scn_tf.visualization import save_overlay

    figure = save_overlay(
        tmp_path / "o.png",
        np.zeros((20, 30)),
        (0.5, 1.0),
        predicted=np.array([[10.0, 5.0], [np.nan, np.nan]]),
        radii=np.array([4.0, 3.0]),
        radius_label="90% error radius (calibrated)",
    )
    circles = [patch for patch in figure.axes[0].patches if isinstance(patch, Ellipse)]
    assert len(circles) == 1 and (circles[0].width, circles[0].height) == (8.0, 4.0)
    assert figure.axes[0].get_xlim() == (-0.5, 29.5)
    assert "circles: 90% error radius" in figure.texts[0].get_text()
