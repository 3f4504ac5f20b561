"""A trained model as files that run without scn_tf: the network and its decoding in one Keras model, exported
by `model.export` (ONNX through tf2onnx, or a TensorFlow SavedModel), and preprocessing.json, everything a
predictor needs to go from an image file to the network input and back to the image's coordinates
(examples/onnx_predict.py reads both with numpy, SimpleITK and onnxruntime only)."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

import keras
import numpy as np

from scn_tf import __version__
from scn_tf.calibration import Calibration
from scn_tf.configs import ExperimentConfig
from scn_tf.evaluation import coordinate_units
from scn_tf.heatmaps import decode_heatmaps

FORMATS = {"onnx": "model.onnx", "saved_model": "saved_model"}  # --format: the file or folder it writes
KERAS_FORMATS = {"onnx": "onnx", "saved_model": "tf_saved_model"}


def wrapper_model(model: keras.Model, config: ExperimentConfig) -> keras.Model:
    """A functional model around `model`: input "image" (batch, [z,] y, x, 1), the preprocessed network image;
    outputs "heatmaps" (batch, [z,] y, x, N) and, for 2D, "coordinates" (batch, N, 2), the decoded (x, y) in
    network pixels, and "peaks" (batch, N), the heatmaps' maxima. 3D volumes run as windows along z whose
    heatmaps are merged before decoding, so a 3D model outputs heatmaps only."""
    data = config.data
    image = keras.Input((*reversed(data.image_size), 1), name="image")
    heatmaps = keras.layers.Identity(name="heatmaps")(model(image))
    outputs = {"heatmaps": heatmaps}
    if data.ndim == 2:
        coordinates, peaks = decode_heatmaps(heatmaps)
        outputs["coordinates"] = keras.layers.Identity(name="coordinates")(coordinates)
        outputs["peaks"] = keras.layers.Identity(name="peaks")(peaks)
    wrapper = keras.Model(image, outputs, name="scn_export")
    wrapper(np.zeros((1, *reversed(data.image_size), 1), np.float32))  # model.export needs a called model
    return wrapper


def export_model(wrapper: keras.Model, path: str | os.PathLike, file_format: str) -> None:
    """Writes `wrapper` by Keras' `model.export` in `file_format` ("onnx" or "saved_model") to `path`, without
    tf2onnx's INFO lines and the FutureWarning of Keras' numpy-2 patch of tf2onnx."""
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    with warnings.catch_warnings(), einsum_kept():
        warnings.simplefilter("ignore", FutureWarning)
        wrapper.export(str(path), format=KERAS_FORMATS[file_format], verbose=False)


@contextlib.contextmanager
def einsum_kept():
    """tf2onnx without its einsum optimizer, which decomposes Einsum nodes into ONNX primitives by searching
    their orders: some 15,000 builds for the 3D upsampling's rank-6 einsum (24 s for a 4-filter network),
    where onnxruntime runs the Einsum node itself (as fast: docs/export.md)."""
    from tf2onnx import optimizer

    removed = optimizer._optimizers.pop("einsum_optimizer", None)
    try:
        yield
    finally:
        if removed is not None:
            optimizer._optimizers["einsum_optimizer"] = removed


def preprocessing(
    config: ExperimentConfig,
    file_format: str,
    quantiles: np.ndarray | None,
    calibration: Calibration | None,
    checkpoint: str,
) -> dict:
    """The content of preprocessing.json: see docs/export.md."""
    data = config.data
    size = list(data.image_size)
    return {
        "scn_tf_version": __version__,
        "format": file_format,
        "model": FORMATS[file_format],
        "checkpoint": checkpoint,
        "ndim": data.ndim,
        "input": {"name": "image", "shape": [None, *reversed(size), 1], "layout": "batch, [z,] y, x, channel"},
        "outputs": ["heatmaps", "coordinates", "peaks"] if data.ndim == 2 else ["heatmaps"],
        "landmarks": {
            "count": data.num_landmarks,
            "names": data.landmark_names,
            "units": data.landmark_units,
            "unit_symbol": coordinate_units(data.landmark_units),
        },
        "image": {"frame": data.image_frame, "spacing": data.image_spacing},
        "smoothing_sigma_mm": data.smoothing_sigma,
        "histogram_quantiles": None if quantiles is None else np.asarray(quantiles).tolist(),
        "network_grid": {
            "size": size,
            "spacing": data.spacing,
            "direction": "the image's",
            "centre": "the image's centre voxel (index (size - 1) / 2) on the grid's centre",
            "interpolation": "linear",
            "outside_value": data.outside_value,
        },
        "intensity": {
            "normalization": data.normalization,
            "shift": data.intensity_shift,
            "scale": data.intensity_scale,
            "clamp": data.intensity_clamp,
            "percentiles": data.percentiles,
        },
        "windows": None
        if data.ndim == 2
        else {"length": size[2], "step": min(data.window_step, size[2]), "merge": "maximum"},
        "mirror": "off",
        "calibration": None if calibration is None else calibration.to_dict(),
        "present_min_peak": present_min_peak(calibration),
    }


def present_min_peak(calibration: Calibration | None) -> list[float] | None:
    """Per landmark, the lowest heatmap peak at which the calibration reports it present (None: always)."""
    if calibration is None or calibration.present_threshold is None:
        return None
    return [float(v) for v in calibration.present_threshold * calibration.median_peaks]


def written_files(folder: str | os.PathLike) -> list[str]:
    """The files under `folder`, relative to it."""
    folder = Path(folder)
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
