"""The training loop: one tf.function step, SGD with Nesterov momentum, learnable sigmas, checkpoints.

The step computes the Gaussian targets from the landmark coordinates and the current sigmas, the loss of
eq. (2) and its gradients, clips them by global norm if asked, and applies them only if the loss and the
gradients are finite. With mixed precision (the model computing in float16; sigmas, targets and loss in
float32) the loss is scaled dynamically: an overflow in the scaled gradients of a finite loss halves the
scale and skips the step, and the scale doubles after every 2,000 clean steps. After an applied step the
learned sigmas are clamped to at least `sigma_min` network pixels (the original trains sigma directly, which
a large learning rate can drive negative). The Python loop around it only fetches values every `log_every`
steps; when it sees that steps were skipped as non-finite it restores the last checkpoint and lowers the
learning rate, and gives up with a TrainingError after `max_recoveries` such restarts in a row.
A checkpoint holds everything a step depends on (weights, optimizer slots, sigmas, loss scale, learning-rate
scale, the dropout layers' random state), so that a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from scn_tf.configs import TrainingConfig
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

    def __init__(
        self,
        model: keras.Model,
        num_landmarks: int,
        config: TrainingConfig,
        output_dir: str | os.PathLike,
        strategy: tf.distribute.Strategy | None = None,
        model_files: dict[str, dict] | None = None,
    ):
        self.model = model
        self.model_files = model_files or {}  # JSON files written with the last weights (config.json, ...)
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
            self.last_nonfinite_step = tf.Variable(-1, dtype=tf.int64, name="last_nonfinite_step")
            self.loss_scale = tf.Variable(2.0**15 if config.mixed_precision else 1.0, name="loss_scale")
            self.clean_steps = tf.Variable(0, dtype=tf.int64, name="clean_steps")
        # the dropout layers' random state, so that a resumed run draws the masks an uninterrupted one would
        self.random_states = [
            variable for variable in model.non_trainable_variables if "seed_generator" in variable.path
        ]
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=self.optimizer,
            sigmas=self.sigmas,
            step=self.step,
            loss_scale=self.loss_scale,
            learning_rate_scale=self.schedule.scale,
            clean_steps=self.clean_steps,
            nonfinite_steps=self.nonfinite_steps,
            random_states={f"{index:03d}": variable for index, variable in enumerate(self.random_states)},
        )
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(self.checkpoint_dir), max_to_keep=config.max_to_keep
        )
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

    def intact_checkpoint(self) -> str | None:
        """The newest checkpoint in `output_dir` whose every tensor reads back, or None.

        The checkpoints are found by their files, not through `checkpoints/checkpoint` (a garbage one would
        otherwise restart from step 0); one that cannot be read completely (a truncated or overwritten file)
        is skipped with a warning naming it, and the previous one is used.
        """
        for prefix in reversed(checkpoint_prefixes(self.checkpoint_dir)):
            problem = unreadable(prefix)
            if problem is None:
                return prefix
            log.warning("checkpoint %s is corrupt (%s); falling back to the previous one", prefix, problem)
        return None

    def restore(self, prefix: str | None = None) -> int:
        """Restores `prefix` (default: the newest intact checkpoint), if any; returns the step it resumes from."""
        prefix = prefix or self.intact_checkpoint()
        if prefix is None:
            if checkpoint_prefixes(self.checkpoint_dir):
                raise TrainingError(f"{self.checkpoint_dir}: no intact checkpoint to resume from")
            return int(self.step.numpy())
        try:
            self.checkpoint.restore(prefix).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as error:
            raise TrainingError(f"{prefix}: cannot restore ({str(error).strip().splitlines()[0]})") from error
        self._adopt(prefix)
        log.info("restored %s (step %d)", prefix, int(self.step.numpy()))
        return int(self.step.numpy())

    def _adopt(self, prefix: str) -> None:
        """Makes `prefix` the manager's latest and its older intact files its history (rewriting the index)."""
        numbers = [number for number in checkpoint_numbers(self.checkpoint_dir) if number <= checkpoint_number(prefix)]
        paths = [str(self.checkpoint_dir / f"ckpt-{number}") for number in numbers]
        tf.compat.v1.train.update_checkpoint_state(str(self.checkpoint_dir), prefix, paths)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(self.checkpoint_dir), max_to_keep=self.config.max_to_keep
        )

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
            self.sigmas.assign(tf.maximum(self.sigmas, config.sigma_min))
            if config.mixed_precision:
                self._grow_loss_scale()
        elif config.mixed_precision and tf.math.is_finite(terms["loss"]):
            self.loss_scale.assign(tf.maximum(self.loss_scale / 2.0, 1.0))
            self.clean_steps.assign(0)
        else:
            self.nonfinite_steps.assign_add(1)
            self.last_nonfinite_step.assign(self.step)
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
            terms = loss_terms(
                predicted,
                coords,
                valid,
                self.sigmas,
                conv_kernels(self.model),
                config,
                replicas=float(context.num_replicas_in_sync),
            )  # means over the global batch
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

    @staticmethod
    def checkpoint_step(prefix: str | None) -> int:
        """The step stored in a checkpoint, read without restoring anything; 0 for None."""
        if prefix is None:
            return 0
        return int(tf.train.load_checkpoint(prefix).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))

    def _grow_loss_scale(self) -> None:
        self.clean_steps.assign_add(1)
        if self.clean_steps >= 2000:
            self.loss_scale.assign(self.loss_scale * 2.0)
            self.clean_steps.assign(0)

    def fit(
        self,
        batches: Callable[[int], Iterable[Batch]] | Iterable[Batch],
        evaluate: Callable[[int], dict] | None = None,
        eval_every: int = 0,
        batch_ids: Callable[[int], Sequence[str]] | None = None,
    ) -> dict:
        """Trains until `config.iterations` steps, resuming from the newest intact checkpoint in `output_dir`.

        `batches` is an iterable of (images, coords, valid), or a function of the step to resume from that
        returns one, so that a resumed run sees the samples an uninterrupted run would have seen.
        `evaluate(step)` returning scalar metrics is called every `eval_every` steps and at the end; its
        results go to TensorBoard and are returned with the last loss terms. `batch_ids(step)` names the
        samples of a step's batch, for the error when non-finite steps persist.
        """
        config = self.config
        resume_from = self.intact_checkpoint()
        iterator = iter(batches(self.checkpoint_step(resume_from)) if callable(batches) else batches)
        first = next(iterator)
        self.build(self._first_replica(first[0]).shape)
        step = self.restore(resume_from)
        if not self.manager.latest_checkpoint:
            self.manager.save(checkpoint_number=step)
        self._writer = self._writer or tf.summary.create_file_writer(str(self.output_dir / "logs"))
        progress = keras.utils.Progbar(
            config.iterations, stateful_metrics=["loss", "heatmap", "sigma", "weight_decay", "sigma_mean"]
        )
        progress.update(step)
        seen_nonfinite, failures = int(self.nonfinite_steps.numpy()), 0
        values, metrics, batch = {}, {}, first
        while step < config.iterations:
            terms = self.train_step(*batch)
            step += 1
            if step % config.log_every == 0 or step == config.iterations:
                values = {name: float(value) for name, value in terms.items()}
                nonfinite = int(self.nonfinite_steps.numpy())
                if nonfinite > seen_nonfinite:
                    failures += 1
                    step = self._recover(nonfinite - seen_nonfinite, failures, batch_ids)
                    seen_nonfinite = int(self.nonfinite_steps.numpy())
                    progress.update(step)
                    batch = next(iterator)
                    continue
                failures = 0  # the limit counts consecutive failures: a clean stretch starts it over
                self._log(step, values)
                progress.update(
                    step,
                    [(name, values[name]) for name in ("loss", "heatmap", "sigma", "weight_decay")]
                    + [("sigma_mean", float(np.mean(self.sigmas.numpy())))],
                )
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

    def _recover(self, count: int, failures: int, batch_ids: Callable[[int], Sequence[str]] | None) -> int:
        """Restores the last checkpoint and lowers the learning rate; a TrainingError after too many in a row."""
        if failures > self.config.max_recoveries:
            failed = int(self.last_nonfinite_step.numpy())
            ids = f", batch samples {', '.join(batch_ids(failed))}" if batch_ids is not None else ""
            raise TrainingError(
                f"training stayed non-finite after {self.config.max_recoveries} consecutive "
                f"restarts with a lower learning rate: last at step {failed + 1}, learning rate "
                f"{self.learning_rate:g}{ids}"
            )
        old_rate = self.learning_rate
        scale = float(self.schedule.scale.numpy()) * self.config.nonfinite_lr_factor
        nonfinite = int(self.nonfinite_steps.numpy())
        self.checkpoint.restore(self.manager.latest_checkpoint)
        self.nonfinite_steps.assign(nonfinite)
        self.schedule.scale.assign(scale)
        new_rate = self.learning_rate
        step = int(self.step.numpy())
        log.warning(
            "%d step(s) had a non-finite loss or gradient and were not applied; restored the checkpoint "
            "of step %d and lowered the learning rate from %g to %g",
            count,
            step,
            old_rate,
            new_rate,
        )
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
        """Writes a checkpoint: model, optimizer slots, sigmas, step, loss scale, dropout random state."""
        step = int(self.step.numpy())
        self.manager.save(checkpoint_number=step)
        log.info(
            "step %d: checkpoint saved; sigmas %s",
            step,
            np.array2string(self.sigmas.numpy(), precision=3, max_line_width=200),
        )

    def save_weights(self, name: str = "last") -> Path:
        """Writes `<output_dir>/<name>.weights.h5` and the sigmas beside them as one model (scn_tf.model_dir),
        with `model_files` for the last weights: temporary names first, the sigmas file with digests last."""
        from scn_tf.model_dir import write_model

        return write_model(
            self.output_dir,
            name,
            self.model.save_weights,
            int(self.step.numpy()),
            self.sigmas.numpy(),
            self.model_files if name == "last" else {},
        )


class TrainingError(ValueError):
    """Training that cannot go on; the message is one line naming the step and what went wrong."""


def checkpoint_number(prefix: str | os.PathLike) -> int:
    return int(Path(prefix).name.split("-")[-1])


def checkpoint_numbers(folder: Path) -> list[int]:
    """The numbers N of the complete-looking checkpoints `folder/ckpt-N` (an index file and data), ascending."""
    numbers = []
    for index in folder.glob("ckpt-*.index"):
        suffix = index.name[len("ckpt-") : -len(".index")]
        if suffix.isdigit() and list(folder.glob(f"ckpt-{suffix}.data-*")):
            numbers.append(int(suffix))
    return sorted(numbers)


def checkpoint_prefixes(folder: Path) -> list[str]:
    return [str(folder / f"ckpt-{number}") for number in checkpoint_numbers(folder)]


def unreadable(prefix: str) -> str | None:
    """Why the checkpoint `prefix` cannot be read completely (every tensor, checksums included), or None."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, OSError, IndexError, RuntimeError) as error:
        return str(error).strip().splitlines()[0][:200]
    return None
