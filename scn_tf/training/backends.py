"""Which Keras backend trains, what it supports, and whose checkpoints a run folder holds.

TensorFlow (the default) and JAX train the same models with the same step; each has its engine module
(`tensorflow_engine`, `jax_engine`: gradients, compiled step, checkpoints), imported only when it is the
backend, so that a JAX run never imports TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from scn_tf.configs import TrainingConfig

CHECKPOINT_PATTERNS = {"tensorflow": "ckpt-*.index", "jax": "ckpt-*.npz"}
LABELS = {"tensorflow": "TensorFlow", "jax": "JAX"}


def current() -> str:
    return keras.backend.backend()


def check_supported(config: TrainingConfig, strategy: str = "none") -> None:
    """A ValueError for options the current backend cannot train with, before anything is written."""
    backend = current()
    if backend not in LABELS:
        raise ValueError(f"Keras backend {backend!r} cannot train scn_tf models: use tensorflow (default) or jax")
    if backend == "tensorflow":
        return
    if strategy != "none":
        raise ValueError(
            f"--strategy {strategy} is TensorFlow's tf.distribute: under KERAS_BACKEND={backend} train with "
            "--strategy none (one device), or use KERAS_BACKEND=tensorflow"
        )
    if config.xla:
        raise ValueError(
            f"--xla (training.xla) compiles TensorFlow's step: under KERAS_BACKEND={backend} the step is always "
            "compiled with XLA (jax.jit); drop the option"
        )


def make_engine(model: keras.Model, num_landmarks: int, config: TrainingConfig, output_dir: Path, strategy=None):
    """The current backend's engine: variables or state, the compiled step, checkpoints."""
    if current() == "jax":
        from scn_tf.training.jax_engine import JaxEngine

        return JaxEngine(model, num_landmarks, config, output_dir, strategy)
    from scn_tf.training.tensorflow_engine import TensorFlowEngine

    return TensorFlowEngine(model, num_landmarks, config, output_dir, strategy)


def checkpoint_backends(folder: str | os.PathLike) -> list[str]:
    """The backends whose checkpoints lie in `folder`."""
    folder = Path(folder)
    return [name for name, pattern in CHECKPOINT_PATTERNS.items() if any(folder.glob(pattern))]


def check_checkpoints(folder: str | os.PathLike) -> None:
    """A ValueError where `folder` holds checkpoints of another backend than the current one (a run resumes
    under the backend that started it)."""
    backend = current()
    foreign = [name for name in checkpoint_backends(folder) if name != backend]
    if foreign:
        raise ValueError(
            f"{folder} holds {LABELS[foreign[0]]} checkpoints ({CHECKPOINT_PATTERNS[foreign[0]]}) and this run "
            f"uses the {LABELS.get(backend, backend)} backend: resume it with KERAS_BACKEND={foreign[0]}, or "
            "start a new --output_dir (the model folder's weights load under either backend)"
        )
