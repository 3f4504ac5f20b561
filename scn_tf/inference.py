"""Landmarks of whole images: test-geometry resampling, the network (sliding windows along z for long
volumes), argmax + parabola decoding, and the mapping back to the source image's physical space; in 2D
optionally also the left-right mirrored image, keeping the more confident reading; the heatmaps resampled
back onto the source image's grid."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable

import keras
import numpy as np
import SimpleITK as sitk

from scn_tf.confidence import ConfidenceReference, image_score
from scn_tf.configs import DataConfig, ExperimentConfig
from scn_tf.data.augmentation import SpatialTransform, make_transform
from scn_tf.data.io import (
    apply_image_frame,
    conform_pixel_type,
    physical_to_pixel,
    pixel_to_physical,
    read_image,
    read_image_typed,
)
from scn_tf.data.preprocessing import normalize_intensity, prepare_source
from scn_tf.heatmaps import decode_heatmaps
from scn_tf.preflight import check_image_extent


@dataclasses.dataclass
class Prediction:
    image_id: str
    points: np.ndarray  # (N, d) physical coordinates (mm) in the configured image frame
    indices: np.ndarray  # (N, d) continuous pixel indices of the source image (x, y[, z])
    confidence: np.ndarray  # (N,) heatmap value at the maximum
    sigma_mm: np.ndarray | None  # (N,) the learned target width per landmark, in mm
    sigma_px: np.ndarray | None = None  # (N,) the same in source image pixels (mean over the axes)
    mirrored: bool = False  # read from the left-right mirrored image (mirrored back)
    mirror_scores: dict | None = None  # {"original": s, "mirrored": s} where both were run
    heatmaps: np.ndarray | None = None  # (*spatial, N) network-space heatmaps, where asked for
    transform: SpatialTransform | None = None  # network space -> source space of those heatmaps

    def in_units(self, units: str) -> np.ndarray:
        """The coordinates in the dataset's landmark units ("mm" or "pixel")."""
        return self.points if units == "mm" else self.indices

    def sigma_in(self, units: str) -> np.ndarray | None:
        """The learned sigmas in the dataset's landmark units ("mm" or "pixel"), as the coordinates."""
        return self.sigma_mm if units == "mm" else self.sigma_px


def window_starts(length: int, window: int, step: int) -> list[int]:
    """Window starts along z: every `step` (at most the window, so that no slice is missed), the last one
    clamped to the end (one window if it fits)."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, min(step, window)))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


class Predictor:
    """Runs `model` (a Keras model or any callable from batches to heatmaps, or a list of them: an ensemble, whose
    heatmaps are averaged before decoding; give it the mean of their `sigmas`) on whole images.

    Each source image is prepared as during training (smoothing; histogram matching onto
    `reference_quantiles` where the configuration asks for it); with `tta` N, the heatmaps are the mean of
    the image's and of N readings on network grids shifted by whole pixels (`tta_shifts`), shifted back; volumes
    longer along z than the network input are covered by windows of the input length, `data.window_step`
    apart, merged by voxel-wise maximum; `batch_size` windows run at a time, so memory stays bounded.
    """

    def __init__(
        self,
        model: keras.Model | Callable | list,
        data: DataConfig,
        sigmas: np.ndarray | None = None,
        reference_quantiles: np.ndarray | None = None,
        batch_size: int = 2,
        confidence_reference: ConfidenceReference | None = None,
        tta: int = 0,
        tta_seed: int = 0,
    ):
        self.data = data
        self.tta_shifts = tta_shifts(tta, data.ndim, tta_seed)
        self.confidence_reference = confidence_reference
        self.sigmas = None if sigmas is None else np.asarray(sigmas, np.float64)
        if data.normalization == "histogram_matching" and reference_quantiles is None:
            raise ValueError("the configuration asks for histogram matching: give reference_quantiles")
        self.reference_quantiles = reference_quantiles
        self.batch_size = batch_size
        if isinstance(model, list | tuple):  # an ensemble: the mean of the models' heatmaps
            runs = [runner(member) for member in model]
            self._run = lambda batch: np.mean([np.asarray(run(batch), np.float32) for run in runs], axis=0)
        else:
            self._run = runner(model)

    def transform(self, image: sitk.Image) -> SpatialTransform:
        """The test geometry; along z it is extended to the whole volume when the spacing is fixed."""
        data = self.data
        if data.ndim == 3 and data.spacing is not None:
            extent = image.GetSize()[2] * image.GetSpacing()[2]
            length = max(data.image_size[2], math.ceil(extent / data.spacing[2]))
            data = dataclasses.replace(data, image_size=[*data.image_size[:2], length])
        return make_transform(image, data, None, None)

    def heatmaps(self, array: np.ndarray) -> np.ndarray:
        """Heatmaps (*spatial, N) of a network-space image (*spatial), by windows along the first axis."""
        window = self.data.image_size[-1] if self.data.ndim == 3 else array.shape[0]
        starts = window_starts(array.shape[0], window, self.data.window_step)
        merged = None
        for first in range(0, len(starts), self.batch_size):
            group = starts[first : first + self.batch_size]
            batch = np.stack([array[start : start + window] for start in group])[..., None].astype(np.float32)
            outputs = np.asarray(self._run(batch), np.float32)
            if merged is None:
                merged = np.full(array.shape + (outputs.shape[-1],), -np.inf, np.float32)
            for start, output in zip(group, outputs, strict=True):
                region = merged[start : start + window]
                np.maximum(region, output, out=region)
        return merged

    def predict_image(
        self, image: sitk.Image, image_id: str = "", mirror: str = "off", keep_heatmaps: bool = False
    ) -> Prediction:
        """Landmarks of a source image as read from disk, in the configured image frame.

        mirror "auto" (2D only) also reads the image mirrored left-right (its x axis reversed on the same
        grid) and keeps the reading with the higher `confidence.image_score`, its landmarks mirrored back.
        """
        if mirror not in ("off", "auto"):
            raise ValueError(f"mirror must be 'off' or 'auto', got {mirror!r}")
        if mirror == "auto" and self.data.ndim != 2:
            raise ValueError("mirror 'auto' is for 2D models only")
        image = apply_image_frame(image, self.data.image_frame)
        source = prepare_source(image, self.data.smoothing_sigma, self.reference_quantiles)
        prediction = self.predict_prepared(source, image_id, keep_heatmaps)
        if mirror == "off":
            return prediction
        mirrored = self.predict_prepared(mirror_x(source), image_id, keep_heatmaps)
        scores = {
            "original": image_score(prediction.confidence, self.confidence_reference),
            "mirrored": image_score(mirrored.confidence, self.confidence_reference),
        }
        if scores["mirrored"] <= scores["original"]:
            return dataclasses.replace(prediction, mirror_scores=scores)
        indices = mirrored.indices.copy()
        indices[:, 0] = source.GetSize()[0] - 1 - indices[:, 0]
        return dataclasses.replace(
            mirrored, points=pixel_to_physical(source, indices), indices=indices, mirrored=True, mirror_scores=scores
        )

    def predict_prepared(self, source: sitk.Image, image_id: str = "", keep_heatmaps: bool = False) -> Prediction:
        """Landmarks of a source image already framed, smoothed and matched (as cached for training)."""
        transform = self.transform(source)
        heatmaps = self.heatmaps(self.network_image(source, transform))
        for shift in self.tta_shifts:
            moved = shifted(transform, shift)
            heatmaps += shift_back(self.heatmaps(self.network_image(source, moved)), shift)
        heatmaps /= 1 + len(self.tta_shifts)
        coords, values = decode_heatmaps(heatmaps[None])
        network_points = np.asarray(coords)[0].astype(np.float64) * transform.geometry.spacing
        points = transform.to_source(network_points)
        spacing = np.asarray(transform.geometry.spacing, np.float64)
        sigma_mm = sigma_px = None
        if self.sigmas is not None:
            sigma_mm = self.sigmas * float(np.mean(spacing))
            sigma_px = self.sigmas * float(np.mean(spacing / np.asarray(source.GetSpacing())))
        return Prediction(
            image_id,
            points,
            physical_to_pixel(source, points),
            np.asarray(values)[0],
            sigma_mm,
            sigma_px,
            heatmaps=heatmaps if keep_heatmaps else None,
            transform=transform if keep_heatmaps else None,
        )

    def network_image(self, source: sitk.Image, transform: SpatialTransform) -> np.ndarray:
        """The network input (array order) of a prepared source image through `transform`."""
        data = self.data
        network_image = transform.resample(source, data.outside_value, data.resampling)
        return normalize_intensity(
            sitk.GetArrayFromImage(network_image),
            data.normalization,
            data.intensity_shift,
            data.intensity_scale,
            data.intensity_clamp,
            data.percentiles,
        )

    def predict_file(self, path, image_id: str) -> Prediction:
        return self.predict_image(read_image(path, self.data.ndim, self.data.image_spacing), image_id)


def runner(model: keras.Model | Callable) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a batch to heatmaps: a Keras model's predict_on_batch, or the callable itself."""
    if isinstance(model, keras.Model):
        return model.predict_on_batch
    return lambda batch: np.asarray(model(batch))


TTA_MAX_SHIFT = 3  # network pixels per axis


def tta_shifts(count: int, ndim: int, seed: int = 0) -> list[np.ndarray]:
    """`count` distinct non-zero whole-pixel shifts (x, y[, z]) within +-TTA_MAX_SHIFT, seeded."""
    if count < 0:
        raise ValueError(f"tta must be 0 or more, got {count}")
    possible = (2 * TTA_MAX_SHIFT + 1) ** ndim - 1
    if count > possible:
        raise ValueError(f"tta {count}: at most {possible} distinct shifts of up to {TTA_MAX_SHIFT} pixels")
    rng = np.random.default_rng(seed)
    shifts: list[np.ndarray] = []
    while len(shifts) < count:
        shift = rng.integers(-TTA_MAX_SHIFT, TTA_MAX_SHIFT + 1, ndim)
        if shift.any() and not any(np.array_equal(shift, other) for other in shifts):
            shifts.append(shift)
    return shifts


def shifted(transform: SpatialTransform, shift: np.ndarray) -> SpatialTransform:
    """The transform of a network grid moved by `shift` pixels (x, y[, z]): its point q is the original's
    q + shift."""
    affine = sitk.AffineTransform(transform.affine)
    matrix = np.array(affine.GetMatrix()).reshape(len(shift), -1)
    offset = matrix @ (np.asarray(shift, np.float64) * transform.geometry.spacing)
    affine.SetTranslation([float(v) for v in np.array(affine.GetTranslation()) + offset])
    return dataclasses.replace(transform, affine=affine)


def shift_back(heatmaps: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Heatmaps (*spatial array order, N) of a grid moved by `shift` (x, y[, z]) on the original grid:
    result[p] = heatmaps[p - shift], 0 where p - shift falls outside."""
    result = np.zeros_like(heatmaps)
    target, origin = [], []
    for axis_shift, length in zip(reversed([int(v) for v in shift]), heatmaps.shape[:-1], strict=True):
        target.append(slice(max(axis_shift, 0), length + min(axis_shift, 0)))
        origin.append(slice(max(-axis_shift, 0), length - max(axis_shift, 0)))
    result[tuple(target)] = heatmaps[tuple(origin)]
    return result


def read_model_input(
    path: str | os.PathLike, config: ExperimentConfig, pixel_types: dict | None, policy: str | None = None
) -> sitk.Image:
    """An image file read for the model of `config`, as scn-predict reads its inputs: io.read_image; a
    DataError where it is smaller than the network can use (preflight.check_image_extent); and, under fixed
    intensity normalisation (percentile normalisation and histogram matching do not depend on the values'
    scale), its pixel type checked against the training images' (`pixel_types`: model_dir.load_pixel_types,
    None for a model folder without the record) by `policy`, default `data.pixel_type_policy`
    (io.conform_pixel_type)."""
    data = config.data
    image, pixel_type = read_image_typed(path, data.ndim, data.image_spacing)
    check_image_extent(path, image.GetSize(), image.GetSpacing(), config)
    if pixel_types is not None and data.normalization == "fixed":
        image = conform_pixel_type(
            image,
            path,
            pixel_type,
            pixel_types["pixel_types"],
            policy or data.pixel_type_policy,
            pixel_types["value_range"],
        )
    return image


def mirror_x(image: sitk.Image) -> sitk.Image:
    """The image with its x axis (first index) reversed, on the same grid (origin, spacing, direction)."""
    flipped = sitk.GetImageFromArray(np.ascontiguousarray(sitk.GetArrayFromImage(image)[..., ::-1]))
    flipped.CopyInformation(image)
    return flipped


def source_frame_heatmaps(prediction: Prediction, source: sitk.Image, image_frame: str = "header") -> sitk.Image:
    """The prediction's heatmaps resampled (linearly) onto `source`'s grid: one float32 component per landmark,
    `source`'s size, origin, spacing and direction (the file's header, whatever the model's `image_frame`);
    0 outside the network's field of view.

    The prediction must have been made with keep_heatmaps; a mirrored reading is mirrored back.
    """
    if prediction.heatmaps is None:
        raise ValueError("the prediction holds no heatmaps: predict with keep_heatmaps=True")
    geometry = prediction.transform.geometry
    network = sitk.GetImageFromArray(np.ascontiguousarray(prediction.heatmaps, np.float32), isVector=True)
    network.SetSpacing([float(s) for s in geometry.spacing])
    network.SetOrigin([0.0] * source.GetDimension())
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(apply_image_frame(source, image_frame))
    resampler.SetTransform(prediction.transform.affine.GetInverse())
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(0.0)
    result = resampler.Execute(network)
    if prediction.mirrored:
        result = sitk.GetImageFromArray(
            np.ascontiguousarray(sitk.GetArrayFromImage(result)[..., ::-1, :]), isVector=True
        )
    result.CopyInformation(source)
    return result
