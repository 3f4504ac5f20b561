"""The paper's evaluation: point errors, outliers, IPE, per-landmark statistics and the ID rate.

Definitions follow the original: PE_i = s * ||x_i - x_hat_i|| (s = 1 for physical data, or 50 mm over the
annotated wrist width); missing annotations are left out of PE, and so is an image missing a wrist landmark
of the normalisation (the original's NaN-aware means); SDs are population SDs (ddof = 0); an outlier at
radius r has PE >= r; IPE_j is the sum of image j's PEs over the number of landmarks, missing landmarks
included in the denominator; a landmark counts as identified (Glocker et al. 2013) if the closest annotated
landmark to its prediction is the right one and at most 20 away, in unnormalised distances: mm for landmarks
in mm, px for landmarks in pixels. A NaN prediction says that the landmark is absent: PE leaves out such pairs,
`presence` counts them (false absences where annotated), and the landmark is not identified.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

# The ID rate's radius, in the landmarks' own units (mm, or px for pixel data; never normalised).
ID_RADIUS = 20.0


def radius_number(radius: str | int | float) -> int | float:
    """An outlier radius as a number: "2" and 2.0 give 2, "2.5" gives 2.5 (a ValueError if it is none)."""
    number = float(radius)
    return int(number) if number.is_integer() else number


def radius_key(radius: str | int | float) -> str:
    """The key of a radius in metrics.json's "outliers": "2" for "2", 2 and 2.0 alike."""
    return str(radius_number(radius))


@dataclasses.dataclass
class Normalization:
    """Scale errors so that the distance between two annotated landmarks is `distance` (wrist: 1, 5, 50)."""

    first: int
    second: int
    distance: float

    @classmethod
    def parse(cls, text: str | None) -> Normalization | None:
        """'wrist:1,5,50' (0-based indices, mm), or None for physical errors."""
        if not text:
            return None
        kind, _, values = text.partition(":")
        try:
            first, second, distance = values.split(",")
            return cls(int(first), int(second), float(distance))
        except ValueError as error:
            raise ValueError(f"normalization must look like 'wrist:1,5,50', got {text!r}") from error

    def scales(self, truth: np.ndarray) -> np.ndarray:
        """(images,) factors distance / ||truth[first] - truth[second]||; NaN where either is missing."""
        width = np.linalg.norm(truth[:, self.first] - truth[:, self.second], axis=-1)
        return self.distance / width


def point_errors(predicted: np.ndarray, truth: np.ndarray, normalization: Normalization | None = None) -> np.ndarray:
    """(images, landmarks) PE; NaN where the annotation is missing."""
    errors = np.linalg.norm(predicted - truth, axis=-1)
    if normalization is not None:
        errors = errors * normalization.scales(truth)[:, None]
    annotated = np.all(np.isfinite(truth), axis=-1)
    return np.where(annotated, errors, np.nan)


def identification_rate(predicted: np.ndarray, truth: np.ndarray, radius: float = ID_RADIUS) -> float:
    """Percent of annotated landmarks whose prediction is closest to their own annotation and within radius
    (unnormalised distances in the landmarks' units, as the original)."""
    correct = total = 0
    for image_predicted, image_truth in zip(predicted, truth, strict=True):
        annotated = np.flatnonzero(np.all(np.isfinite(image_truth), axis=-1))
        for landmark in annotated:
            distances = np.linalg.norm(image_truth[annotated] - image_predicted[landmark], axis=-1)
            closest = annotated[np.argmin(distances)]
            correct += int(closest == landmark and distances.min() <= radius)
            total += 1
    return 100.0 * correct / total if total else float("nan")


def evaluate(
    ids: Sequence[str],
    predicted: np.ndarray,
    truth: np.ndarray,
    radii: Sequence[str | int | float] = (2, 4, 10),
    normalization: Normalization | None = None,
) -> dict:
    """metrics.json content for predictions and annotations of shape (images, landmarks, d)."""
    for radius in radii:
        try:
            valid = math.isfinite(float(radius)) and float(radius) > 0
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"outlier radius {radius!r} is not a positive number")
    predicted = np.asarray(predicted, np.float64)
    truth = np.asarray(truth, np.float64)
    annotated = np.all(np.isfinite(truth), axis=-1)
    errors = point_errors(predicted, truth, normalization)
    measured = np.isfinite(errors)  # annotated, predicted, and normalisable where a normalisation is asked for
    values = errors[measured]
    count = values.size
    ipe = np.where(measured.any(axis=1), np.nansum(errors, axis=1) / truth.shape[1], np.nan)
    outliers = {}
    for radius in radii:
        hits = int(np.sum(values >= float(radius)))
        outliers[radius_key(radius)] = {"count": hits, "percent": 100.0 * hits / count if count else float("nan")}
    per_landmark = []
    for landmark in range(truth.shape[1]):
        column = errors[measured[:, landmark], landmark]
        per_landmark.append(
            {
                "landmark": landmark,
                "count": int(column.size),
                "mean": _stat(np.mean, column),
                "median": _stat(np.median, column),
                "std": _stat(np.std, column),
            }
        )
    return {
        "num_images": int(len(ids)),
        "num_landmarks": int(truth.shape[1]),
        "num_annotated": int(annotated.sum()),
        "num_measured": int(count),
        "normalization": None if normalization is None else dataclasses.asdict(normalization),
        "pe_median": _stat(np.median, values),
        "pe_mean": _stat(np.mean, values),
        "pe_std": _stat(np.std, values),
        "outliers": outliers,
        "presence": presence_counts(np.all(np.isfinite(predicted), axis=-1), annotated),
        "id_rate": identification_rate(predicted, truth),
        "id_radius": ID_RADIUS,
        "ipe": {image_id: float(value) for image_id, value in zip(ids, ipe, strict=True)},
        "per_landmark": per_landmark,
    }


def presence_counts(predicted: np.ndarray, annotated: np.ndarray) -> dict:
    """Predicted (a coordinate, not NaN) against annotated landmarks (images, landmarks), as a detection of
    `present`: false absences (annotated, NaN prediction), false presences (not annotated, predicted), and the
    precision and recall of `present` and of `absent` (NaN where undefined)."""
    both = int((predicted & annotated).sum())
    false_absent = int((~predicted & annotated).sum())
    false_present = int((predicted & ~annotated).sum())
    neither = int((~predicted & ~annotated).sum())

    def ratio(part: int, whole: int) -> float:
        return part / whole if whole else float("nan")

    return {
        "true_present": both,
        "true_absent": neither,
        "false_absent": false_absent,
        "false_present": false_present,
        "present_precision": ratio(both, both + false_present),
        "present_recall": ratio(both, both + false_absent),
        "absent_precision": ratio(neither, neither + false_absent),
        "absent_recall": ratio(neither, neither + false_present),
    }


def _stat(function, values: np.ndarray) -> float:
    return float(function(values)) if values.size else float("nan")


def cumulative_curve(values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and the fraction (percent) of values at most each one; NaN values are left out."""
    ordered = np.asarray(list(values), np.float64)
    ordered = np.sort(ordered[np.isfinite(ordered)])
    return ordered, 100.0 * np.arange(1, len(ordered) + 1) / max(len(ordered), 1)


def mean_offset(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(landmarks, d) mean of first - second over the images where both are given (NaN where never both).

    With predictions and annotations it is a network's systematic bias per landmark; with two annotators'
    sets it is their difference in convention, whose change between two image sets shows a drift.
    """
    difference = np.asarray(first, np.float64) - np.asarray(second, np.float64)
    given = np.all(np.isfinite(difference), axis=-1, keepdims=True)
    counts = given.sum(axis=0)
    totals = np.where(given, difference, 0.0).sum(axis=0)
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def coordinate_units(landmark_units: str) -> str:
    """The unit of coordinates, learned sigmas and the ID radius: "px" for landmarks in pixels, else "mm"."""
    return "px" if landmark_units == "pixel" else "mm"


def error_units(landmark_units: str, normalization: str | None = None) -> str:
    """The unit of point errors: the coordinates' (coordinate_units), or "mm" for normalised errors."""
    return "mm" if normalization else coordinate_units(landmark_units)
