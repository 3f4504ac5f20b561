"""The training loop, one copy for every backend: steps, logs, checkpoints, recovery, the final model.

Each step computes the Gaussian targets from the landmark coordinates and the current sigmas, the loss of
eq. (2) and its gradients, clips them by global norm if asked, and applies them only if the loss and the
gradients are finite; with mixed precision the loss is scaled dynamically (scn_tf.training.step). After an
applied step the learned sigmas are clamped to at least `sigma_min` network pixels (the original trains
sigma directly, which a large learning rate can drive negative). The backend's engine (TensorFlow: a
tf.function on every replica of a strategy; JAX: a jitted pure function of the state) runs the step and
writes checkpoints. The loop here only fetches values every `log_every` steps; when it sees that steps were
skipped as non-finite it restores the last checkpoint and lowers the learning rate, and gives up with a
TrainingError after `max_recoveries` such restarts in a row. A checkpoint holds everything a step depends
on (weights, optimizer slots, sigmas, loss scale, learning-rate scale, the dropout layers' random state), so
that a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import keras
import numpy as np

from scn_tf.configs import TrainingConfig
from scn_tf.progress import progress_bar
from scn_tf.training.backends import check_checkpoints, make_engine
from scn_tf.training.summaries import summary_writer

log = logging.getLogger("scn_tf")

Batch = tuple  # (images (B, *spatial, C), coords (B, N, d), valid (B, N))
PROGRESS_TERMS = ("loss", "heatmap", "sigma", "weight_decay")


class TrainingError(ValueError):
    """Training that cannot go on; the message is one line naming the step and what went wrong."""


class Trainer:
    """Trains `model` and its per-landmark sigmas; owns the engine (optimizer, step, checkpoints) and the logs
    in `output_dir`. `strategy` (a tf.distribute strategy) is for the TensorFlow backend only."""

    def __init__(
        self,
        model: keras.Model,
        num_landmarks: int,
        config: TrainingConfig,
        output_dir: str | os.PathLike,
        strategy=None,
        model_files: dict[str, dict] | None = None,
    ):
        self.model = model
        self.model_files = model_files or {}  # JSON files written with the last weights (config.json, ...)
        self.config = config
        self.output_dir = Path(output_dir)
        self.engine = make_engine(model, num_landmarks, config, self.output_dir, strategy)
        self.train_step = self.engine.train_step
        self._writer = None

    @property
    def optimizer(self) -> keras.optimizers.Optimizer:
        self.sync()
        return self.engine.optimizer

    def sync(self) -> None:
        """Brings the model's, the sigmas' and the optimizer's Keras variables up to date with the engine's state
        (under JAX the state lives apart from them while training; `fit` syncs before it evaluates or saves)."""
        self.engine.sync()

    @property
    def learning_rate(self) -> float:
        return self.engine.learning_rate

    @property
    def current_step(self) -> int:
        return self.engine.counter("step")

    @property
    def nonfinite_steps(self) -> int:
        return self.engine.counter("nonfinite_steps")

    def sigma_values(self) -> np.ndarray:
        """The learned sigmas (network pixels), one per landmark."""
        return self.engine.sigma_values()

    def build(self, image_shape: Iterable[int]) -> None:
        """Creates the model's weights and the optimizer's slots, so that a checkpoint can restore both."""
        self.engine.build(image_shape)

    def intact_checkpoint(self) -> int | None:
        """The number of the newest checkpoint in `output_dir` whose every tensor reads back, or None.

        The checkpoints are found by their files (a garbage index would otherwise restart from step 0); one
        that cannot be read completely (a truncated or overwritten file) is skipped with a warning naming it,
        and the previous one is used.
        """
        for number in reversed(self.engine.checkpoint_numbers()):
            problem = self.engine.unreadable(number)
            if problem is None:
                return number
            log.warning(
                "checkpoint %s is corrupt (%s); falling back to the previous one",
                self.engine.checkpoint_path(number),
                problem,
            )
        return None

    def restore(self, number: int | None = None) -> int:
        """Restores checkpoint `number` (default: the newest intact one), if any; returns the step it resumes from."""
        check_checkpoints(self.engine.checkpoint_dir)
        number = self.intact_checkpoint() if number is None else number
        if number is None:
            if self.engine.checkpoint_numbers():
                raise TrainingError(f"{self.engine.checkpoint_dir}: no intact checkpoint to resume from")
            return self.current_step
        try:
            self.engine.load(number)
        except ValueError as error:
            raise TrainingError(str(error)) from error
        log.info("restored %s (step %d)", self.engine.checkpoint_path(number), self.current_step)
        return self.current_step

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
        config, engine = self.config, self.engine
        check_checkpoints(engine.checkpoint_dir)
        resume_from = self.intact_checkpoint()
        start = 0 if resume_from is None else engine.stored_step(resume_from)
        iterator = iter(batches(start) if callable(batches) else batches)
        first = next(iterator)
        self.build(engine.batch_shape(first[0]))
        step = self.restore(resume_from)
        if not engine.checkpoint_numbers():
            engine.save(step)
        self._writer = self._writer or summary_writer(self.output_dir / "logs")
        progress = progress_bar(config.iterations)
        progress.update(step)
        seen_nonfinite, failures = self.nonfinite_steps, 0
        values, metrics, batch = {}, {}, first
        while step < config.iterations:
            terms = self.train_step(*batch)
            step += 1
            if step % config.log_every == 0 or step == config.iterations:
                values = {name: float(value) for name, value in terms.items()}
                nonfinite = self.nonfinite_steps
                if nonfinite > seen_nonfinite:
                    failures += 1
                    step = self._recover(nonfinite - seen_nonfinite, failures, batch_ids)
                    seen_nonfinite = self.nonfinite_steps
                    progress.update(step)
                    batch = next(iterator)
                    continue
                failures = 0  # the limit counts consecutive failures: a clean stretch starts it over
                sigma_mean = float(np.mean(self.sigma_values()))
                self._log(step, values)
                progress.update(step, [(name, values[name]) for name in PROGRESS_TERMS] + [("sigma_mean", sigma_mean)])
            if step % config.checkpoint_every == 0 or step == config.iterations:
                self.save_checkpoint()
            if evaluate is not None and eval_every and step % eval_every == 0 and step < config.iterations:
                metrics = self._evaluate(evaluate, step)
            if step < config.iterations:
                batch = next(iterator)
        if evaluate is not None:
            metrics = self._evaluate(evaluate, step)
        self.save_weights()
        self._writer.flush()
        return {**values, **metrics}

    def _recover(self, count: int, failures: int, batch_ids: Callable[[int], Sequence[str]] | None) -> int:
        """Restores the last checkpoint and lowers the learning rate; a TrainingError after too many in a row."""
        engine = self.engine
        if failures > self.config.max_recoveries:
            failed = engine.counter("last_nonfinite_step")
            ids = f", batch samples {', '.join(batch_ids(failed))}" if batch_ids is not None else ""
            raise TrainingError(
                f"training stayed non-finite after {self.config.max_recoveries} consecutive "
                f"restarts with a lower learning rate: last at step {failed + 1}, learning rate "
                f"{self.learning_rate:g}{ids}"
            )
        old_rate = self.learning_rate
        scale = engine.learning_rate_scale * self.config.nonfinite_lr_factor
        nonfinite = self.nonfinite_steps
        engine.load(engine.checkpoint_numbers()[-1])
        engine.set_counter("nonfinite_steps", nonfinite)
        engine.learning_rate_scale = scale
        step = self.current_step
        log.warning(
            "%d step(s) had a non-finite loss or gradient and were not applied; restored the checkpoint "
            "of step %d and lowered the learning rate from %g to %g",
            count,
            step,
            old_rate,
            self.learning_rate,
        )
        return step

    def _log(self, step: int, values: dict) -> None:
        scalars = {f"train/{name}": value for name, value in values.items()}
        scalars["train/learning_rate"] = self.learning_rate
        scalars.update({f"sigma/{index:02d}": float(sigma) for index, sigma in enumerate(self.sigma_values())})
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, step=step)

    def _evaluate(self, evaluate: Callable[[int], dict], step: int) -> dict:
        self.sync()
        metrics = evaluate(step)
        if not metrics:
            return metrics
        for name, value in metrics.items():
            self._writer.add_scalar(f"eval/{name}", float(value), step=step)
        log.info("step %d: %s", step, ", ".join(f"{name} {value:.4g}" for name, value in metrics.items()))
        return metrics

    def save_checkpoint(self) -> None:
        """Writes a checkpoint: model, optimizer slots, sigmas, step, loss scale, dropout random state."""
        step = self.current_step
        self.engine.save(step)
        if self._writer is not None:
            self._writer.flush()
        log.info(
            "step %d: checkpoint saved; sigmas %s",
            step,
            np.array2string(self.sigma_values(), precision=3, max_line_width=200),
        )

    def save_weights(self, name: str = "last") -> Path:
        """Writes `<output_dir>/<name>.weights.h5` and the sigmas beside them as one model (scn_tf.model_dir),
        with `model_files` for the last weights: temporary names first, the sigmas file with digests last.
        The Keras variables are brought up to date first, so the model can be used after."""
        from scn_tf.model_dir import write_model

        self.sync()
        return write_model(
            self.output_dir,
            name,
            self.engine.save_weights,
            self.current_step,
            self.sigma_values(),
            self.model_files if name == "last" else {},
        )
