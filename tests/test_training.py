"""The training loop: learning on generated blobs, one trace, exact resume, non-finite steps skipped."""

import json
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import blob_sample
from scn_tf.configs import TrainingConfig
from scn_tf.heatmaps import decode_heatmaps
from scn_tf.models import SpatialConfigurationNet
from scn_tf.runtime import dtype_policy
from scn_tf.training import LearningRate, Trainer

TINY = dict(filters=8, levels=3, spatial_kernel_size=3, spatial_downsampling=4)


def tiny_scn(dropout_rate=0.0, seed=0):
    keras.utils.set_random_seed(seed)
    return SpatialConfigurationNet(num_landmarks=2, ndim=2, dropout_rate=dropout_rate, **TINY)


def samples(count, seed):
    rng = np.random.default_rng(seed)
    return [blob_sample(rng) for _ in range(count)]


def stream(data):
    """batches(start) -> the samples from step `start` on, cycling over `data`."""

    def batches(start=0):
        step = start
        while True:
            yield tuple(tf.constant(a) for a in data[step % len(data)])
            step += 1

    return batches


def mean_error(model, data):
    errors = [
        np.linalg.norm(np.asarray(decode_heatmaps(np.asarray(model(image), np.float32))[0]) - coords, axis=-1).mean()
        for image, coords, _ in data
    ]
    return float(np.mean(errors))


def config(**overrides):
    values = dict(
        iterations=150, learning_rate=5e-5, sigma_init=2.0, weight_decay=1e-4, log_every=10, checkpoint_every=50
    )
    values.update(overrides)
    return TrainingConfig(**values)


@pytest.mark.slow
def test_short_training_learns_and_traces_once(tmp_path):
    train, test = samples(20, seed=0), samples(10, seed=1)
    model = tiny_scn()
    trainer = Trainer(model, 2, config(), tmp_path)
    trainer.build((1, 32, 32, 1))
    first_terms = trainer.train_step(*next(stream(train)()))
    error_before = mean_error(model, test)
    result = trainer.fit(stream(train)(1))
    error_after = mean_error(model, test)
    assert result["loss"] < 0.5 * float(first_terms["loss"])
    assert error_after < 0.3 * error_before and error_after < 2.0
    assert trainer.train_step.experimental_get_tracing_count() == 1
    assert not any(weight is trainer.engine.sigmas for weight in model.trainable_weights)
    assert (tmp_path / "last.weights.h5").exists()
    sigmas = json.loads((tmp_path / "sigmas.json").read_text())
    assert sigmas["step"] == 150 and np.allclose(sigmas["sigmas"], trainer.sigma_values())
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))
    # the weights file restores the trained model
    clone = tiny_scn(seed=7)
    clone(np.zeros((1, 32, 32, 1), np.float32))
    clone.load_weights(tmp_path / "last.weights.h5")
    image = test[0][0]
    np.testing.assert_allclose(np.asarray(clone(image)), np.asarray(model(image)), rtol=1e-5, atol=1e-7)


def state(trainer):
    return (
        [np.asarray(w) for w in trainer.model.weights]
        + [trainer.sigma_values()]
        + [np.asarray(v) for v in trainer.optimizer.variables]
    )


@pytest.mark.slow
def test_resume_gives_identical_state(tmp_path):
    data = samples(6, seed=2)
    settings = dict(iterations=8, checkpoint_every=4, log_every=2, learning_rate=1e-4)
    straight = Trainer(tiny_scn(), 2, config(**settings), tmp_path / "straight")
    straight.fit(stream(data))

    first = Trainer(tiny_scn(), 2, config(**{**settings, "iterations": 4}), tmp_path / "resumed")
    first.fit(stream(data))
    resumed = Trainer(tiny_scn(seed=99), 2, config(**settings), tmp_path / "resumed")
    resumed.fit(stream(data))
    assert resumed.current_step == 8
    for a, b in zip(state(straight), state(resumed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    image = data[0][0]
    np.testing.assert_allclose(
        np.asarray(straight.model(image)), np.asarray(resumed.model(image)), rtol=1e-5, atol=1e-7
    )


@pytest.mark.slow
def test_nonfinite_step_is_not_applied(tmp_path):
    data = samples(2, seed=3)
    trainer = Trainer(tiny_scn(), 2, config(), tmp_path)
    trainer.build((1, 32, 32, 1))
    trainer.train_step(*next(stream(data)()))
    before = state(trainer)
    image, coords, valid = data[1]
    poisoned = image.copy()
    poisoned[0, 3, 4, 0] = np.nan
    terms = trainer.train_step(tf.constant(poisoned), tf.constant(coords), tf.constant(valid))
    assert not np.isfinite(float(terms["loss"]))
    assert trainer.nonfinite_steps == 1
    for a, b in zip(before, state(trainer), strict=True):
        np.testing.assert_array_equal(a, b)
    trainer.train_step(*next(stream(data)(1)))
    weights_after = [np.asarray(w) for w in trainer.model.weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, weights_after, strict=True))  # a finite step applies
    assert trainer.train_step.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_nonfinite_training_restores_and_lowers_learning_rate(tmp_path, caplog):
    data = samples(4, seed=4)
    poisoned = list(data)
    image = data[2][0].copy()
    image[0, 0, 0, 0] = np.inf
    poisoned[2] = (image, data[2][1], data[2][2])
    trainer = Trainer(
        tiny_scn(), 2, config(iterations=12, log_every=4, checkpoint_every=4, nonfinite_lr_factor=0.1), tmp_path
    )
    with caplog.at_level(logging.WARNING, logger="scn_tf"):
        trainer.fit(stream(poisoned[:3] + [data[3]] * 20))
    assert "lowered the learning rate" in caplog.text
    assert trainer.learning_rate == pytest.approx(5e-6)
    assert trainer.current_step == 12
    assert all(np.all(np.isfinite(np.asarray(w))) for w in trainer.model.weights)


def test_cosine_schedule_with_warmup_matches_the_formula():
    settings = TrainingConfig(
        iterations=110, learning_rate=1e-3, lr_schedule="cosine", lr_warmup=10, lr_final_factor=0.1
    )
    schedule = LearningRate(settings)
    for step in (0, 4, 9, 10, 35, 60, 85, 110, 200):
        progress = min(max((step - 10) / 100, 0.0), 1.0)
        expected = 1e-3 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress))) * min(1.0, (step + 1) / 10)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)
    constant = LearningRate(TrainingConfig(learning_rate=2e-4))
    assert float(constant(0)) == pytest.approx(2e-4) and float(constant(10_000)) == pytest.approx(2e-4)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainingConfig(lr_schedule="linear")


@pytest.mark.slow
def test_trainer_follows_the_schedule(tmp_path):
    data = samples(2, seed=5)
    trainer = Trainer(
        tiny_scn(),
        2,
        config(iterations=6, log_every=3, checkpoint_every=3, lr_schedule="cosine", learning_rate=1e-4),
        tmp_path,
    )
    trainer.fit(stream(data))
    assert int(trainer.optimizer.iterations.numpy()) == 6
    assert trainer.learning_rate == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("option", ["xla", "mixed_precision"])
def test_xla_and_mixed_precision_train_as_well_as_float32(tmp_path, option):
    train, test = samples(20, seed=0), samples(10, seed=1)
    errors = {}
    for variant in ("default", option):
        with dtype_policy("mixed_float16" if variant == "mixed_precision" else "float32"):
            model = tiny_scn()
            trainer = Trainer(model, 2, config(**({variant: True} if variant != "default" else {})), tmp_path / variant)
            trainer.fit(stream(train))
            errors[variant] = mean_error(model, test)
        assert trainer.sigma_values().dtype == np.float32 and np.all(np.isfinite(trainer.sigma_values()))
    assert errors[option] < 2.0 and abs(errors[option] - errors["default"]) < 0.5, errors
