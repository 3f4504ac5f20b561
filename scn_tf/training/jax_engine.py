"""The JAX side of training: the state as arrays, one jax.jit step over Keras' stateless API, and checkpoints
as `checkpoints/ckpt-N.npz` of that state.

The state holds everything a step depends on: the model's weights and the sigmas, the model's non-trainable
variables (the dropout layers' random state), the optimizer's variables, the learning-rate scale and the
counters of `step_counters`. The step is a pure function of the state and the batch (compiled once; the
state's buffers are donated), so a checkpoint of the state resumes bit for bit. The Keras variables are
brought up to date from the state with `sync` (before weights are saved or the model is evaluated).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import keras
import numpy as np

from scn_tf.configs import TrainingConfig
from scn_tf.files import atomic_path
from scn_tf.losses import conv_kernels
from scn_tf.training.optimization import LearningRate, make_optimizer
from scn_tf.training.step import clipped_gradients, keep_if_finite, loss_terms, step_counters

COUNTER_DTYPES = {
    "step": "int32",
    "nonfinite_steps": "int32",
    "last_nonfinite_step": "int32",
    "loss_scale": "float32",
    "clean_steps": "int32",
}
GROUPS = ("trainable", "non_trainable", "optimizer")


class JaxEngine:
    """State, compiled step and checkpoints of one training run under JAX (one device, no strategy)."""

    name = "jax"

    def __init__(self, model: keras.Model, num_landmarks: int, config: TrainingConfig, output_dir: Path, strategy=None):
        if strategy is not None:
            raise ValueError("distribution strategies are TensorFlow's: under the JAX backend train on one device")
        self.model = model
        self.config = config
        self.sigmas = keras.Variable(np.full(num_landmarks, config.sigma_init, np.float32), name="sigmas")
        self.schedule = LearningRate(config)
        self.optimizer = make_optimizer(config, self.schedule)
        self.checkpoint_dir = Path(output_dir) / "checkpoints"
        self._state: dict | None = None
        self.traces = 0
        self._step = jax.jit(self._pure_step, donate_argnums=0)

    @property
    def variables(self) -> list:
        return list(self.model.trainable_variables) + [self.sigmas]

    def _groups(self) -> dict[str, list]:
        return {
            "trainable": self.variables,
            "non_trainable": list(self.model.non_trainable_variables),
            "optimizer": list(self.optimizer.variables),
        }

    def build(self, image_shape) -> None:
        """Creates the model's weights and the optimizer's variables."""
        if not self.model.built:
            self.model(np.zeros((1, *tuple(image_shape)[1:]), np.float32))
        if not self.optimizer.built:
            self.optimizer.build(self.variables)
        kernels = {id(kernel) for kernel in conv_kernels(self.model)}
        self._kernel_indices = [k for k, variable in enumerate(self.variables) if id(variable) in kernels]
        self._iterations_index = next(
            k for k, v in enumerate(self.optimizer.variables) if v is self.optimizer.iterations
        )

    @property
    def state(self) -> dict:
        """The training state; taken from the Keras variables when first needed (so weights set after `build`
        count), then the reference that `sync` copies back into them."""
        if self._state is None:
            # copies: the step donates the state's buffers, which must not be the variables' own
            self._state = {
                name: [jnp.array(v.value, copy=True) for v in group] for name, group in self._groups().items()
            }
            self._state["learning_rate_scale"] = jnp.array(self.schedule.scale.value, copy=True)
            initial = {"step": 0, "nonfinite_steps": 0, "last_nonfinite_step": -1, "clean_steps": 0}
            initial["loss_scale"] = 2.0**15 if self.config.mixed_precision else 1.0
            self._state.update({name: jnp.asarray(initial[name], dtype) for name, dtype in COUNTER_DTYPES.items()})
        return self._state

    @state.setter
    def state(self, value: dict) -> None:
        self._state = value

    def batch_shape(self, images) -> tuple:
        return tuple(images.shape)

    def tracing_count(self) -> int:
        return self.traces

    # values between steps

    def counter(self, name: str) -> int:
        return int(self.state[name])

    def set_counter(self, name: str, value: int) -> None:
        self.state[name] = jnp.asarray(value, COUNTER_DTYPES[name])

    @property
    def learning_rate_scale(self) -> float:
        return float(self.state["learning_rate_scale"])

    @learning_rate_scale.setter
    def learning_rate_scale(self, value: float) -> None:
        self.state["learning_rate_scale"] = jnp.asarray(value, "float32")

    @property
    def learning_rate(self) -> float:
        iterations = self.state["optimizer"][self._iterations_index]
        return float(self.schedule.base(iterations)) * self.learning_rate_scale

    def sigma_values(self) -> np.ndarray:
        return np.asarray(self.state["trainable"][-1])

    def sync(self) -> None:
        """Copies the state into the Keras variables (model, sigmas, optimizer, learning-rate scale); copies, as the
        next step donates the state's buffers."""
        for name, group in self._groups().items():
            for variable, value in zip(group, self.state[name], strict=True):
                variable.assign(jnp.array(value, copy=True))
        self.schedule.scale.assign(jnp.array(self.state["learning_rate_scale"], copy=True))

    # the step

    def train_step(self, images, coords, valid) -> dict:
        self.state, terms = self._step(self.state, images, coords, valid)
        return terms

    def _pure_step(self, state: dict, images, coords, valid) -> tuple[dict, dict]:
        """(state after one step, loss terms and gradient norm): gradients of the loss of eq. (2) for the
        weights and sigmas, clipped, applied only if finite; sigmas clamped to sigma_min."""
        self.traces += 1  # runs only while jax traces the step
        config = self.config

        def loss(trainable, non_trainable):
            weights, sigmas = trainable[:-1], trainable[-1]
            predicted, non_trainable = self.model.stateless_call(weights, non_trainable, images, training=True)
            kernels = [trainable[k] for k in self._kernel_indices]
            terms = loss_terms(predicted, coords, valid, sigmas, kernels, config)
            scaled = terms["loss"] * state["loss_scale"] if config.mixed_precision else terms["loss"]
            return scaled, (terms, non_trainable)

        (_, (terms, non_trainable)), gradients = jax.value_and_grad(loss, has_aux=True)(
            state["trainable"], state["non_trainable"]
        )
        if config.mixed_precision:
            gradients = [gradient / state["loss_scale"] for gradient in gradients]
        gradients, gradient_norm, finite = clipped_gradients(gradients, terms["loss"], config.clip_norm)
        trainable, optimizer = self._apply(state, gradients)
        trainable[-1] = jnp.maximum(trainable[-1], config.sigma_min)
        trainable, optimizer = keep_if_finite(finite, (trainable, optimizer), (state["trainable"], state["optimizer"]))
        counters = step_counters(finite, jnp.isfinite(terms["loss"]), state, config.mixed_precision)
        new_state = {
            **state,
            **counters,
            "trainable": trainable,
            "non_trainable": non_trainable,
            "optimizer": optimizer,
            "step": state["step"] + 1,
        }
        return new_state, {**terms, "gradient_norm": gradient_norm}

    def _apply(self, state: dict, gradients: list) -> tuple[list, list]:
        """The optimizer's update of the state's weights and slots (Keras' stateless_apply, with the
        learning-rate scale taken from the state as well)."""
        mapping = [
            *zip(self.variables, state["trainable"], strict=True),
            *zip(self.optimizer.variables, state["optimizer"], strict=True),
            (self.schedule.scale, state["learning_rate_scale"]),
        ]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self.optimizer.apply(gradients)
        return (
            [scope.get_current_value(v) for v in self.variables],
            [scope.get_current_value(v) for v in self.optimizer.variables],
        )

    # checkpoints

    def checkpoint_path(self, number: int) -> str:
        return str(self.checkpoint_dir / f"ckpt-{number}.npz")

    def checkpoint_numbers(self) -> list[int]:
        numbers = [path.name[len("ckpt-") : -len(".npz")] for path in self.checkpoint_dir.glob("ckpt-*.npz")]
        return sorted(int(number) for number in numbers if number.isdigit())

    def _read(self, number: int) -> dict[str, np.ndarray]:
        with np.load(self.checkpoint_path(number), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}

    def unreadable(self, number: int) -> str | None:
        """Why checkpoint `number` cannot be read completely (every array, checksums included), or None."""
        try:
            self._read(number)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
            return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        return None

    def stored_step(self, number: int) -> int:
        with np.load(self.checkpoint_path(number), allow_pickle=False) as archive:
            return int(archive["step"])

    def load(self, number: int) -> None:
        """Makes checkpoint `number` the state. Raises ValueError naming it where it does not fit the model."""
        path = self.checkpoint_path(number)
        arrays = self._read(number)
        state = {}
        for name, group in self._groups().items():
            stored = sorted(key for key in arrays if key.startswith(f"{name}/"))
            if len(stored) != len(group):
                raise ValueError(
                    f"{path}: cannot restore ({len(stored)} {name} arrays stored, the model has {len(group)})"
                )
            state[name] = []
            for index, variable in enumerate(group):
                value = arrays[f"{name}/{index:04d}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"{path}: cannot restore ({variable.path}: shape {tuple(value.shape)} stored, "
                        f"{tuple(variable.shape)} in the model)"
                    )
                state[name].append(jnp.asarray(value, variable.dtype))
        state["learning_rate_scale"] = jnp.asarray(arrays["learning_rate_scale"], "float32")
        state.update({name: jnp.asarray(arrays[name], dtype) for name, dtype in COUNTER_DTYPES.items()})
        self.state = state

    def save(self, number: int) -> None:
        """Writes the state as ckpt-`number`.npz (under a temporary name first) and keeps the newest max_to_keep."""
        arrays = {
            f"{name}/{index:04d}": np.asarray(value) for name in GROUPS for index, value in enumerate(self.state[name])
        }
        arrays["learning_rate_scale"] = np.asarray(self.state["learning_rate_scale"])
        arrays.update({name: np.asarray(self.state[name]) for name in COUNTER_DTYPES})
        with atomic_path(self.checkpoint_path(number)) as temporary, open(temporary, "wb") as file:
            np.savez(file, **arrays)
        for old in self.checkpoint_numbers()[: -self.config.max_to_keep]:
            Path(self.checkpoint_path(old)).unlink(missing_ok=True)

    def save_weights(self, path: str | os.PathLike) -> None:
        self.sync()
        self.model.save_weights(path)
