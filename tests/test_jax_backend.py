"""Training under Keras' JAX backend against the TensorFlow loop: one step, a 50-step run, exact resume,
portable model folders, and the commands on a machine without TensorFlow."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jax_backend_runs as runs

pytest.importorskip("jax", reason="the JAX backend's tests need jax (the test extra installs it)")

# Every test here starts a process that imports JAX and trains.
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


def jax_env() -> dict:
    return {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(HERE)}


def run_jax(mode: str, weights, tmp_path: Path) -> dict:
    out = tmp_path / f"jax_{mode}.npz"
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "jax_backend_runs.py"),
            mode,
            str(weights),
            str(out),
            str(tmp_path / f"jax_{mode}"),
        ],
        env=jax_env(),
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as archive:
        values = dict(archive)
    assert not values.pop("tensorflow_imported")
    return values


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b||, where differences below 1e-8 (float32 round-off of values that are zero in exact
    arithmetic, as the gradient of a bias that a following normalisation cancels) count as none."""
    difference = float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
    return 0.0 if difference <= 1e-8 else difference / float(np.linalg.norm(np.asarray(b, np.float64)))


def initial_weights(tmp_path: Path) -> Path:
    """The tiny SCN's initial weights, drawn once here (initialisers draw differently per backend)."""
    import keras

    keras.utils.set_random_seed(3)
    model = runs.tiny_model()
    model(np.zeros((1, runs.SIZE, runs.SIZE, 1), np.float32))
    path = tmp_path / "initial.weights.h5"
    model.save_weights(path)
    return path


def test_one_step_agrees_with_tensorflow(tmp_path):
    weights = initial_weights(tmp_path)
    expected = runs.one_step(runs.trainer_from(str(weights), runs.STEP, str(tmp_path / "tf")))
    got = run_jax("step", weights, tmp_path)
    assert sorted(got) == sorted(expected)
    momentum = [name for name in expected if name.startswith("optimizer/") and "momentum" in name]
    assert len(momentum) == len([name for name in expected if name.startswith("weight/")]) + 1  # and the sigmas'
    for name, value in expected.items():
        if name.endswith("/iteration"):
            assert int(got[name]) == int(value) == 1
            continue
        # after one step from zero momentum each momentum slot is -learning_rate x the gradient
        assert relative(got[name], value) <= 1e-4, (name, relative(got[name], value))
    assert float(expected["term/loss"]) > 0 and np.abs(expected[momentum[0]]).max() > 0


def test_fifty_sgd_steps_agree_with_tensorflow(tmp_path):
    weights = initial_weights(tmp_path)
    trainer = runs.trainer_from(str(weights), runs.FIT, str(tmp_path / "tf"))
    trainer.fit(runs.stream)
    expected = {**runs.state(trainer), "landmarks": runs.landmarks(trainer.model, runs.test_images())}
    got = run_jax("fit", weights, tmp_path)
    for name, value in expected.items():
        if name != "landmarks":
            assert relative(got[name], value) <= 1e-3, (name, relative(got[name], value))
    np.testing.assert_allclose(got["landmarks"], expected["landmarks"], atol=0.05)
    with np.load(tmp_path / "jax_fit" / "checkpoints" / "ckpt-50.npz") as checkpoint:
        assert int(checkpoint["step"]) == 50
    assert (tmp_path / "jax_fit" / "last.weights.h5").exists()
    assert json.loads((tmp_path / "jax_fit" / "sigmas.json").read_text())["step"] == 50
    assert list((tmp_path / "jax_fit" / "logs").glob("events.out.tfevents.*"))


def test_resume_under_jax_is_exact_and_tensorflow_refuses_its_checkpoints(tmp_path):
    got = run_jax("resume", "-", tmp_path)
    straight = {k[len("straight/") :]: v for k, v in got.items() if k.startswith("straight/")}
    resumed = {k[len("resumed/") :]: v for k, v in got.items() if k.startswith("resumed/")}
    assert sorted(straight) == sorted(resumed) and int(got["traces"]) == 1
    for name, value in straight.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    trainer = runs.trainer_from(None, runs.RESUME, str(tmp_path / "jax_resume" / "resumed"))
    with pytest.raises(
        ValueError, match=r"holds JAX checkpoints .* uses the TensorFlow backend: resume it with KERAS_BACKEND=jax"
    ):
        trainer.fit(runs.stream)


def test_mixed_precision_under_jax_keeps_the_dynamic_loss_scale(tmp_path):
    got = run_jax("mixed", "-", tmp_path)
    assert str(got["output_dtype"]) == "float16" and got["sigmas"].dtype == np.float32
    # float16 gradients overflow at the initial scale 2**15 now and then: the scale halves, the step is
    # skipped and not counted as non-finite
    scale = float(got["loss_scale"])
    assert 1.0 <= scale <= 2.0**15 and np.log2(scale) == int(np.log2(scale)) and int(got["nonfinite_steps"]) == 0
    assert all(np.all(np.isfinite(v)) for k, v in got.items() if k.startswith("weight/"))
    assert float(got["last_loss"]) < float(got["first_loss"])


WITHOUT_TENSORFLOW = (
    "import sys; sys.modules['tensorflow'] = None; from scn_tf.cli.{module} import run; "
    "sys.argv[0] = 'scn-{module}'; sys.exit(run())"
)


def command_without_tensorflow(module: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """`KERAS_BACKEND=jax scn-<module> ARGS` on a machine where TensorFlow cannot be imported."""
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW.format(module=module), *map(str, args)],
        env=jax_env(),
        cwd=cwd,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )


def write_png_dataset(root: Path, ids=("a", "b", "c", "d"), size=(48, 40)) -> None:
    """8-bit PNG images with a bright and a dark blob, landmarks in pixels."""
    import SimpleITK as sitk

    (root / "images").mkdir(parents=True)
    rows = []
    for index, image_id in enumerate(ids):
        rng = np.random.default_rng(index)
        points = rng.uniform(8, np.array(size) - 8, size=(2, 2))
        y, x = np.mgrid[: size[1], : size[0]]
        array = np.full(size[::-1], 128.0)
        for sign, (px, py) in zip((1, -1), points, strict=True):
            array += sign * 100 * np.exp(-((x - px) ** 2 + (y - py) ** 2) / 8.0)
        sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.uint8)), str(root / "images" / f"{image_id}.png"))
        rows.append(",".join([image_id, *(f"{v:.3f}" for v in points.ravel())]))
    (root / "landmarks.csv").write_text("\n".join(rows) + "\n")
    (root / "train.txt").write_text("\n".join(ids[:-1]) + "\n")
    (root / "test.txt").write_text(ids[-1] + "\n")


def read_rows(path: Path) -> dict[str, np.ndarray]:
    rows = [line.split(",") for line in path.read_text().splitlines() if line]
    return {row[0]: np.array([float(v) for v in row[1:]]) for row in rows}


def test_scn_train_without_tensorflow_writes_a_folder_that_tensorflow_predicts_from(tmp_path):
    from scn_tf.cli import predict

    write_png_dataset(tmp_path / "data")
    (tmp_path / "small.json").write_text(
        json.dumps({"network": {"filters": 4, "levels": 2, "spatial_kernel_size": 3, "spatial_downsampling": 4}})
    )
    arguments = ["--preset", "cpu2d", "--config", "small.json", "--data_dir", "data", "--train_ids", "train.txt"]
    arguments += ["--test_ids", "test.txt", "--iterations", "6", "--image_size", "32,32", "--workers", "2"]
    result = command_without_tensorflow("train", *arguments, "--output_dir", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    for name in ("config.json", "last.weights.h5", "sigmas.json", "confidence.json", "predictions.csv"):
        assert (run / name).exists(), name
    for name in ("metrics.json", "per_landmark.csv", "summary.txt", "cumulative_ipe.png"):
        assert (run / name).exists(), name
    assert (run / "checkpoints" / "ckpt-6.npz").exists() and not list((run / "checkpoints").glob("*.index"))
    assert list((run / "logs").glob("events.out.tfevents.*"))
    # the same commands refuse what needs TensorFlow, before writing anything
    refused = command_without_tensorflow(
        "train", *arguments, "--strategy", "mirrored", "--output_dir", "r2", cwd=tmp_path
    )
    assert refused.returncode == 1 and "--strategy mirrored is TensorFlow's" in refused.stderr
    refused = command_without_tensorflow("train", *arguments, "--xla", "--output_dir", "r3", cwd=tmp_path)
    assert refused.returncode == 1 and "always compiled with XLA" in refused.stderr
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()
    # scn-predict and scn-evaluate under JAX, then scn-predict under TensorFlow from the same folder
    image = tmp_path / "data" / "images" / "d.png"
    result = command_without_tensorflow("predict", "--model_dir", run, "--output", "jax.csv", image, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    result = command_without_tensorflow(
        "evaluate",
        "--predictions",
        "jax.csv",
        "--ground_truth",
        "data/landmarks.csv",
        "--model_dir",
        run,
        "--ids",
        "data/test.txt",
        "--output_dir",
        "evaluation",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "evaluation" / "metrics.json").exists()
    assert predict.run(["scn-predict", "--model_dir", str(run), "--output", str(tmp_path / "tf.csv"), str(image)]) == 0
    trained = read_rows(run / "predictions.csv")["d"]
    np.testing.assert_allclose(read_rows(tmp_path / "jax.csv")["d"], trained, atol=1e-6)
    np.testing.assert_allclose(read_rows(tmp_path / "tf.csv")["d"], trained, atol=0.01)  # pixels
