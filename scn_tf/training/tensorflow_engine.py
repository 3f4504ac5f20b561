"""The TensorFlow side of training: one tf.function step on every replica of a tf.distribute strategy, and
tf.train checkpoints (`checkpoints/ckpt-N.index` and `.data-*`) of everything the step depends on.

The step takes the gradients with a GradientTape, sums them across replicas, clips them and applies them only
if the loss and the gradients are finite (the decision taken outside the replica function, on the all-reduced
norm, so that every replica takes the same branch). With mixed precision the loss is scaled by a variable
that `step_counters` adjusts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from scn_tf.configs import TrainingConfig
from scn_tf.losses import conv_kernels
from scn_tf.training.optimization import LearningRate, make_optimizer
from scn_tf.training.step import clipped_gradients, loss_terms, step_counters

COUNTERS = ("step", "nonfinite_steps", "last_nonfinite_step", "loss_scale", "clean_steps")


class TensorFlowEngine:
    """Variables, compiled step and checkpoints of one training run under TensorFlow."""

    name = "tensorflow"

    def __init__(
        self,
        model: keras.Model,
        num_landmarks: int,
        config: TrainingConfig,
        output_dir: Path,
        strategy: tf.distribute.Strategy | None = None,
    ):
        self.model = model
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self.sigmas = tf.Variable(np.full(num_landmarks, config.sigma_init, np.float32), name="sigmas")
            self.schedule = LearningRate(config)
            self.optimizer = make_optimizer(config, self.schedule)
            self.counters = {
                "step": tf.Variable(0, dtype=tf.int64, name="step"),
                "nonfinite_steps": tf.Variable(0, dtype=tf.int64, name="nonfinite_steps"),
                "last_nonfinite_step": tf.Variable(-1, dtype=tf.int64, name="last_nonfinite_step"),
                "loss_scale": tf.Variable(2.0**15 if config.mixed_precision else 1.0, name="loss_scale"),
                "clean_steps": tf.Variable(0, dtype=tf.int64, name="clean_steps"),
            }
        # the dropout layers' random state, so that a resumed run draws the masks an uninterrupted one would
        random_states = [variable for variable in model.non_trainable_variables if "seed_generator" in variable.path]
        counters = self.counters
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=self.optimizer,
            sigmas=self.sigmas,
            step=counters["step"],
            loss_scale=counters["loss_scale"],
            learning_rate_scale=self.schedule.scale,
            clean_steps=counters["clean_steps"],
            nonfinite_steps=counters["nonfinite_steps"],
            random_states={f"{index:03d}": variable for index, variable in enumerate(random_states)},
        )
        self.checkpoint_dir = Path(output_dir) / "checkpoints"
        self.manager = self._manager()
        self.train_step = tf.function(self._train_step, jit_compile=config.xla)

    def _manager(self) -> tf.train.CheckpointManager:
        return tf.train.CheckpointManager(
            self.checkpoint, str(self.checkpoint_dir), max_to_keep=self.config.max_to_keep
        )

    @property
    def variables(self) -> list:
        return list(self.model.trainable_variables) + [self.sigmas]

    def build(self, image_shape) -> None:
        """Creates the model's weights and the optimizer's slots, so that a checkpoint can restore both."""
        with self.strategy.scope():
            if not self.model.built:
                self.model(np.zeros((1, *tuple(image_shape)[1:]), np.float32))
            self.optimizer.build(self.variables)

    def batch_shape(self, images) -> tuple:
        """The shape of one replica's share of a batch."""
        return tuple(self._first_replica(images).shape)

    def tracing_count(self) -> int:
        return self.train_step.experimental_get_tracing_count()

    # values between steps

    def counter(self, name: str) -> int:
        return int(self.counters[name].numpy())

    def set_counter(self, name: str, value: int) -> None:
        self.counters[name].assign(value)

    @property
    def learning_rate_scale(self) -> float:
        return float(self.schedule.scale.numpy())

    @learning_rate_scale.setter
    def learning_rate_scale(self, value: float) -> None:
        self.schedule.scale.assign(value)

    @property
    def learning_rate(self) -> float:
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    def sigma_values(self) -> np.ndarray:
        return self.sigmas.numpy()

    def sync(self) -> None:
        """The variables are the state: nothing to copy back."""

    # the step

    def _train_step(self, images, coords, valid):
        """One step on every replica: gradients summed across replicas, then clipped, then applied if finite."""
        config = self.config
        strategy = self.strategy
        terms, gradients, gradient_norm, finite = strategy.run(self._replica_gradients, args=(images, coords, valid))
        terms, gradient_norm, finite = tf.nest.map_structure(self._first_replica, (terms, gradient_norm, finite))
        if finite:
            strategy.run(self._apply, args=(gradients,))
            self.sigmas.assign(tf.maximum(self.sigmas, config.sigma_min))
        values = {name: variable.read_value() for name, variable in self.counters.items()}
        updated = step_counters(finite, tf.math.is_finite(terms["loss"]), values, config.mixed_precision)
        for name, value in updated.items():
            self.counters[name].assign(value)
        self.counters["step"].assign_add(1)
        return {**terms, "gradient_norm": gradient_norm}

    def _first_replica(self, value):
        """The first replica's copy of a value that the all-reduce made equal on every replica."""
        return self.strategy.experimental_local_results(value)[0]

    def _replica_gradients(self, images, coords, valid):
        """Loss terms and gradients of this replica's share of the global batch, summed across replicas, then
        clipped; with their norm and whether the step may be applied."""
        config = self.config
        context = tf.distribute.get_replica_context()
        loss_scale = self.counters["loss_scale"]
        with tf.GradientTape() as tape:
            predicted = self.model(images, training=True)
            terms = loss_terms(
                predicted,
                coords,
                valid,
                self.sigmas,
                conv_kernels(self.model),
                config,
                replicas=float(context.num_replicas_in_sync),
            )  # means over the global batch
            scaled_loss = terms["loss"] * loss_scale if config.mixed_precision else terms["loss"]
        gradients = tape.gradient(scaled_loss, self.variables)
        if config.mixed_precision:
            gradients = [gradient / loss_scale for gradient in gradients]
        if context.num_replicas_in_sync > 1:
            terms, gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, (terms, gradients))
        gradients, gradient_norm, finite = clipped_gradients(gradients, terms["loss"], config.clip_norm)
        return terms, gradients, gradient_norm, finite

    def _apply(self, gradients):
        """Applies the summed gradients; the Keras optimizer sums across replicas again, hence the division."""
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        if replicas > 1:
            gradients = [gradient / replicas for gradient in gradients]
        self.optimizer.apply(gradients, self.variables)

    # checkpoints

    def checkpoint_path(self, number: int) -> str:
        return str(self.checkpoint_dir / f"ckpt-{number}")

    def checkpoint_numbers(self) -> list[int]:
        """The numbers N of the complete-looking checkpoints `ckpt-N` (an index file and data), ascending."""
        numbers = []
        for index in self.checkpoint_dir.glob("ckpt-*.index"):
            suffix = index.name[len("ckpt-") : -len(".index")]
            if suffix.isdigit() and list(self.checkpoint_dir.glob(f"ckpt-{suffix}.data-*")):
                numbers.append(int(suffix))
        return sorted(numbers)

    def unreadable(self, number: int) -> str | None:
        """Why checkpoint `number` cannot be read completely (every tensor, checksums included), or None."""
        try:
            reader = tf.train.load_checkpoint(self.checkpoint_path(number))
            for name in reader.get_variable_to_shape_map():
                reader.get_tensor(name)
        except (tf.errors.OpError, ValueError, OSError, IndexError, RuntimeError) as error:
            return str(error).strip().splitlines()[0][:200]
        return None

    def stored_step(self, number: int) -> int:
        """The step stored in checkpoint `number`, read without restoring anything."""
        reader = tf.train.load_checkpoint(self.checkpoint_path(number))
        return int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))

    def load(self, number: int) -> None:
        """Restores checkpoint `number` and makes it the manager's latest (its older intact files its history).

        Raises ValueError with the checkpoint's path where it does not match the model."""
        prefix = self.checkpoint_path(number)
        try:
            self.checkpoint.restore(prefix).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as error:
            raise ValueError(f"{prefix}: cannot restore ({str(error).strip().splitlines()[0]})") from error
        paths = [self.checkpoint_path(n) for n in self.checkpoint_numbers() if n <= number]
        tf.compat.v1.train.update_checkpoint_state(str(self.checkpoint_dir), prefix, paths)
        self.manager = self._manager()

    def save(self, number: int) -> None:
        """Saves checkpoint `number`; a save that fails (a full disk) or is interrupted leaves none of its files
        (TensorFlow writes into `ckpt-N_temp*` first and keeps that folder on an error)."""
        try:
            self.manager.save(checkpoint_number=number)
        except BaseException:
            for leftover in self.checkpoint_dir.glob(f"ckpt-{number}_temp*"):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
            raise

    def save_weights(self, path: str | os.PathLike) -> None:
        self.model.save_weights(path)
