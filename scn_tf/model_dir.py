"""A training run's folder as a deployable model: config.json, <last|best>.weights.h5, sigmas.json,
confidence.json (the training images' heatmap peaks, scn_tf.confidence) and,
where the configuration matches histograms, preprocessing.json with the reference quantiles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from scn_tf.configs import ExperimentConfig, load_config
from scn_tf.files import write_json_atomic


class ModelDirError(ValueError):
    """A model directory that cannot be used; the message names the directory and what is missing."""


def write_model_files(output_dir: str | os.PathLike, config: ExperimentConfig,
                      reference_quantiles: np.ndarray | None = None) -> None:
    """The parts of a model directory that are not weights (the trainer writes those and sigmas.json)."""
    output_dir = Path(output_dir)
    write_json_atomic(output_dir / "config.json", config.to_dict())
    if reference_quantiles is not None:
        write_json_atomic(output_dir / "preprocessing.json",
                          {"histogram_quantiles": np.asarray(reference_quantiles).tolist()})


def load_model_dir(model_dir: str | os.PathLike, checkpoint: str = "last"):
    """(config, model with weights, sigmas or None, reference quantiles or None) of a training run."""
    from scn_tf.models import build_model

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir}: model directory does not exist")
    config_path = model_dir / "config.json"
    if not config_path.exists():
        raise ModelDirError(f"{model_dir}: no config.json (is this a training run's output folder?)")
    config = load_config(config_path)
    weights = model_dir / f"{checkpoint}.weights.h5"
    if not weights.exists():
        raise ModelDirError(f"{model_dir}: no {weights.name}; available: "
                            f"{sorted(p.name for p in model_dir.glob('*.weights.h5')) or 'no weights at all'}")
    model = build_model(config.network, config.data)
    model(np.zeros((1, *reversed(config.data.image_size), 1), np.float32))
    model.load_weights(weights)
    sigmas = None
    if (model_dir / "sigmas.json").exists():
        sigmas = np.array(json.loads((model_dir / "sigmas.json").read_text())["sigmas"])
    quantiles = None
    if config.data.normalization == "histogram_matching":
        path = model_dir / "preprocessing.json"
        if not path.exists():
            raise ModelDirError(f"{model_dir}: the configuration matches histograms but preprocessing.json "
                                "with the reference quantiles is missing")
        quantiles = np.array(json.loads(path.read_text())["histogram_quantiles"])
    return config, model, sigmas, quantiles
