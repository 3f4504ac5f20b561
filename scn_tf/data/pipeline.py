"""From files to training batches: cached source images, per-sample SimpleITK work, a parallel tf.data pipeline
(under TensorFlow; scn_tf.data.feed runs the same `make_sample` in worker processes under other backends).

Sample k of the stream belongs to epoch k // n (n ids) and takes the id at position k % n of that epoch's
seeded permutation; its augmentation is drawn from a generator seeded with (seed, epoch, position). A run is
therefore reproducible and a resumed run sees the samples an uninterrupted one would have seen, whatever the
number of parallel workers.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from scn_tf.configs import AugmentationConfig, DataConfig
from scn_tf.data.augmentation import SpatialTransform, augment_intensity, make_transform
from scn_tf.data.cropping import random_crop
from scn_tf.data.ids import validate_ids
from scn_tf.data.io import (
    DataError,
    apply_image_frame,
    outside_extent,
    physical_to_pixel,
    pixel_to_physical,
    read_image_typed,
    read_landmarks_csv,
)
from scn_tf.data.preprocessing import foreground_quantiles, normalize_intensity, prepare_source, smooth
from scn_tf.listing import shortened
from scn_tf.progress import progress_bar

if TYPE_CHECKING:
    import tensorflow as tf

OUT_OF_EXTENT_LIMIT = 0.03  # the fraction of annotated landmarks outside their images that stops a run


class LandmarkSource:
    """Source images (decoded, pre-smoothed, histogram-matched; cached once) and their landmarks in mm."""

    def __init__(
        self, data: DataConfig, data_dir: str | os.PathLike, ids: Sequence[str], workers: int = 2, verbose: bool = True
    ):
        self.data = data
        self.data_dir = Path(data_dir)
        self.ids = validate_ids(ids, "ids")
        if not self.ids:
            raise DataError("no ids given")
        csv = self.data_dir / data.landmarks_csv
        annotations = read_landmarks_csv(csv, data.num_landmarks, data.ndim)
        missing = [i for i in self.ids if i not in annotations]
        if missing:
            raise DataError(f"{csv}: no annotation row for id(s) {shortened(missing)}")
        self.reference_quantiles = None
        self.pixel_info: dict[str, tuple[str, float, float]] = {}  # id: (pixel type, minimum, maximum) as read
        if data.normalization == "histogram_matching":
            self.reference_quantiles = foreground_quantiles(
                sitk.GetArrayFromImage(smooth(self._read(data.histogram_reference), data.smoothing_sigma))
            )
        progress = progress_bar(len(self.ids), "image", verbose)
        self.images: dict[str, sitk.Image] = {}
        with concurrent.futures.ThreadPoolExecutor(max(workers, 1)) as pool:
            prepared = pool.map(lambda i: self.prepare(self._read(i)), self.ids)
            for image_id, image in zip(self.ids, prepared, strict=True):
                self.images[image_id] = image
                progress.add(1)
        self.annotations = {i: annotations[i] for i in self.ids}
        self.points = {i: self._to_physical(self.images[i], annotations[i]) for i in self.ids}
        check_extent(csv, data.image_frame, self.images, self.points)
        counts = collections.Counter(self.pixel_info[i][0] for i in self.ids)
        if len(counts) > 1 and data.normalization == "fixed":
            logging.warning(
                "images of several pixel types (%s): under fixed intensity normalisation their values differ in "
                "scale; convert them to one type, or use data.normalization 'percentile'",
                ", ".join(f"{name}: {count}" for name, count in counts.most_common()),
            )

    def pixel_type_record(self) -> dict:
        """What prediction checks its inputs against (model_dir.PIXEL_TYPES_FILE, io.conform_pixel_type): the
        images' pixel types, most frequent first, and the [minimum, maximum] of their values as read."""
        counts = collections.Counter(self.pixel_info[i][0] for i in self.ids)
        return {
            "pixel_types": [name for name, _ in counts.most_common()],
            "value_range": [
                min(self.pixel_info[i][1] for i in self.ids),
                max(self.pixel_info[i][2] for i in self.ids),
            ],
        }

    def image_path(self, image_id: str) -> Path:
        return self.data_dir / self.data.image_dir / f"{image_id}{self.data.image_suffix}"

    def _read(self, image_id: str) -> sitk.Image:
        path = self.image_path(image_id)
        if not path.exists():
            raise DataError(f"id {image_id}: image {path} does not exist")
        image, pixel_type = read_image_typed(path, self.data.ndim, self.data.image_spacing)
        array = sitk.GetArrayViewFromImage(image)
        self.pixel_info[image_id] = (pixel_type, float(array.min()), float(array.max()))
        return apply_image_frame(image, self.data.image_frame)

    def prepare(self, image: sitk.Image) -> sitk.Image:
        """Smoothing and histogram matching, as for every source image (inference uses it too)."""
        return prepare_source(image, self.data.smoothing_sigma, self.reference_quantiles)

    def _to_physical(self, image: sitk.Image, coords: np.ndarray) -> np.ndarray:
        return pixel_to_physical(image, coords) if self.data.landmark_units == "pixel" else coords

    def pixel_annotations(self, image_id: str) -> np.ndarray:
        """The annotation of `image_id` as continuous pixel indices of its image."""
        return physical_to_pixel(self.images[image_id], self.points[image_id])


def check_extent(csv: Path, frame: str, images: dict[str, sitk.Image], points: dict[str, np.ndarray]) -> None:
    """Reports annotated landmarks outside their image's extent (a wrong `image_frame` puts most of them
    there); more than OUT_OF_EXTENT_LIMIT of them is an error, so that a wrong frame never trains silently."""
    outside = {i: int(outside_extent(images[i], points[i]).sum()) for i in images}
    outside = {i: count for i, count in outside.items() if count}
    if not outside:
        return
    annotated = sum(int(np.all(np.isfinite(p), axis=1).sum()) for p in points.values())
    total = sum(outside.values())
    listing = shortened(f"{i} ({count})" for i, count in outside.items())
    message = (
        f"{csv}: {total} of {annotated} annotated landmarks ({100 * total / annotated:.1f}%) lie outside "
        f"their image's extent in the {frame!r} image frame, in {len(outside)} image(s): {listing}"
    )
    if total > OUT_OF_EXTENT_LIMIT * annotated:
        other = "zero_origin" if frame == "header" else "header"
        raise DataError(f"{message}; are the landmarks in the other frame (data.image_frame {other!r})?")
    logging.warning("%s", message)


@dataclasses.dataclass
class Sample:
    image: np.ndarray  # network input, (*spatial array order, 1) float32
    coords: np.ndarray  # (N, d) float32, heatmap pixels (x, y[, z]); NaN where invalid
    valid: np.ndarray  # (N,) bool
    transform: SpatialTransform


def make_sample(
    source: LandmarkSource,
    image_id: str,
    augmentation: AugmentationConfig | None,
    rng: np.random.Generator | None,
    sitk_threads: int = 0,
) -> Sample:
    """Resamples one source image into network space (randomly if `rng`) and maps its landmarks along;
    `sitk_threads` > 0 limits the SimpleITK filters of this sample to that many threads; with
    `augmentation.absent_fraction`, that share of the samples is cropped first (cropping.random_crop)."""
    data = source.data
    image, points = source.images[image_id], source.points[image_id]
    augmenting = augmentation is not None and rng is not None
    if augmenting and augmentation.absent_fraction > 0 and rng.uniform() < augmentation.absent_fraction:
        image, points = random_crop(image, points, rng)
    transform = make_transform(image, data, augmentation, rng)
    network_image = transform.resample(image, data.outside_value, data.resampling, sitk_threads)
    array = normalize_intensity(
        sitk.GetArrayFromImage(network_image),
        data.normalization,
        data.intensity_shift,
        data.intensity_scale,
        None if augmenting else data.intensity_clamp,
        data.percentiles,
    )
    array = augment_intensity(array, augmentation, rng, data.intensity_clamp)
    max_min_distance = augmentation.max_min_distance if augmenting else None
    coords, valid = transform.landmark_pixels(points, max_min_distance)
    return Sample(array[..., None], coords.astype(np.float32), valid, transform)


def sample_order(num_ids: int, seed: int, index: int, shuffle: bool) -> tuple[int, np.random.Generator]:
    """The id position and random generator of sample `index` of the stream."""
    epoch, position = divmod(int(index), num_ids)
    order = np.random.default_rng([seed, epoch]).permutation(num_ids) if shuffle else np.arange(num_ids)
    return int(order[position]), np.random.default_rng([seed, epoch, position])


def make_dataset(
    source: LandmarkSource,
    augmentation: AugmentationConfig | None,
    seed: int = 0,
    batch_size: int = 1,
    start_step: int = 0,
    repeat: bool = True,
    workers: int = 2,
    sitk_threads: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """Batches of (images, coords, valid) with fixed shapes for the training step.

    With `repeat` (training), an endless shuffled stream starting at `start_step` batches; else each id once,
    in order, without randomness. Per-sample work runs in `workers` parallel calls (SimpleITK and NumPy
    release the GIL). `sitk_threads` > 0 limits each sample's SimpleITK filters to that many threads, so
    that the workers do not oversubscribe the cores (no process-wide setting is changed).
    `shard` (index, count) takes every count-th sample of the stream from `index` on (one input pipeline of
    several in distributed training); `start_step` counts this pipeline's batches.
    """
    import tensorflow as tf

    data = source.data
    num_ids = len(source.ids)
    spatial = tuple(reversed(data.image_size))
    random = augmentation if repeat else None

    def load(index):
        position, rng = sample_order(num_ids, seed, index, shuffle=repeat)
        sample = make_sample(source, source.ids[position], random, rng if repeat else None, sitk_threads)
        return sample.image, sample.coords, sample.valid

    def to_tensors(index):
        image, coords, valid = tf.numpy_function(load, [index], [tf.float32, tf.float32, tf.bool])
        image.set_shape(spatial + (1,))
        coords.set_shape((data.num_landmarks, data.ndim))
        valid.set_shape((data.num_landmarks,))
        return image, coords, valid

    first = start_step * batch_size
    indices = tf.data.Dataset.range(first, 2**62 // shard[1] if repeat else num_ids)
    if repeat and shard[1] > 1:
        indices = indices.map(lambda index: index * shard[1] + shard[0])
    dataset = indices.map(to_tensors, num_parallel_calls=max(workers, 1), deterministic=True)
    return dataset.batch(batch_size, drop_remainder=repeat).prefetch(2)
