"""Intensity preprocessing: Gaussian pre-smoothing in mm, histogram matching inside the Otsu foreground,
and the fixed or percentile normalisation of a network-space image."""

from __future__ import annotations

from collections.abc import Sequence

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


def foreground_quantiles(array: np.ndarray, num_points: int = 64) -> np.ndarray:
    """Evenly spaced intensity quantiles (0..100 %) of the Otsu foreground: a reference for matching."""
    return np.percentile(array[otsu_foreground(array)], np.linspace(0, 100, num_points))


def histogram_match(image: sitk.Image, reference_quantiles: np.ndarray) -> sitk.Image:
    """Maps the foreground quantiles of the image onto the reference's (both inside their Otsu masks).

    A piecewise-linear map through matching quantiles (as ITK's histogram matching does), applied to the
    whole image; intensities beyond the extreme quantiles are extrapolated linearly.
    """
    array = sitk.GetArrayFromImage(image)
    source_points = foreground_quantiles(array, len(reference_quantiles))
    source_points, unique = np.unique(source_points, return_index=True)
    target_points = np.asarray(reference_quantiles)[unique]
    matched = np.interp(array, source_points, target_points)
    if len(source_points) > 1:
        low_slope = (target_points[1] - target_points[0]) / (source_points[1] - source_points[0])
        high_slope = (target_points[-1] - target_points[-2]) / (source_points[-1] - source_points[-2])
        matched = np.where(array < source_points[0], target_points[0] + (array - source_points[0]) * low_slope, matched)
        matched = np.where(
            array > source_points[-1], target_points[-1] + (array - source_points[-1]) * high_slope, matched
        )
    result = sitk.GetImageFromArray(matched.astype(np.float32))
    result.CopyInformation(image)
    return result


def prepare_source(
    image: sitk.Image, smoothing_sigma: float, reference_quantiles: np.ndarray | None = None
) -> sitk.Image:
    """What is done once per source image, in training and inference alike: smoothing, histogram matching."""
    image = smooth(image, smoothing_sigma)
    return image if reference_quantiles is None else histogram_match(image, reference_quantiles)


def normalize_intensity(
    array: np.ndarray,
    method: str,
    shift: float = 0.0,
    scale: float = 1.0,
    clamp: Sequence[float] | None = None,
    percentiles: Sequence[float] = (1.0, 99.0),
) -> np.ndarray:
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
