"""The training loop: one tf.function step, SGD with Nesterov momentum, learnable sigmas, checkpoints.

The step computes the Gaussian targets from the landmark coordinates and the current sigmas, the loss of
eq. (2) and its gradients, clips them by global norm if asked, and applies them only if the loss and the
gradients are finite. With mixed precision (the model computing in float16; sigmas, targets and loss in
float32) the loss is scaled dynamically: an overflow in the scaled gradients of a finite loss halves the
scale and skips the step, and the scale doubles after every 2,000 clean steps. The Python loop around it only
fetches values every `log_every` steps; when it sees that steps were skipped as non-finite it restores the
last checkpoint and lowers the learning rate.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from scn_tf.configs import TrainingConfig
from scn_tf.files import atomic_path, write_json_atomic
from scn_tf.losses import conv_kernels
from scn_tf.step import clipped_gradients, loss_terms

log = logging.getLogger("scn_tf")

Batch = tuple  # (images (B, *spatial, C), coords (B, N, d), valid (B, N))


class LearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The configured schedule times `scale`, a variable that recovery from non-finite steps lowers."""

    def __init__(self, config: TrainingConfig):
        self.config = config
        self.scale = tf.Variable(1.0, trainable=False, name="learning_rate_scale")

    def __call__(self, step):
        config = self.config
        step = tf.cast(step, tf.float32)
        rate = tf.constant(config.learning_rate, tf.float32)
        if config.lr_schedule == "cosine":
            length = float(max(config.iterations - config.lr_warmup, 1))
            progress = tf.clip_by_value((step - config.lr_warmup) / length, 0.0, 1.0)
            final = config.lr_final_factor
            rate = rate * (final + (1.0 - final) * 0.5 * (1.0 + tf.cos(np.pi * progress)))
        if config.lr_warmup:
            rate = rate * tf.minimum(1.0, (step + 1.0) / config.lr_warmup)
        return rate * self.scale

    def get_config(self) -> dict:
        return self.config.to_dict()


class Trainer:
    """Trains `model` and its per-landmark sigmas; owns the optimizer, checkpoints and logs in `output_dir`."""

    def __init__(self, model: keras.Model, num_landmarks: int, config: TrainingConfig, output_dir: str | os.PathLike,
                 strategy: tf.distribute.Strategy | None = None):
        self.model = model
        self.config = config
        self.output_dir = Path(output_dir)
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self.sigmas = tf.Variable(np.full(num_landmarks, config.sigma_init, np.float32), name="sigmas")
            self.schedule = LearningRate(config)
            if config.optimizer == "adam":
                self.optimizer = keras.optimizers.Adam(self.schedule)
            else:
                self.optimizer = keras.optimizers.SGD(self.schedule, momentum=config.momentum, nesterov=True)
            self.step = tf.Variable(0, dtype=tf.int64, name="step")
            self.nonfinite_steps = tf.Variable(0, dtype=tf.int64, name="nonfinite_steps")
            self.loss_scale = tf.Variable(2.0**15 if config.mixed_precision else 1.0, name="loss_scale")
            self.clean_steps = tf.Variable(0, dtype=tf.int64, name="clean_steps")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=self.optimizer, sigmas=self.sigmas,
                                              step=self.step, loss_scale=self.loss_scale,
                                              learning_rate_scale=self.schedule.scale)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.output_dir / "checkpoints"),
                                                  max_to_keep=config.max_to_keep)
        self.train_step = tf.function(self._train_step, jit_compile=config.xla)
        self._writer = None

    @property
    def variables(self) -> list:
        return list(self.model.trainable_variables) + [self.sigmas]

    @property
    def learning_rate(self) -> float:
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    def build(self, image_shape: Iterable[int]) -> None:
        """Creates the model's weights and the optimizer's slots, so that a checkpoint can restore both."""
        with self.strategy.scope():
            if not self.model.built:
                self.model(np.zeros((1, *tuple(image_shape)[1:]), np.float32))
            self.optimizer.build(self.variables)

    def restore(self) -> int:
        """Restores the latest checkpoint in `output_dir`, if any; returns the step it resumes from."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            log.info("restored %s (step %d)", self.manager.latest_checkpoint, int(self.step.numpy()))
        return int(self.step.numpy())

    def _train_step(self, images, coords, valid):
        """One step on every replica: gradients summed across replicas, then clipped, then applied if finite.

        The decision to apply is taken outside the replica function, on the all-reduced gradient norm, so
        that every replica takes the same branch (a synchronisation point inside a branch of a replica
        function is not supported by tf.distribute).
        """
        config = self.config
        strategy = self.strategy
        terms, gradients, gradient_norm, finite = strategy.run(self._replica_gradients, args=(images, coords, valid))
        terms, gradient_norm, finite = tf.nest.map_structure(self._first_replica, (terms, gradient_norm, finite))
        if finite:
            strategy.run(self._apply, args=(gradients,))
            if config.mixed_precision:
                self._grow_loss_scale()
        elif config.mixed_precision and tf.math.is_finite(terms["loss"]):
            self.loss_scale.assign(tf.maximum(self.loss_scale / 2.0, 1.0))
            self.clean_steps.assign(0)
        else:
            self.nonfinite_steps.assign_add(1)
        self.step.assign_add(1)
        return {**terms, "gradient_norm": gradient_norm}

    def _first_replica(self, value):
        """The first replica's copy of a value that the all-reduce made equal on every replica."""
        return self.strategy.experimental_local_results(value)[0]

    def _replica_gradients(self, images, coords, valid):
        """Loss terms and gradients of this replica's share of the global batch, summed across replicas, then
        clipped; with their norm and whether the step may be applied."""
        config = self.config
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            predicted = self.model(images, training=True)
            terms = loss_terms(predicted, coords, valid, self.sigmas, conv_kernels(self.model), config,
                               replicas=float(context.num_replicas_in_sync))  # means over the global batch
            scaled_loss = terms["loss"] * self.loss_scale if config.mixed_precision else terms["loss"]
        gradients = tape.gradient(scaled_loss, self.variables)
        if config.mixed_precision:
            gradients = [gradient / self.loss_scale for gradient in gradients]
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

    def latest_checkpoint_step(self) -> int:
        """The step stored in the latest checkpoint, read without restoring anything; 0 if none."""
        if not self.manager.latest_checkpoint:
            return 0
        reader = tf.train.load_checkpoint(self.manager.latest_checkpoint)
        return int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))

    def _grow_loss_scale(self) -> None:
        self.clean_steps.assign_add(1)
        if self.clean_steps >= 2000:
            self.loss_scale.assign(self.loss_scale * 2.0)
            self.clean_steps.assign(0)

    def fit(self, batches: Callable[[int], Iterable[Batch]] | Iterable[Batch],
            evaluate: Callable[[int], dict] | None = None, eval_every: int = 0) -> dict:
        """Trains until `config.iterations` steps, resuming from the latest checkpoint in `output_dir`.

        `batches` is an iterable of (images, coords, valid), or a function of the step to resume from that
        returns one, so that a resumed run sees the samples an uninterrupted run would have seen.
        `evaluate(step)` returning scalar metrics is called every `eval_every` steps and at the end; its
        results go to TensorBoard and are returned with the last loss terms.
        """
        config = self.config
        iterator = iter(batches(self.latest_checkpoint_step()) if callable(batches) else batches)
        first = next(iterator)
        self.build(self._first_replica(first[0]).shape)
        step = self.restore()
        if not self.manager.latest_checkpoint:
            self.manager.save(checkpoint_number=step)
        self._writer = self._writer or tf.summary.create_file_writer(str(self.output_dir / "logs"))
        progress = keras.utils.Progbar(config.iterations, stateful_metrics=["loss", "heatmap", "sigma",
                                                                             "weight_decay", "sigma_mean"])
        progress.update(step)
        seen_nonfinite, recoveries = int(self.nonfinite_steps.numpy()), 0
        values, metrics, batch = {}, {}, first
        while step < config.iterations:
            terms = self.train_step(*batch)
            step += 1
            if step % config.log_every == 0 or step == config.iterations:
                values = {name: float(value) for name, value in terms.items()}
                nonfinite = int(self.nonfinite_steps.numpy())
                if nonfinite > seen_nonfinite:
                    recoveries += 1
                    step = self._recover(nonfinite - seen_nonfinite, recoveries)
                    seen_nonfinite = nonfinite
                    progress.update(step)
                    batch = next(iterator)
                    continue
                self._log(step, values)
                progress.update(step, [(name, values[name]) for name in ("loss", "heatmap", "sigma",
                                                                          "weight_decay")]
                                + [("sigma_mean", float(np.mean(self.sigmas.numpy())))])
            if step % config.checkpoint_every == 0 or step == config.iterations:
                self.save_checkpoint()
            if evaluate is not None and eval_every and step % eval_every == 0 and step < config.iterations:
                metrics = self._evaluate(evaluate, step)
            if step < config.iterations:
                batch = next(iterator)
        if evaluate is not None:
            metrics = self._evaluate(evaluate, step)
        self.save_weights()
        return {**values, **metrics}

    def _recover(self, count: int, recoveries: int) -> int:
        if recoveries > self.config.max_recoveries:
            raise RuntimeError(f"training stayed non-finite after {self.config.max_recoveries} restarts "
                               f"with a lower learning rate; last rate {self.learning_rate:g}")
        old_rate = self.learning_rate
        scale = float(self.schedule.scale.numpy()) * self.config.nonfinite_lr_factor
        self.checkpoint.restore(self.manager.latest_checkpoint)
        self.schedule.scale.assign(scale)
        new_rate = self.learning_rate
        step = int(self.step.numpy())
        log.warning("%d step(s) had a non-finite loss or gradient and were not applied; restored the checkpoint "
                    "of step %d and lowered the learning rate from %g to %g", count, step, old_rate, new_rate)
        return step

    def _log(self, step: int, values: dict) -> None:
        with self._writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(f"train/{name}", value)
            tf.summary.scalar("train/learning_rate", self.learning_rate)
            for index, sigma in enumerate(self.sigmas.numpy()):
                tf.summary.scalar(f"sigma/{index:02d}", float(sigma))

    def _evaluate(self, evaluate: Callable[[int], dict], step: int) -> dict:
        metrics = evaluate(step)
        if not metrics:
            return metrics
        with self._writer.as_default(step=step):
            for name, value in metrics.items():
                tf.summary.scalar(f"eval/{name}", float(value))
        log.info("step %d: %s", step, ", ".join(f"{name} {value:.4g}" for name, value in metrics.items()))
        return metrics

    def save_checkpoint(self) -> None:
        """Writes a checkpoint (model, optimizer slots, sigmas, step) and the sigmas as JSON."""
        step = int(self.step.numpy())
        self.manager.save(checkpoint_number=step)
        self.save_sigmas()
        log.info("step %d: checkpoint saved; sigmas %s", step,
                 np.array2string(self.sigmas.numpy(), precision=3, max_line_width=200))

    def save_sigmas(self) -> None:
        write_json_atomic(self.output_dir / "sigmas.json",
                          {"step": int(self.step.numpy()), "sigmas": self.sigmas.numpy().tolist()})

    def save_weights(self, name: str = "last") -> Path:
        """Writes the model weights as `<output_dir>/<name>.weights.h5` and the sigmas beside them."""
        path = self.output_dir / f"{name}.weights.h5"
        with atomic_path(path) as temporary:
            self.model.save_weights(temporary)
        self.save_sigmas()
        return path

