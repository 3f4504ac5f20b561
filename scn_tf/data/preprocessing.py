"""Intensity preprocessing: Gaussian pre-smoothing in mm, histogram matching inside the Otsu foreground,
and the fixed or percentile normalisation of a network-space image."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk


def smooth(image: sitk.Image, sigma_mm: float) -> sitk.Image:
    """Gaussian smoothing with a standard deviation in physical units (no-op for sigma 0)."""
    if sigma_mm <= 0:
        return image
    return sitk.SmoothingRecursiveGaussian(image, float(sigma_mm))


def otsu_foreground(array: np.ndarray) -> np.ndarray:
    """Boolean mask of the pixels above Otsu's threshold (the hand in a radiograph)."""
    mask = sitk.OtsuThreshold(sitk.GetImageFromArray(array.astype(np.float32)), 0, 1)
    return sitk.GetArrayFromImage(mask).astype(bool)


def histogram_match(image: sitk.Image, reference: np.ndarray, num_points: int = 64) -> sitk.Image:
    """Maps the intensity quantiles of the image's Otsu foreground onto those of the reference's foreground.

    A piecewise-linear map through `num_points` matching quantiles (as ITK's histogram matching does),
    applied to the whole image; intensities beyond the extreme quantiles are extrapolated linearly.
    """
    array = sitk.GetArrayFromImage(image)
    quantiles = np.linspace(0, 100, num_points)
    source_points = np.percentile(array[otsu_foreground(array)], quantiles)
    target_points = np.percentile(reference[otsu_foreground(reference)], quantiles)
    source_points, unique = np.unique(source_points, return_index=True)
    target_points = target_points[unique]
    matched = np.interp(array, source_points, target_points)
    if len(source_points) > 1:
        low_slope = (target_points[1] - target_points[0]) / (source_points[1] - source_points[0])
        high_slope = (target_points[-1] - target_points[-2]) / (source_points[-1] - source_points[-2])
        matched = np.where(array < source_points[0], target_points[0] + (array - source_points[0]) * low_slope,
                           matched)
        matched = np.where(array > source_points[-1],
                           target_points[-1] + (array - source_points[-1]) * high_slope, matched)
    result = sitk.GetImageFromArray(matched.astype(np.float32))
    result.CopyInformation(image)
    return result


def normalize_intensity(array: np.ndarray, method: str, shift: float = 0.0, scale: float = 1.0,
                        clamp: Sequence[float] | None = None,
                        percentiles: Sequence[float] = (1.0, 99.0)) -> np.ndarray:
    """'fixed' (and 'histogram_matching', already matched): (x + shift) * scale; 'percentile': the two
    percentiles map to -1 and 1. Then clamped to `clamp` if given."""
    if method == "percentile":
        low, high = np.percentile(array, percentiles)
        array = 2.0 * (array - low) / max(high - low, 1e-6) - 1.0
    else:
        array = (array + shift) * scale
    if clamp is not None:
        array = np.clip(array, clamp[0], clamp[1])
    return array.astype(np.float32)
