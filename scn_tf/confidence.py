"""A scale for the heatmap peak: how it compares with the peaks the model gives its own training images.

At the end of training the last weights are run on every training image and each landmark's peak is kept
(`confidence.json` in the model folder). A new image's peak then reads as the fraction of the training
images' peaks below it (0.5: a typical training image; 0.01: lower than on 99% of them), and the image as a
whole as the median over landmarks of its peak relative to the training images' median peak. An image far
below 1 (wrong orientation, another modality, a cut field of view) is flagged.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from scn_tf.files import write_json_atomic

REFERENCE_FILE = "confidence.json"
LOW_RELATIVE_CONFIDENCE = 0.5  # an image whose median landmark peaks at under half the training images' median
MEANING = (
    "confidence: the landmark's heatmap peak; confidence_fraction: the fraction of the training images' "
    "own peaks (of the same landmark, same weights) below it; relative_confidence: the median over "
    "landmarks of the peak divided by the training images' median peak"
)
UNAVAILABLE = (
    "confidence: the landmark's heatmap peak; its scale is unavailable: the model folder has no "
    f"{REFERENCE_FILE} for these weights"
)


@dataclasses.dataclass
class ConfidenceReference:
    """The heatmap peaks (M, N) the model gives its M training images; NaN where a landmark is not annotated."""

    image_ids: list[str]
    peaks: np.ndarray
    checkpoint: str = "last"

    def fraction_below(self, confidence: np.ndarray) -> np.ndarray:
        """(N,) per landmark: the fraction of the annotated training images whose peak is strictly below;
        NaN for a landmark annotated in no training image."""
        valid = np.isfinite(self.peaks)
        below = valid & (self.peaks < np.asarray(confidence)[None, :])
        count = valid.sum(axis=0)
        return np.where(count > 0, below.sum(axis=0) / np.maximum(count, 1), np.nan)

    @property
    def median_peaks(self) -> np.ndarray:
        """(N,) the training images' median peak per landmark; NaN where no training image annotates it."""
        valid = np.isfinite(self.peaks).any(axis=0)
        medians = np.full(self.peaks.shape[1], np.nan)
        medians[valid] = np.nanmedian(self.peaks[:, valid], axis=0)
        return medians

    def relative(self, confidence: np.ndarray) -> float:
        """The median over landmarks (with a training median) of the peak divided by that median; NaN if none."""
        medians = self.median_peaks
        valid = np.isfinite(medians)
        return float(np.median(np.asarray(confidence)[valid] / medians[valid])) if valid.any() else float("nan")

    def to_dict(self) -> dict:
        return {
            "checkpoint": self.checkpoint,
            "image_ids": list(self.image_ids),
            "peaks": [[None if not np.isfinite(v) else float(v) for v in row] for row in self.peaks],
        }

    @classmethod
    def from_dict(cls, values: dict) -> ConfidenceReference:
        peaks = np.array([[np.nan if v is None else v for v in row] for row in values["peaks"]], np.float64)
        return cls(list(values["image_ids"]), peaks, values.get("checkpoint", "last"))


def image_score(confidence: np.ndarray, reference: ConfidenceReference | None) -> float:
    """One number per image for comparing two readings of it: the relative confidence where the reference gives
    one, else the median peak."""
    relative = reference.relative(confidence) if reference is not None else float("nan")
    return relative if np.isfinite(relative) else float(np.median(confidence))


def write_reference(model_dir: str | os.PathLike, reference: ConfidenceReference) -> None:
    write_json_atomic(Path(model_dir) / REFERENCE_FILE, reference.to_dict())


def load_reference(model_dir: str | os.PathLike, checkpoint: str = "last") -> ConfidenceReference | None:
    """The model folder's reference for `checkpoint`, or None (no file, or computed for other weights)."""
    path = Path(model_dir) / REFERENCE_FILE
    if not path.exists():
        return None
    reference = ConfidenceReference.from_dict(json.loads(path.read_text()))
    return reference if reference.checkpoint == checkpoint else None


def describe(confidence: np.ndarray, reference: ConfidenceReference | None) -> dict:
    """The per-image confidence entries of scn-predict's JSON."""
    if reference is None:
        return {
            "confidence": np.asarray(confidence).tolist(),
            "confidence_fraction": None,
            "relative_confidence": None,
            "low_confidence": None,
        }
    relative = reference.relative(confidence)
    known = bool(np.isfinite(relative))
    return {
        "confidence": np.asarray(confidence).tolist(),
        "confidence_fraction": [float(v) if np.isfinite(v) else None for v in reference.fraction_below(confidence)],
        "relative_confidence": relative if known else None,
        "low_confidence": bool(relative < LOW_RELATIVE_CONFIDENCE) if known else None,
    }


def measure_reference(predictor, images: dict, points: dict, checkpoint: str = "last") -> ConfidenceReference:
    """The peaks `predictor` gives prepared source images {id: image}; NaN where `points[id]` has no landmark."""
    ids = list(images)
    peaks = np.stack([predictor.predict_prepared(images[i], i).confidence for i in ids]).astype(np.float64)
    annotated = np.stack([np.all(np.isfinite(points[i]), axis=-1) for i in ids])
    return ConfidenceReference(ids, np.where(annotated, peaks, np.nan), checkpoint)
