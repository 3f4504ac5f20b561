"""A training run's folder as a deployable model: config.json, <last|best>.weights.h5, sigmas.json (best:
best.sigmas.json), confidence.json (the training images' heatmap peaks, scn_tf.confidence), pixel_types.json
(the training images' pixel types and value range, which prediction checks its inputs against) and, where the
configuration matches histograms, preprocessing.json with the reference quantiles. The run folder also holds
data_digest.json, the digest of the training ids and annotations its first start trained on.

A model is written as one unit (`write_model`): the weights and the JSON files under temporary names, renamed,
and the sigmas file last, holding the SHA-256 of the weights and of those files. `load_model_dir` checks the
digests, so that weights, sigmas and configuration from different steps (a run killed while writing them)
are refused instead of used. Folders written before the digests load as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from scn_tf.configs import ExperimentConfig, load_config
from scn_tf.files import atomic_path, write_json_atomic

log = logging.getLogger("scn_tf")

PIXEL_TYPES_FILE = "pixel_types.json"
DATA_DIGEST_FILE = "data_digest.json"

ARCHITECTURE_KEYS = {  # what the weights and the meaning of their outputs depend on: fixed by a run's first start
    "network": (
        "network",
        "filters",
        "levels",
        "spatial_kernel_size",
        "spatial_downsampling",
        "padding",
        "unet_variant",
    ),
    "data": (
        "ndim",
        "num_landmarks",
        "image_size",
        "spacing",
        "image_spacing",
        "image_frame",
        "landmark_units",
        "smoothing_sigma",
        "normalization",
        "intensity_shift",
        "intensity_scale",
        "intensity_clamp",
        "percentiles",
        "histogram_reference",
    ),
}


class ModelDirError(ValueError):
    """A model directory that cannot be used; the message names the directory and what is missing."""


def write_model_files(
    output_dir: str | os.PathLike, config: ExperimentConfig, reference_quantiles: np.ndarray | None = None
) -> None:
    """The parts of a model directory that are not weights (the trainer writes those and sigmas.json)."""
    output_dir = Path(output_dir)
    write_json_atomic(output_dir / "config.json", config.to_dict())
    if reference_quantiles is not None:
        write_json_atomic(
            output_dir / "preprocessing.json", {"histogram_quantiles": np.asarray(reference_quantiles).tolist()}
        )


def sigmas_file(name: str) -> str:
    return "sigmas.json" if name == "last" else f"{name}.sigmas.json"


def digest(path: str | os.PathLike) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def write_model(
    output_dir: str | os.PathLike,
    name: str,
    save_weights: Callable[[Path], None],
    step: int,
    sigmas: np.ndarray,
    files: dict[str, dict],
) -> Path:
    """`<name>.weights.h5` (written by `save_weights(path)`), the JSON `files` ({file name: content}) and the
    sigmas file as one model: all under temporary names first, then renamed, the sigmas file with the digests
    of the others last. Returns the weights' path."""
    output_dir = Path(output_dir)
    weights = output_dir / f"{name}.weights.h5"
    digests = {}
    with atomic_path(weights) as temporary:
        save_weights(temporary)
        digests[weights.name] = digest(temporary)
        staged = []
        for file_name, content in files.items():
            target = output_dir / file_name
            text = json.dumps(content, indent=2)
            digests[file_name] = hashlib.sha256(text.encode()).hexdigest()
            staged.append((target, text))
    for target, text in staged:
        with atomic_path(target) as temporary:
            temporary.write_text(text)
    write_json_atomic(
        output_dir / sigmas_file(name), {"step": step, "sigmas": np.asarray(sigmas).tolist(), "digests": digests}
    )
    return weights


def check_consistent(model_dir: Path, name: str) -> None:
    """A ModelDirError where the digests in the sigmas file do not match the weights or configuration."""
    path = model_dir / sigmas_file(name)
    if not path.exists():
        return
    digests = json.loads(path.read_text()).get("digests")
    if digests is None:
        return  # written before digests were kept
    weights = f"{name}.weights.h5"
    for file_name in [weights] + [f for f in digests if f != weights]:
        if (
            file_name not in digests
            or not (model_dir / file_name).exists()
            or digest(model_dir / file_name) != digests[file_name]
        ):
            raise ModelDirError(
                f"{model_dir}: {file_name} is not the one {path.name} was written with (a run "
                "stopped while writing its model, or files copied from different runs); resume "
                "the run with --resume to write a consistent model"
            )


def architecture_differences(saved: ExperimentConfig, requested: ExperimentConfig) -> list[str]:
    """'section.key: saved X, requested Y' for each architecture or geometry key that differs."""
    differences = []
    for section, keys in ARCHITECTURE_KEYS.items():
        for key in keys:
            old, new = getattr(getattr(saved, section), key), getattr(getattr(requested, section), key)
            if old != new:
                differences.append(f"{section}.{key}: saved {old!r}, requested {new!r}")
    return differences


def check_resume(output_dir: str | os.PathLike, config: ExperimentConfig, data_digest: str | None = None) -> None:
    """Before a resumed run writes anything: its saved configuration must agree with the requested one on every
    architecture and geometry key (other keys, as the iterations and the learning rate, may change). Where the
    run has checkpoints and `data_digest` (preflight.check_training_data) differs from the one its first start
    recorded, a warning: the run continues on other training ids or annotations."""
    output_dir = Path(output_dir)
    path = output_dir / "config.json"
    if path.exists():
        differences = architecture_differences(load_config(path), config)
        if differences:
            raise ModelDirError(
                f"{output_dir}: --resume with another architecture or geometry than the saved run's "
                f"({'; '.join(differences)}); use the saved values or another --output_dir"
            )
    recorded = output_dir / DATA_DIGEST_FILE
    if data_digest is None or not recorded.exists() or not any((output_dir / "checkpoints").glob("ckpt-*")):
        return
    try:
        saved = json.loads(recorded.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("%s: unreadable (%s); cannot tell whether the training data changed", recorded, error)
        return
    if saved != data_digest:
        log.warning(
            "%s: --resume with other training data than the run started with: the training ids or their "
            "annotation rows differ from those %s recorded; the model will have learnt from both",
            output_dir,
            recorded.name,
        )


def write_data_digest(output_dir: str | os.PathLike, data_digest: str) -> None:
    """data_digest.json for a new run, once every check passed; a resumed run keeps its first start's, so that
    every resume compares with the data the run started with."""
    write_json_atomic(Path(output_dir) / DATA_DIGEST_FILE, {"sha256": data_digest})


def load_pixel_types(model_dir: str | os.PathLike) -> dict | None:
    """{"pixel_types": [...], "value_range": [minimum, maximum]} that training recorded for its images
    (most frequent type first), for io.conform_pixel_type; None, with a warning, for a model folder written
    before the record."""
    path = Path(model_dir) / PIXEL_TYPES_FILE
    if not path.exists():
        log.warning(
            "%s: no %s (a model written before it was recorded): the input images' pixel type cannot be "
            "checked against the training images'",
            model_dir,
            PIXEL_TYPES_FILE,
        )
        return None
    try:
        record = json.loads(path.read_text())
        types = [str(name) for name in record["pixel_types"]]
        value_range = [float(v) for v in record["value_range"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelDirError(f"{path}: not a pixel type record ({type(error).__name__}: {error})") from None
    if not types or len(value_range) != 2:
        raise ModelDirError(f"{path}: needs a non-empty pixel_types list and a [minimum, maximum] value_range")
    return {"pixel_types": types, "value_range": value_range}


def read_model_config(model_dir: str | os.PathLike) -> ExperimentConfig:
    """The configuration of a model folder (its config.json); a ModelDirError where there is none."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir}: model directory does not exist")
    config_path = model_dir / "config.json"
    if not config_path.exists():
        raise ModelDirError(f"{model_dir}: no config.json (is this a training run's output folder?)")
    return load_config(config_path)


def load_model_dir(model_dir: str | os.PathLike, checkpoint: str = "last"):
    """(config, model with weights, sigmas or None, reference quantiles or None) of a training run."""
    from scn_tf.models import build_model

    model_dir = Path(model_dir)
    config = read_model_config(model_dir)
    weights = model_dir / f"{checkpoint}.weights.h5"
    if not weights.exists():
        raise ModelDirError(
            f"{model_dir}: no {weights.name}; available: "
            f"{sorted(p.name for p in model_dir.glob('*.weights.h5')) or 'no weights at all'}"
        )
    check_consistent(model_dir, checkpoint)
    model = build_model(config.network, config.data)
    model(np.zeros((1, *reversed(config.data.image_size), 1), np.float32))
    model.load_weights(weights)
    sigmas = None
    sigmas_path = model_dir / sigmas_file(checkpoint)
    if not sigmas_path.exists():
        sigmas_path = model_dir / "sigmas.json"  # best weights of a run written before best.sigmas.json
    if sigmas_path.exists():
        sigmas = np.array(json.loads(sigmas_path.read_text())["sigmas"])
    quantiles = None
    if config.data.normalization == "histogram_matching":
        path = model_dir / "preprocessing.json"
        if not path.exists():
            raise ModelDirError(
                f"{model_dir}: the configuration matches histograms but preprocessing.json "
                "with the reference quantiles is missing"
            )
        quantiles = np.array(json.loads(path.read_text())["histogram_quantiles"])
    return config, model, sigmas, quantiles


def data_differences(first: ExperimentConfig, other: ExperimentConfig) -> list[str]:
    """'data.key: X against Y' for each key of the data sections that differs."""
    mine, theirs = first.data.to_dict(), other.data.to_dict()
    return [
        f"data.{key}: {mine.get(key)!r} against {theirs.get(key)!r}"
        for key in sorted(set(mine) | set(theirs))
        if mine.get(key) != theirs.get(key)
    ]


def check_same_data(model_dirs: list[str], configs: list[ExperimentConfig]) -> None:
    """A ModelDirError naming the differing keys where the models' `data` configurations are not equal: an
    ensemble averages heatmaps of one input geometry, intensity mapping and landmark set."""
    for model_dir, config in zip(model_dirs[1:], configs[1:], strict=True):
        differences = data_differences(configs[0], config)
        if differences:
            raise ModelDirError(
                f"{model_dir}: its data configuration differs from {model_dirs[0]}'s "
                f"({'; '.join(differences)}); an ensemble needs models of the same data configuration"
            )


def merged_pixel_types(records: list[dict | None]) -> dict | None:
    """One pixel type record of several models (load_pixel_types): every type (the first model's order first)
    and the widest value range; None where any model has none."""
    if not records or any(record is None for record in records):
        return None
    types: list[str] = []
    for record in records:
        types += [t for t in record["pixel_types"] if t not in types]
    low = min(record["value_range"][0] for record in records)
    high = max(record["value_range"][1] for record in records)
    return {"pixel_types": types, "value_range": [low, high]}
