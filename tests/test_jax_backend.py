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
        [sys.executable, str(HERE / "jax_backend_runs.py"), mode, str(weights), str(out), str(tmp_path / f"jax_{mode}")],
        env=jax_env(),
        capture_output=True,
        text=True,
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
    with pytest.raises(ValueError, match=r"holds JAX checkpoints .* uses the TensorFlow backend: resume it with KERAS_BACKEND=jax"):
        trainer.fit(runs.stream)
