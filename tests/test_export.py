"""scn-export and examples/onnx_predict.py: the exported network's heatmaps equal the Keras model's, and the
predictor without TensorFlow, Keras or scn_tf gives scn-predict's landmarks, on a tiny 2D model (header
frame, mm, fixed intensities, a calibration that reports a landmark absent) and a tiny 3D one (rotated
header, windows along z, smoothing, histogram matching, pixel units); bad input ends with nothing written."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import onnxruntime
import pytest
import SimpleITK as sitk

from conftest import write_untrained_model
from scn_tf.calibration import CALIBRATION_FILE, Calibration
from scn_tf.cli import export, predict
from scn_tf.configs import AugmentationConfig, DataConfig, ExperimentConfig, NetworkConfig, TrainingConfig
from scn_tf.data.preprocessing import foreground_quantiles, smooth
from scn_tf.files import write_json_atomic
from scn_tf.model_dir import load_model_dir, write_model_files
from scn_tf.models import build_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "onnx_predict.py"
HEATMAP_TOLERANCE = 1e-4  # of the heatmaps' maximum
LANDMARK_TOLERANCE = 0.05  # source pixels


def write_volumes(root: Path, ids=("u", "v")) -> list[Path]:
    """3D .mha volumes with a rotated direction and an origin, a bright and a dark blob each."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    size, spacing = np.array([20, 18, 40]), np.array([1.2, 1.0, 1.5])
    angle = 0.4
    direction = [np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1]
    z, y, x = np.mgrid[: size[2], : size[1], : size[0]]
    paths = []
    for image_id in ids:
        array = rng.normal(10.0, 2.0, size[::-1]).astype(np.float32)
        for sign in (1, -1):
            centre = rng.uniform(0.25, 0.75, 3) * size
            array += sign * 50 * np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) / 8.0)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing.tolist())
        image.SetDirection(direction)
        image.SetOrigin([5.0, -10.0, 20.0])
        paths.append(root / "images" / f"{image_id}.mha")
        sitk.WriteImage(image, str(paths[-1]))
    return paths


def write_untrained_3d_model(root: Path) -> Path:
    """A model folder `root`/run3d: a 4-filter 3D SCN (untrained, seed 0) on 16^3 windows at 2 mm, volumes
    smoothed and histogram-matched, landmarks in pixels."""
    paths = write_volumes(root / "data3d")
    data = DataConfig(
        ndim=3,
        num_landmarks=2,
        image_suffix=".mha",
        landmark_units="pixel",
        image_size=[16, 16, 16],
        spacing=[2.0, 2.0, 2.0],
        window_step=8,
        smoothing_sigma=1.0,
        normalization="histogram_matching",
        histogram_reference="u",
        intensity_shift=-10.0,
        intensity_scale=0.05,
        intensity_clamp=[-1.0, 2.0],
    )
    network = NetworkConfig(filters=4, levels=2, spatial_kernel_size=3, spatial_downsampling=4)
    config = ExperimentConfig(data, AugmentationConfig(), network, TrainingConfig())
    reference = sitk.ReadImage(str(paths[0]), sitk.sitkFloat32)
    quantiles = foreground_quantiles(sitk.GetArrayFromImage(smooth(reference, data.smoothing_sigma)))
    keras.utils.set_random_seed(0)
    model = build_model(config.network, config.data)
    model(np.zeros((1, 16, 16, 16, 1), np.float32))
    run = root / "run3d"
    write_model_files(run, config, quantiles)
    model.save_weights(run / "last.weights.h5")
    write_json_atomic(run / "sigmas.json", {"step": 0, "sigmas": [2.0, 2.5]})
    return run


def calibrate_first_landmark_absent(run: Path) -> None:
    """A calibration.json whose presence threshold reports landmark 0 absent and the others present."""
    peaks = np.array([[1.0, 1e-30, 1e-30]] * 3)
    calibrated = Calibration(["a", "b", "c"], np.ones((3, 3)), peaks, "mm", present_threshold=0.5)
    write_json_atomic(run / CALIBRATION_FILE, calibrated.to_dict())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"2d" | "3d": (model folder, its ONNX export folder, the input images)}."""
    root = tmp_path_factory.mktemp("export")
    run2d = write_untrained_model(root)
    calibrate_first_landmark_absent(run2d)
    run3d = write_untrained_3d_model(root)
    result = {}
    for name, run, images in (
        ("2d", run2d, sorted((root / "data" / "images").glob("*.mha"))),
        ("3d", run3d, sorted((root / "data3d" / "images").glob("*.mha"))),
    ):
        out = root / f"onnx{name}"
        assert export.run(["scn-export", "--model_dir", str(run), "--output_dir", str(out)]) == 0
        result[name] = (run, out, images)
    return result


@pytest.mark.parametrize("name", ["2d", "3d"])
def test_exported_heatmaps_equal_the_keras_models(models, name):
    run, out, _ = models[name]
    config, model, _, _ = load_model_dir(run)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).normal(size=(2, *reversed(config.data.image_size), 1)).astype(np.float32)
    expected = np.asarray(model.predict_on_batch(image))
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": image}), strict=True))
    assert sorted(outputs) == (["coordinates", "heatmaps", "peaks"] if name == "2d" else ["heatmaps"])
    assert np.abs(outputs["heatmaps"] - expected).max() <= HEATMAP_TOLERANCE * np.abs(expected).max()
    if name == "2d":
        assert np.allclose(outputs["peaks"], expected.reshape(2, -1, 3).max(axis=1), rtol=1e-4)


@pytest.mark.parametrize("name", ["2d", "3d"])
def test_onnx_predict_gives_scn_predicts_landmarks(models, name, tmp_path):
    run, out, images = models[name]
    csv = tmp_path / "p.csv"
    assert predict.run(["scn-predict", "--model_dir", str(run), "--output", str(csv), *map(str, images)]) == 0
    expected = {row.split(",")[0]: np.array(row.split(",")[1:], float) for row in csv.read_text().splitlines()}
    # the example runs in a fresh interpreter, which then must not have imported TensorFlow, Keras or scn_tf
    script = (
        "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
        "assert not {'tensorflow', 'keras', 'scn_tf'} & set(sys.modules), 'imported a forbidden module'"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(EXAMPLE), str(out), *map(str, images)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    assert [row.split(",")[0] for row in rows] == list(expected)
    settings = json.loads((out / "preprocessing.json").read_text())
    for row in rows:
        image_id, values = row.split(",")[0], np.array(row.split(",")[1:], float)
        assert np.array_equal(np.isnan(values), np.isnan(expected[image_id]))
        spacing = 1.0 if settings["landmarks"]["units"] == "pixel" else min(sitk.ReadImage(images[0]).GetSpacing())
        difference = np.nan_to_num(np.abs(values - expected[image_id])) / spacing
        assert difference.max() < LANDMARK_TOLERANCE, (image_id, difference.max())
    if name == "2d":  # the calibration's presence threshold: landmark 0 absent, the others present
        assert all(np.isnan(v[:2]).all() and np.isfinite(v[2:]).all() for v in expected.values())


def test_preprocessing_json_holds_what_a_predictor_needs(models):
    settings = {name: json.loads((out / "preprocessing.json").read_text()) for name, (_, out, _) in models.items()}
    two, three = settings["2d"], settings["3d"]
    assert two["format"] == "onnx" and two["model"] == "model.onnx" and two["input"]["shape"] == [None, 32, 32, 1]
    assert two["network_grid"]["spacing"] is None and two["windows"] is None and two["histogram_quantiles"] is None
    assert two["calibration"]["present_threshold"] == 0.5 and two["present_min_peak"][0] == pytest.approx(0.5)
    assert three["windows"] == {"length": 16, "step": 8, "merge": "maximum"} and three["outputs"] == ["heatmaps"]
    assert three["smoothing_sigma_mm"] == 1.0 and len(three["histogram_quantiles"]) == 64
    assert three["landmarks"]["units"] == "pixel" and three["calibration"] is None and three["present_min_peak"] is None


def test_saved_model_export_gives_the_keras_heatmaps(models, tmp_path):
    import tensorflow as tf

    run, _, _ = models["2d"]
    out = tmp_path / "sm"
    assert export.run(["scn-export", "--model_dir", str(run), "--output_dir", str(out), "--format", "saved_model"]) == 0
    assert json.loads((out / "preprocessing.json").read_text())["model"] == "saved_model"
    _, model, _, _ = load_model_dir(run)
    image = np.random.default_rng(1).normal(size=(1, 32, 32, 1)).astype(np.float32)
    loaded = tf.saved_model.load(str(out / "saved_model"))  # kept: its functions need its variables
    outputs = loaded.serve(image)
    expected = np.asarray(model.predict_on_batch(image))
    assert np.abs(outputs["heatmaps"].numpy() - expected).max() <= HEATMAP_TOLERANCE * np.abs(expected).max()


def test_bad_input_ends_with_a_clear_error_and_nothing_written(models, tmp_path, caplog):
    run, _, _ = models["2d"]
    empty = tmp_path / "empty_run"
    empty.mkdir()
    (empty / "config.json").write_text((run / "config.json").read_text())
    out = tmp_path / "out"
    assert export.run(["scn-export", "--model_dir", str(empty), "--output_dir", str(out)]) == 1
    assert "no last.weights.h5" in caplog.text
    assert export.run(["scn-export", "--model_dir", str(run), "--output_dir", str(out), "--format", "tflite"]) == 1
    assert not out.exists()
    out.mkdir()
    caplog.clear()
    assert export.run(["scn-export", "--model_dir", str(run), "--output_dir", str(out)]) == 1
    assert "exists; pass --overwrite" in caplog.text
    assert not any(out.iterdir()) and sorted(p.name for p in tmp_path.iterdir()) == ["empty_run", "out"]
