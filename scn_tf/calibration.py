"""Calibrated error radii and landmark presence: `calibration.json` in a model folder.

Error radii are split-conformal: on calibration images the model never trained on, each landmark's point
errors e_1..e_n (in the model's units: mm, or px for pixel data) give the radius at coverage c as the
k-th smallest error, k = ceil((n + 1) c); a new prediction's error is at most that radius with probability
at least c (exchangeable images). Where it makes the radii sharper, the errors of a landmark are split into
bins of its own heatmap peak (Mondrian conformal prediction: each bin is calibrated on its own, so a
confident prediction gets a smaller radius). A bin or landmark with fewer than ceil(1 / (1 - c)) - 1 errors
cannot give a finite radius: it falls back to the landmark's pooled errors, then to all landmarks' errors,
and the basis used is recorded; the radius is always finite.

Presence: the calibration images are also cropped (scn_tf.data.cropping, seeded) so that some landmarks
fall outside; a landmark counts as present when its peak relative to the landmark's median calibration peak
is at least `present_threshold`, the value that best separates present from cut-off landmarks there
(highest balanced accuracy).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np

from scn_tf.data import cropping
from scn_tf.evaluation import coordinate_units
from scn_tf.files import write_json_atomic

CALIBRATION_FILE = "calibration.json"
DEFAULT_COVERAGE = 0.9
LEVELS = (0.8, 0.9, 0.95)  # coverages whose radii calibration.json lists (any other is computed on demand)
CONFIDENCE_BINS = 2  # equal-count bins of a landmark's heatmap peak


def minimum_count(coverage: float) -> int:
    """The fewest errors that give a finite conformal radius at `coverage`: ceil(1 / (1 - c)) - 1."""
    check_coverage(coverage)
    return math.ceil(1.0 / (1.0 - coverage) - 1e-9) - 1


def check_coverage(coverage: float) -> None:
    if not (isinstance(coverage, (int, float)) and 0.0 < coverage < 1.0):
        raise ValueError(f"coverage must lie strictly between 0 and 1, got {coverage!r}")


def conformal_radius(errors: np.ndarray, coverage: float) -> float:
    """The k-th smallest of the finite `errors`, k = ceil((n + 1) c); inf where k > n."""
    values = np.sort(np.asarray(errors, np.float64)[np.isfinite(errors)])
    k = math.ceil((len(values) + 1) * coverage - 1e-9)
    return float(values[k - 1]) if 1 <= k <= len(values) else math.inf


def bin_edges(peaks: np.ndarray, bins: int = CONFIDENCE_BINS) -> list[float]:
    """The inner edges of `bins` equal-count bins of the finite peaks (empty for fewer than 2 values)."""
    values = np.asarray(peaks, np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2 or bins < 2:
        return []
    return [float(v) for v in np.quantile(values, np.arange(1, bins) / bins)]


def bin_of(peak: float, edges: list[float]) -> int:
    return int(np.searchsorted(edges, peak, side="right"))


@dataclasses.dataclass
class LandmarkRadii:
    """One landmark's radii at one coverage: per confidence bin, with the basis of each."""

    edges: list[float]  # inner bin edges of the peak; empty: one bin
    radii: list[float]
    basis: list[str]  # "bin", "landmark" or "all landmarks"

    def radius(self, peak: float) -> float:
        return self.radii[bin_of(peak, self.edges)] if self.edges else self.radii[0]


def landmark_radii(
    errors: np.ndarray, peaks: np.ndarray, landmark: int, coverage: float, bins: int = CONFIDENCE_BINS
) -> LandmarkRadii:
    """Radii of `landmark` from calibration errors and peaks (M, N), NaN where not annotated.

    Bins of the peak are used where every bin holds enough errors and their mean radius over the
    calibration predictions is below the landmark's single radius; otherwise one radius for the landmark,
    or, with too few errors, the radius of all landmarks' errors together."""
    needed = minimum_count(coverage)
    column, column_peaks = errors[:, landmark], peaks[:, landmark]
    known = np.isfinite(column)
    pooled_all = conformal_radius(errors[np.isfinite(errors)], coverage)
    if known.sum() < needed:
        return LandmarkRadii([], [pooled_all], ["all landmarks"])
    single = conformal_radius(column[known], coverage)
    edges = bin_edges(column_peaks[known], bins)
    if edges:
        members = np.array([bin_of(p, edges) for p in column_peaks[known]])
        counts = np.bincount(members, minlength=len(edges) + 1)
        if counts.min() >= needed:
            radii = [conformal_radius(column[known][members == b], coverage) for b in range(len(edges) + 1)]
            if float(np.mean(np.array(radii)[members])) < single:
                return LandmarkRadii(edges, radii, ["bin"] * len(radii))
    return LandmarkRadii([], [single], ["landmark"])


def best_threshold(present: np.ndarray, absent: np.ndarray) -> tuple[float, float]:
    """(threshold, balanced accuracy): the score cut (present where score >= threshold) that best separates
    the two groups of scores; candidates are the midpoints between sorted neighbours."""
    present, absent = np.asarray(present, np.float64), np.asarray(absent, np.float64)
    values = np.unique(np.concatenate([present, absent]))
    candidates = np.concatenate([[values[0]], (values[1:] + values[:-1]) / 2, [values[-1] + 1.0]])
    best = (float(candidates[0]), -1.0)
    for threshold in candidates:
        accuracy = 0.5 * (np.mean(present >= threshold) + np.mean(absent < threshold))
        if accuracy > best[1]:
            best = (float(threshold), float(accuracy))
    return best


@dataclasses.dataclass
class Calibration:
    """Calibration errors and peaks (M, N) of a model, the presence threshold and how it was chosen."""

    image_ids: list[str]
    errors: np.ndarray  # (M, N) point errors in `units`; NaN where not annotated
    peaks: np.ndarray  # (M, N) heatmap peaks of those predictions
    units: str
    checkpoint: str = "last"
    present_threshold: float | None = None  # on the relative peak; None: every landmark is reported present
    presence: dict = dataclasses.field(default_factory=dict)  # how the threshold was chosen
    _radii: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)  # coverage: radii

    @property
    def median_peaks(self) -> np.ndarray:
        """(N,) the calibration predictions' median peak per landmark (all landmarks' median where none)."""
        finite = np.where(np.isfinite(self.errors), self.peaks, np.nan)
        overall = float(np.nanmedian(finite)) if np.isfinite(finite).any() else 1.0
        with np.errstate(all="ignore"):
            medians = np.array([np.nanmedian(c) if np.isfinite(c).any() else np.nan for c in finite.T])
        return np.where(np.isfinite(medians) & (medians > 0), medians, overall)

    def relative_peaks(self, peaks: np.ndarray) -> np.ndarray:
        """Peaks (..., N) over the landmark's median calibration peak."""
        return np.asarray(peaks, np.float64) / self.median_peaks

    def radii(self, coverage: float) -> list[LandmarkRadii]:
        """Each landmark's radii at `coverage` (computed once per coverage)."""
        if coverage not in self._radii:
            self._radii[coverage] = [
                landmark_radii(self.errors, self.peaks, n, coverage) for n in range(self.errors.shape[1])
            ]
        return self._radii[coverage]

    def error_radius(self, peaks: np.ndarray, coverage: float) -> np.ndarray:
        """(N,) the radius per landmark for a prediction with these peaks."""
        return np.array([r.radius(float(p)) for r, p in zip(self.radii(coverage), peaks, strict=True)])

    def present(self, peaks: np.ndarray) -> np.ndarray:
        """(N,) whether each landmark is in the image (all True without a threshold)."""
        if self.present_threshold is None:
            return np.ones(len(peaks), bool)
        return self.relative_peaks(peaks) >= self.present_threshold

    def to_dict(self) -> dict:
        def numbers(array):
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in array]

        levels = {}
        for coverage in LEVELS:
            radii = self.radii(coverage)
            levels[str(coverage)] = {
                "error_radius": [r.radii for r in radii],
                "bin_edges": [r.edges for r in radii],
                "basis": [r.basis for r in radii],
                "minimum_count": minimum_count(coverage),
            }
        return {
            "method": "split conformal, Mondrian bins of the heatmap peak where sharper",
            "units": self.units,
            "checkpoint": self.checkpoint,
            "image_ids": list(self.image_ids),
            "errors": numbers(self.errors),
            "peaks": numbers(self.peaks),
            "levels": levels,
            "present_threshold": self.present_threshold,
            "presence": self.presence,
        }

    @classmethod
    def from_dict(cls, values: dict) -> Calibration:
        def array(rows):
            return np.array([[np.nan if v is None else v for v in row] for row in rows], np.float64)

        return cls(
            list(values["image_ids"]),
            array(values["errors"]),
            array(values["peaks"]),
            values["units"],
            values.get("checkpoint", "last"),
            values.get("present_threshold"),
            values.get("presence", {}),
        )


def choose_presence(
    calibration: Calibration, present_peaks: np.ndarray, absent_peaks: np.ndarray, description: dict
) -> Calibration:
    """The calibration with the threshold that best separates the relative peaks of landmarks inside the
    cropped calibration images from those cut off (peaks (K, N) with NaN where a landmark is not in the
    group); without cut-off landmarks no threshold is set."""
    present = calibration.relative_peaks(present_peaks)[np.isfinite(present_peaks)]
    absent = calibration.relative_peaks(absent_peaks)[np.isfinite(absent_peaks)]
    if not len(absent) or not len(present):
        presence = {**description, "threshold": None, "reason": "no cut-off landmarks to choose a threshold on"}
        return dataclasses.replace(calibration, present_threshold=None, presence=presence)
    threshold, accuracy = best_threshold(present, absent)
    presence = {
        **description,
        "score": "heatmap peak / the landmark's median calibration peak",
        "present_count": int(len(present)),
        "absent_count": int(len(absent)),
        "balanced_accuracy": accuracy,
        "false_absent_rate": float(np.mean(present < threshold)),
        "false_present_rate": float(np.mean(absent >= threshold)),
    }
    return dataclasses.replace(calibration, present_threshold=threshold, presence=presence)


def write_calibration(model_dir: str | os.PathLike, calibration: Calibration) -> None:
    write_json_atomic(Path(model_dir) / CALIBRATION_FILE, calibration.to_dict())


def load_calibration(model_dir: str | os.PathLike, checkpoint: str = "last") -> Calibration | None:
    """The model folder's calibration for `checkpoint`, or None (no file, or made for other weights)."""
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.exists():
        return None
    calibration = Calibration.from_dict(json.loads(path.read_text()))
    return calibration if calibration.checkpoint == checkpoint else None


def measure(
    predictor,
    images: dict,
    points: dict,
    annotations: dict,
    landmark_units: str,
    crop_seed: int,
    crop_outside: tuple[int, int],
    checkpoint: str = "last",
    progress=None,
) -> Calibration:
    """The calibration of `predictor` (scn_tf.inference.Predictor) on prepared source images {id: image}
    with their landmarks as physical points (`points`) and as annotated (`annotations`, in `landmark_units`,
    "mm" or "pixel"): errors
    and peaks of every image, then the presence threshold from each image cropped once
    (cropping.crop_out_landmarks under `crop_seed`, `crop_outside` landmarks cut off)."""
    ids = list(images)
    errors, peaks, present_peaks, absent_peaks = [], [], [], []
    for image_id in ids:
        prediction = predictor.predict_prepared(images[image_id], image_id)
        truth = np.asarray(annotations[image_id], np.float64)
        annotated = np.all(np.isfinite(truth), axis=1)
        error = np.linalg.norm(prediction.in_units(landmark_units) - truth, axis=1)
        errors.append(np.where(annotated, error, np.nan))
        peaks.append(np.asarray(prediction.confidence, np.float64))
        cropped, kept, _ = cropping.crop_out_landmarks(
            images[image_id], points[image_id], cropping.crop_rng(crop_seed, image_id), crop_outside
        )
        crop_peaks = np.asarray(predictor.predict_prepared(cropped, image_id).confidence, np.float64)
        inside = np.all(np.isfinite(kept), axis=1)
        present_peaks.append(np.where(inside, crop_peaks, np.nan))
        absent_peaks.append(np.where(annotated & ~inside, crop_peaks, np.nan))
        if progress is not None:
            progress.add(1)
    units = coordinate_units(landmark_units)
    calibration = Calibration(ids, np.stack(errors), np.stack(peaks), units, checkpoint)
    description = {"crop_seed": crop_seed, "crop_outside": list(crop_outside), "images": len(ids)}
    return choose_presence(calibration, np.stack(present_peaks), np.stack(absent_peaks), description)
