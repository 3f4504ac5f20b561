"""One training run end to end: data, model, training loop, evaluation of the last weights, reports.

Used by the per-dataset scripts in experiments/ and by scn-train. The run folder is a model folder that
scn-predict accepts (config.json, last.weights.h5, sigmas.json, confidence.json), plus checkpoints/, logs/,
predictions.csv, metrics.json and the evaluation reports.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import SimpleITK as sitk

from scn_tf import calibration
from scn_tf.confidence import measure_reference, write_reference
from scn_tf.configs import NETWORK_NAMES, ExperimentConfig
from scn_tf.data import cropping
from scn_tf.data.feed import ProcessFeed
from scn_tf.data.io import write_landmarks_csv
from scn_tf.data.pipeline import LandmarkSource, make_dataset, sample_order
from scn_tf.distribution import distribute_batches, is_chief, make_strategy, worker_dir
from scn_tf.evaluation import Normalization, coordinate_units, error_units, evaluate
from scn_tf.files import (
    LOCK_NAME,
    STAGING_PREFIX,
    OutputError,
    RunLock,
    StagedOutputs,
    check_writable_dir,
    inside,
    write_json_atomic,
    write_text_atomic,
)
from scn_tf.inference import Predictor
from scn_tf.listing import shortened
from scn_tf.model_dir import DATA_DIGEST_FILE, PIXEL_TYPES_FILE, check_resume, write_data_digest, write_model_files
from scn_tf.models import build_model, count_trainable_weights
from scn_tf.preflight import check_inputs, check_training_data
from scn_tf.progress import progress_bar
from scn_tf.reports import REPORT_FILES, write_reports
from scn_tf.runtime import dtype_policy, seeded
from scn_tf.training import Trainer, backends
from scn_tf.visualization import save_overlay

log = logging.getLogger("scn_tf")

# Files written into a run folder before the run starts: by scn_tf.script_runs and experiments/skull2d.py.
PREPARED_FILES = ("run.log", "run.json", "annotations_mean_mm.csv")
CALIBRATION_IDS_FILE = "calibration_ids.txt"
# What a run writes into its folder: an --overwrite run removes these of the earlier run first.
RUN_OUTPUTS = (
    "checkpoints",
    "logs",
    "overlays",
    "config.json",
    "preprocessing.json",
    PIXEL_TYPES_FILE,
    DATA_DIGEST_FILE,
    "*.weights.h5",
    "sigmas.json",
    "*.sigmas.json",
    "confidence.json",
    calibration.CALIBRATION_FILE,
    CALIBRATION_IDS_FILE,
    "best.json",
    "metrics_best.json",
    "predictions.csv",
    "sigmas.png",
    *REPORT_FILES,
)


def probe_input_shape(model: keras.Model) -> tuple[int, ...]:
    """A small input on which `model` can be built (its weights do not depend on the input size)."""
    hyperparameters = model.get_config()
    levels = hyperparameters["levels"]
    downsampling = hyperparameters.get("spatial_downsampling", 1)
    kernel = hyperparameters.get("spatial_kernel_size", 1)
    multiple = math.lcm(2 ** (levels - 1), downsampling)
    side = multiple * math.ceil(max(downsampling * (kernel // 2 + 1), 2**levels) / multiple)
    return (1,) + (side,) * hyperparameters["ndim"] + (1,)


def trainable_weights(config: ExperimentConfig) -> int:
    model = build_model(config.network, config.data)
    return count_trainable_weights(model, probe_input_shape(model))


def split_validation(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation): a seeded random `fraction` of the ids held out (at least one if fraction > 0)."""
    ids = list(ids)
    if fraction <= 0:
        return ids, []
    count = max(1, int(round(fraction * len(ids))))
    if count >= len(ids):
        raise ValueError(f"validation_fraction {fraction} leaves no training ids out of {len(ids)}")
    held_out = set(np.random.default_rng(seed).choice(len(ids), count, replace=False).tolist())
    return ([i for k, i in enumerate(ids) if k not in held_out], [i for k, i in enumerate(ids) if k in held_out])


def check_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> None:
    """An OutputError unless training may write into `output_dir`: a new or empty folder, its own run with
    `resume`, or any folder with `overwrite` (whose earlier run is then removed)."""
    if resume and overwrite:
        raise OutputError("--resume continues the run in --output_dir, --overwrite replaces it: give one of them")
    if not output_dir.exists() or overwrite:
        return
    if not output_dir.is_dir():
        raise OutputError(f"{output_dir}: exists and is not a folder")
    ignored = (LOCK_NAME, STAGING_PREFIX, *PREPARED_FILES)
    entries = sorted(path.name for path in output_dir.iterdir() if not path.name.startswith(ignored))
    is_run = (output_dir / "config.json").exists() or (output_dir / "checkpoints").exists()
    if resume and (is_run or not entries):
        return
    if is_run:
        raise OutputError(
            f"{output_dir} already holds a run: pass --resume to continue it, --overwrite to replace it, "
            "or choose another --output_dir"
        )
    if entries:
        listed = shortened(entries, 5)
        raise OutputError(
            f"{output_dir}: holds {listed}, not a run{' to resume' if resume else ''}; training writes only "
            "into a new or empty folder: choose another --output_dir, or pass --overwrite"
        )


def remove_run_outputs(output_dir: Path) -> None:
    """Removes what an earlier run wrote into `output_dir` (RUN_OUTPUTS), so that none of it passes for this run's."""
    removed = [path for pattern in RUN_OUTPUTS for path in sorted(output_dir.glob(pattern))]
    for path in removed:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if removed:
        log.warning("--overwrite: removed the earlier run's %s", ", ".join(path.name for path in removed))


class Experiment:
    """Trains the configured network on `train_ids` and evaluates the last weights on `test_ids`."""

    def __init__(
        self,
        config: ExperimentConfig,
        data_dir: str | os.PathLike,
        train_ids: Sequence[str],
        test_ids: Sequence[str],
        output_dir: str | os.PathLike,
        resume: bool = False,
        eval_every: int = 0,
        validation_fraction: float = 0.0,
        workers: int = 2,
        calibration_fraction: float = 0.0,
        strategy: str = "none",
        overwrite: bool = False,
    ):
        self.config = config
        self.strategy_name = strategy
        self.data_dir = Path(data_dir)
        self.output_dir = Path(output_dir)
        self.eval_every = eval_every
        self.workers = workers
        self.overwrite = overwrite
        check_output_dir(self.output_dir, resume, overwrite)
        if not 0.0 <= calibration_fraction < 1.0:
            raise ValueError(f"calibration_fraction must lie in [0, 1), got {calibration_fraction}")
        train_ids, self.calibration_ids = split_validation(train_ids, calibration_fraction, config.training.seed + 1)
        self.train_ids, self.validation_ids = split_validation(train_ids, validation_fraction, config.training.seed)
        self.test_ids = list(test_ids)
        self.best_error = math.inf

    def run(self) -> dict:
        """Checks everything the run needs before it writes anything, then trains under the run folder's lock
        and evaluates the last weights on the test ids; returns their metrics ({} without test ids or off the
        chief). Seeds and the dtype policy hold for the run only. Under a backend other than TensorFlow
        there is no strategy (one device) and the input comes from a process pool (scn_tf.data.feed)."""
        training = self.config.training
        backends.check_supported(training, self.strategy_name)
        tensorflow = backends.current() == "tensorflow"
        # first: multi-worker collectives are set up before other ops
        strategy = make_strategy(self.strategy_name) if tensorflow else None
        with seeded(training.seed), dtype_policy("mixed_float16" if training.mixed_precision else "float32"):
            return self._run(strategy)

    def _run(self, strategy) -> dict:
        config = self.config
        chief = is_chief()
        run_dir = worker_dir(self.output_dir)
        check_inputs(
            config,
            self.data_dir,
            {
                name: ids
                for name, ids in (
                    ("training", self.train_ids + self.validation_ids),
                    ("calibration", self.calibration_ids),
                    ("test", self.test_ids),
                )
                if ids
            },
        )
        data_digest = check_training_data(
            config, self.data_dir, self.train_ids + self.validation_ids + self.calibration_ids, self.test_ids
        )
        if not self.overwrite:  # an --overwrite run replaces the earlier one, whatever it was
            check_resume(self.output_dir, config, data_digest)
            backends.check_checkpoints(run_dir / "checkpoints")
        log.info("loading %d training images", len(self.train_ids))
        train = LandmarkSource(config.data, self.data_dir, self.train_ids, self.workers)
        validation = (
            LandmarkSource(config.data, self.data_dir, self.validation_ids, self.workers)
            if self.validation_ids
            else None
        )
        if self.test_ids:
            log.info("loading %d test images", len(self.test_ids))
        test = LandmarkSource(config.data, self.data_dir, self.test_ids, self.workers) if self.test_ids else None
        check_writable_dir(run_dir)
        with RunLock(run_dir), contextlib.ExitStack() as stack:
            if self.overwrite and chief:
                remove_run_outputs(self.output_dir)
            if chief and not backends.checkpoint_backends(self.output_dir / "checkpoints"):
                write_data_digest(self.output_dir, data_digest)  # a new run, all checks passed
            batches = self._batches(strategy, train, stack)
            return self._train(strategy, chief, run_dir, train, validation, test, batches)

    def _batches(self, strategy, train: LandmarkSource, stack: contextlib.ExitStack):
        """batches(start_step) -> the training batches from that step on: a tf.data pipeline per replica under
        TensorFlow, a process pool (closed with `stack`) under other backends; the same samples either way."""
        training = self.config.training
        if strategy is None:
            feed = ProcessFeed(
                train, self.config.augmentation, training.seed, training.batch_size, workers=self.workers
            )
            return stack.enter_context(feed).batches

        def make(batch_size: int, start_step: int, shard: tuple[int, int]):
            return make_dataset(
                train,
                self.config.augmentation,
                seed=training.seed,
                batch_size=batch_size,
                start_step=start_step,
                workers=self.workers,
                shard=shard,
                sitk_threads=1,
            )  # the workers are the parallelism: no oversubscription

        return lambda start_step: distribute_batches(strategy, make, training.batch_size, start_step)

    def _train(
        self,
        strategy,
        chief: bool,
        run_dir: Path,
        train: LandmarkSource,
        validation: LandmarkSource | None,
        test: LandmarkSource | None,
        batches,
    ) -> dict:
        config = self.config
        model_files = {"config.json": config.to_dict()}
        if train.reference_quantiles is not None:
            model_files["preprocessing.json"] = {"histogram_quantiles": np.asarray(train.reference_quantiles).tolist()}
        model_files[PIXEL_TYPES_FILE] = train.pixel_type_record()
        if chief and not backends.checkpoint_backends(run_dir / "checkpoints"):
            write_model_files(self.output_dir, config, train.reference_quantiles)  # a new run: its configuration
        if strategy is not None and strategy.num_replicas_in_sync > 1:
            log.info(
                "%s strategy: %d replicas, global batch %d",
                self.strategy_name,
                strategy.num_replicas_in_sync,
                strategy.num_replicas_in_sync * config.training.batch_size,
            )
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            model = build_model(config.network, config.data)
        trainer = Trainer(
            model,
            config.data.num_landmarks,
            config.training,
            run_dir,
            strategy,
            model_files=model_files if chief else None,
        )

        def batch_ids(step: int) -> list[str]:
            size = config.training.batch_size
            return [
                train.ids[sample_order(len(train.ids), config.training.seed, step * size + k, True)[0]]
                for k in range(size)
            ]

        def periodic(step: int) -> dict:
            results = {}
            if validation is not None:
                metrics = self.evaluate(model, trainer, validation, train.reference_quantiles)
                results.update({f"validation_{k}": metrics[k] for k in ("pe_mean", "pe_median", "id_rate")})
                if metrics["pe_mean"] < self.best_error:
                    self.best_error = metrics["pe_mean"]
                    trainer.save_weights("best")
                    write_json_atomic(self.output_dir / "best.json", {"step": step, "validation": metrics})
            if test is not None and step < config.training.iterations:
                metrics = self.evaluate(model, trainer, test, train.reference_quantiles)
                results.update({f"test_{k}": metrics[k] for k in ("pe_mean", "pe_median", "id_rate")})
            return results

        needs_periodic = chief and self.eval_every and (validation is not None or self.test_ids)
        trainer.fit(
            batches, evaluate=periodic if needs_periodic else None, eval_every=self.eval_every, batch_ids=batch_ids
        )
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)
            return {}
        log.info("heatmap peaks of the %d training images (the scale of scn-predict's confidence)", len(train.ids))
        predictor = Predictor(model, config.data, trainer.sigma_values(), train.reference_quantiles)
        write_reference(self.output_dir, measure_reference(predictor, train.images, train.points))
        if self.calibration_ids:
            self.calibrate(predictor)
        if test is None:
            return {}
        log.info("evaluating the last weights on %d test images", len(self.test_ids))
        metrics = self.evaluate(model, trainer, test, train.reference_quantiles, write=True)
        if validation is not None and (self.output_dir / "best.weights.h5").exists():
            best_model = build_model(config.network, config.data)
            best_model(np.zeros(probe_input_shape(best_model), np.float32))
            best_model.load_weights(self.output_dir / "best.weights.h5")
            best = self.evaluate(best_model, trainer, test, train.reference_quantiles)
            write_json_atomic(self.output_dir / "metrics_best.json", best)
        return metrics

    def calibrate(self, predictor: Predictor) -> None:
        """calibration.json from the held-out calibration ids (listed in calibration_ids.txt)."""
        data = self.config.data
        write_text_atomic(self.output_dir / CALIBRATION_IDS_FILE, "".join(f"{i}\n" for i in self.calibration_ids))
        log.info("calibrating on %d held-out images", len(self.calibration_ids))
        source = LandmarkSource(data, self.data_dir, self.calibration_ids, self.workers, verbose=False)
        result = calibration.measure(
            predictor,
            source.images,
            source.points,
            source.annotations,
            data.landmark_units,
            crop_seed=self.config.training.seed + 1,
            crop_outside=cropping.default_outside(data.num_landmarks),
            progress=progress_bar(len(self.calibration_ids), "image"),
        )
        calibration.write_calibration(self.output_dir, result)

    def evaluate(self, model, trainer: Trainer, source: LandmarkSource, quantiles, write: bool = False) -> dict:
        """Predicts every image of `source` and computes the paper's metrics (and writes them if asked)."""
        data = self.config.data
        predictor = Predictor(model, data, trainer.sigma_values(), quantiles)
        progress = progress_bar(len(source.ids), "image", write)
        predictions, details = {}, {}
        for image_id in source.ids:
            prediction = predictor.predict_prepared(source.images[image_id], image_id)
            predictions[image_id] = prediction.in_units(data.landmark_units)
            details[image_id] = prediction
            progress.add(1)
        truth = np.stack([source.annotations[i] for i in source.ids])
        metrics = evaluate(
            source.ids,
            np.stack([predictions[i] for i in source.ids]),
            truth,
            data.outlier_radii,
            Normalization.parse(data.pe_normalization),
        )
        if write:
            self.write_results(source, predictions, details, metrics)
        return metrics

    def write_results(self, source: LandmarkSource, predictions: dict, details: dict, metrics: dict) -> None:
        """predictions.csv, the reports and the overlays of the first four images, replaced together."""
        data = self.config.data
        sigmas = details[source.ids[0]].sigma_in(data.landmark_units)
        shown = source.ids[:4]
        staged = StagedOutputs(overwrite=True)
        staged.claim(self.output_dir / "predictions.csv")
        reports = REPORT_FILES + (("sigmas.png",) if sigmas is not None else ())
        staged.claim_all(self.output_dir, reports)
        staged.claim_all(self.output_dir / "overlays", [f"{image_id}.png" for image_id in shown])
        with staged:
            write_landmarks_csv(staged.path(self.output_dir / "predictions.csv"), predictions)
            write_reports(
                staged.folder(self.output_dir),
                metrics,
                NETWORK_NAMES[self.config.network.network],
                data.landmark_names,
                None if sigmas is None else sigmas.tolist(),
                error_units(data.landmark_units, data.pe_normalization),
                coordinate_units(data.landmark_units),
            )
            for image_id in shown:
                image = source.images[image_id]
                save_overlay(
                    staged.path(inside(self.output_dir / "overlays", f"{image_id}.png")),
                    sitk.GetArrayFromImage(image),
                    image.GetSpacing(),
                    landmarks=source.pixel_annotations(image_id),
                    predicted=details[image_id].indices,
                    names=data.landmark_names,
                    title=f"{image_id}: annotation (o) and prediction (x)",
                )
