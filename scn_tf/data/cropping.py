"""Random crops that take landmarks out of the field of view: training samples for absent landmarks
(`augmentation.absent_fraction`) and the seeded test sets that measure how well absence is recognised.

A crop cuts one or two axes from a random side, keeping a random share of the axis' length; the crop keeps
the source's physical space (SimpleITK slicing moves the origin with it), so landmark points in mm stay
valid and those outside the kept region become NaN, as a missing annotation.
"""

from __future__ import annotations

import zlib

import numpy as np
import SimpleITK as sitk

from scn_tf.data.io import physical_to_pixel

KEEP_RANGE = (0.5, 0.85)  # the share of a cut axis' length that stays


def crop_region(size: np.ndarray, rng: np.random.Generator, keep: tuple[float, float] = KEEP_RANGE) -> np.ndarray:
    """(d, 2) index ranges [start, stop) of a random crop: one or two axes cut from a random side."""
    ndim = len(size)
    region = np.stack([np.zeros(ndim, np.int64), np.asarray(size, np.int64)], axis=1)
    axes = rng.choice(ndim, size=int(rng.integers(1, min(2, ndim) + 1)), replace=False)
    for axis in axes:
        length = max(1, int(round(size[axis] * rng.uniform(*keep))))
        if rng.uniform() < 0.5:
            region[axis] = (0, length)
        else:
            region[axis] = (size[axis] - length, size[axis])
    return region


def crop(image: sitk.Image, points: np.ndarray, region: np.ndarray) -> tuple[sitk.Image, np.ndarray]:
    """The image restricted to `region` (its physical space kept) and the points (N, d, mm) with those
    outside it set to NaN."""
    cropped = image[tuple(slice(int(start), int(stop)) for start, stop in region)]
    indices = physical_to_pixel(cropped, np.asarray(points, np.float64))
    size = np.array(cropped.GetSize())
    with np.errstate(invalid="ignore"):
        inside = np.all((indices >= -0.5) & (indices < size - 0.5), axis=1)
    return cropped, np.where(inside[:, None], points, np.nan)


def random_crop(
    image: sitk.Image, points: np.ndarray, rng: np.random.Generator, keep: tuple[float, float] = KEEP_RANGE
) -> tuple[sitk.Image, np.ndarray]:
    """One random crop (crop_region) of `image` and its points."""
    return crop(image, points, crop_region(np.array(image.GetSize()), rng, keep))


def crop_out_landmarks(
    image: sitk.Image,
    points: np.ndarray,
    rng: np.random.Generator,
    outside: tuple[int, int],
    tries: int = 200,
) -> tuple[sitk.Image, np.ndarray, np.ndarray]:
    """A random crop that takes between outside[0] and outside[1] annotated landmarks out of the image
    (drawn again until one does): (image, points, region). A ValueError after `tries` draws."""
    annotated = np.all(np.isfinite(points), axis=1)
    for _ in range(tries):
        region = crop_region(np.array(image.GetSize()), rng)
        cropped, kept = crop(image, points, region)
        removed = int((annotated & ~np.all(np.isfinite(kept), axis=1)).sum())
        if outside[0] <= removed <= outside[1]:
            return cropped, kept, region
    raise ValueError(f"no crop in {tries} draws takes {outside[0]}-{outside[1]} landmarks out")


def crop_rng(seed: int, image_id: str) -> np.random.Generator:
    """The generator of an image's crop: from the seed and the id, so that a subset crops the same way."""
    return np.random.default_rng([seed, zlib.crc32(image_id.encode("utf-8"))])


def default_outside(num_landmarks: int) -> tuple[int, int]:
    """How many landmarks a test crop takes out unless told: 1 to half of them."""
    return 1, max(1, num_landmarks // 2)
