"""Training under Keras' JAX backend in a fresh process, for the backend equivalence tests (test_jax_backend.py).

  KERAS_BACKEND=jax python tests/jax_backend_runs.py step WEIGHTS.h5 OUT.npz RUN     one step from WEIGHTS
  KERAS_BACKEND=jax python tests/jax_backend_runs.py fit WEIGHTS.h5 OUT.npz RUN      50 SGD steps, then landmarks
  KERAS_BACKEND=jax python tests/jax_backend_runs.py resume - OUT.npz RUN            8 steps straight, and 4 + 4
  KERAS_BACKEND=jax python tests/jax_backend_runs.py mixed - OUT.npz RUN             mixed_float16, 40 steps

The backend is fixed when Keras is imported, which is why the JAX side runs as its own process. The functions
here build the model, the settings and the sample stream for both sides; the TensorFlow side imports them.
"""

import dataclasses
import sys

import numpy as np

from conftest import blob_sample
from scn_tf.configs import TrainingConfig

SIZE = 32
STEP = TrainingConfig(
    iterations=1, learning_rate=1e-3, momentum=0.9, alpha=20.0, weight_decay=1e-3, gamma=100.0, sigma_init=2.0
)
FIT = TrainingConfig(
    iterations=50, learning_rate=5e-5, sigma_init=2.0, weight_decay=1e-4, log_every=10, checkpoint_every=25
)
RESUME = TrainingConfig(
    iterations=8, learning_rate=1e-4, sigma_init=2.0, log_every=2, checkpoint_every=4, optimizer="adam"
)


def tiny_model(dropout_rate: float = 0.0):
    from scn_tf.models import SpatialConfigurationNet

    return SpatialConfigurationNet(
        num_landmarks=2,
        ndim=2,
        dropout_rate=dropout_rate,
        filters=8,
        levels=3,
        spatial_kernel_size=3,
        spatial_downsampling=4,
    )


def stream(start: int = 0):
    """Sample k of the stream: a blob image seeded with k (NumPy arrays, the same under every backend)."""
    step = start
    while True:
        yield blob_sample(np.random.default_rng(1000 + step), size=SIZE)
        step += 1


def test_images() -> np.ndarray:
    return np.concatenate([blob_sample(np.random.default_rng(k), size=SIZE)[0] for k in range(6)])


def trainer_from(weights: str | None, config: TrainingConfig, run: str, dropout_rate: float = 0.0, seed: int = 0):
    """A Trainer of the tiny SCN, its weights read from `weights` (or drawn with `seed`)."""
    from scn_tf.runtime import seeded
    from scn_tf.training import Trainer

    with seeded(seed):  # under JAX without importing TensorFlow
        model = tiny_model(dropout_rate)
    trainer = Trainer(model, 2, config, run)
    trainer.build((1, SIZE, SIZE, 1))
    if weights is not None:
        model.load_weights(weights)
    return trainer


def landmarks(model, images: np.ndarray) -> np.ndarray:
    from scn_tf.heatmaps import decode_heatmaps

    return np.asarray(decode_heatmaps(np.asarray(model(images), np.float32))[0])


def state(trainer) -> dict[str, np.ndarray]:
    """Weights, sigmas and optimizer variables by position and kind (names differ between backends)."""
    trainer.sync()
    values = {f"weight/{k:03d}/{v.name}": np.asarray(v) for k, v in enumerate(trainer.model.weights)}
    values["sigmas"] = trainer.sigma_values()
    for k, v in enumerate(trainer.optimizer.variables):
        kind = v.path.rsplit("_", 1)[-1] if "_" in v.name else v.name  # momentum, velocity, iteration, ...
        values[f"optimizer/{k:03d}/{kind}"] = np.asarray(v)
    return values


def one_step(trainer) -> dict[str, np.ndarray]:
    terms = trainer.train_step(*next(stream()))
    return {**{f"term/{name}": np.asarray(value) for name, value in terms.items()}, **state(trainer)}


def main(mode: str, weights: str, out: str, run: str) -> None:
    if mode == "step":
        results = one_step(trainer_from(weights, STEP, run))
    elif mode == "fit":
        trainer = trainer_from(weights, FIT, run)
        trainer.fit(stream)
        results = {**state(trainer), "landmarks": landmarks(trainer.model, test_images())}
    elif mode == "mixed":
        from scn_tf.runtime import dtype_policy

        with dtype_policy("mixed_float16"):
            trainer = trainer_from(None, dataclasses.replace(FIT, iterations=40, mixed_precision=True), run)
            first = float(trainer.train_step(*next(stream()))["loss"])
            trainer.fit(stream)
            results = {
                **state(trainer),
                "first_loss": np.array(first),
                "output_dtype": np.array(str(trainer.model(test_images()[:1]).dtype)),
            }
        results["loss_scale"] = np.array(trainer.engine.state["loss_scale"])
        results["nonfinite_steps"] = np.array(trainer.nonfinite_steps)
        results["last_loss"] = np.array(float(trainer.train_step(*next(stream(40)))["loss"]))
    else:
        straight = trainer_from(None, RESUME, f"{run}/straight", dropout_rate=0.3)
        straight.fit(stream)
        first = trainer_from(None, dataclasses.replace(RESUME, iterations=4), f"{run}/resumed", dropout_rate=0.3)
        first.fit(stream)
        resumed = trainer_from(None, RESUME, f"{run}/resumed", dropout_rate=0.3, seed=99)
        resumed.fit(stream)
        results = {f"straight/{k}": v for k, v in state(straight).items()}
        results.update({f"resumed/{k}": v for k, v in state(resumed).items()})
        results["traces"] = np.array(resumed.engine.tracing_count())
    results["tensorflow_imported"] = np.array("tensorflow" in sys.modules and sys.modules["tensorflow"] is not None)
    np.savez(out, **results)


if __name__ == "__main__":
    main(*sys.argv[1:5])
