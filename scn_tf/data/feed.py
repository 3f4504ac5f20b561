"""Training batches from worker processes, without TensorFlow: the tf.data pipeline's samples, array for array.

The prepared source images are written once into a file that every worker maps read-only (the page cache
holds one copy, however many workers; no shared-memory limit, as in Docker's 64 MB /dev/shm). `workers`
processes, started with spawn (so that none inherits the parent's JAX, CUDA or threads) and on the CPU only
(JAX_PLATFORMS=cpu, no visible GPU), run `make_sample` for sample indices of the stream, each seeded from
(seed, epoch, position) as in scn_tf.data.pipeline; the parent keeps `prefetch` samples in flight and
stacks them into batches in stream order. Sample k is therefore the same array under every backend.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from scn_tf.configs import AugmentationConfig, DataConfig
from scn_tf.data.pipeline import LandmarkSource, make_sample, sample_order

WORKER_ENVIRONMENT = {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """Where one source image lies in the shared file, and its geometry."""

    offset: int
    shape: tuple[int, ...]
    dtype: str
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """Everything a worker needs to rebuild the source: the shared file, the images' records, the landmarks."""

    path: str
    data: DataConfig
    ids: tuple[str, ...]
    records: dict[str, ImageRecord]
    points: dict[str, np.ndarray]


class SharedSource:
    """A LandmarkSource's images read from the shared file (as SimpleITK images, built on access) and its
    landmarks: what `make_sample` reads."""

    def __init__(self, spec: SourceSpec):
        self.data = spec.data
        self.ids = list(spec.ids)
        self.points = spec.points
        self._records = spec.records
        self._buffer = np.memmap(spec.path, dtype=np.uint8, mode="r")
        self.images = _ImageView(self)

    def image(self, image_id: str) -> sitk.Image:
        record = self._records[image_id]
        size = int(np.prod(record.shape)) * np.dtype(record.dtype).itemsize
        array = self._buffer[record.offset : record.offset + size].view(record.dtype).reshape(record.shape)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(record.spacing)
        image.SetOrigin(record.origin)
        image.SetDirection(record.direction)
        return image


class _ImageView:
    def __init__(self, source: SharedSource):
        self._source = source

    def __getitem__(self, image_id: str) -> sitk.Image:
        return self._source.image(image_id)


def write_shared(source: LandmarkSource, folder: str | os.PathLike) -> SourceSpec:
    """Writes the source's prepared images into one file in `folder`; returns the spec that reads them back."""
    path = Path(folder) / "images.bin"
    records, offset = {}, 0
    with open(path, "wb") as file:
        for image_id in source.ids:
            image = source.images[image_id]
            array = np.ascontiguousarray(sitk.GetArrayViewFromImage(image))
            file.write(array.tobytes())
            records[image_id] = ImageRecord(
                offset, array.shape, array.dtype.str, image.GetSpacing(), image.GetOrigin(), image.GetDirection()
            )
            offset += array.nbytes
    return SourceSpec(str(path), source.data, tuple(source.ids), records, dict(source.points))


@dataclasses.dataclass(frozen=True)
class _Task:
    spec: SourceSpec
    augmentation: AugmentationConfig | None
    seed: int


_worker: dict = {}  # this worker process's source and settings, set once by _start_worker


def _start_worker(task: _Task) -> None:
    _worker["source"] = SharedSource(task.spec)
    _worker["task"] = task


def _load(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    source, task = _worker["source"], _worker["task"]
    position, rng = sample_order(len(source.ids), task.seed, index, shuffle=True)
    sample = make_sample(source, source.ids[position], task.augmentation, rng, sitk_threads=1)
    return sample.image, sample.coords, sample.valid


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ for the block (the spawned workers copy the environment at start)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class ProcessFeed:
    """An endless stream of training batches (images, coords, valid) as NumPy arrays, from `workers` processes.

    Use as a context manager (the workers and the shared file go at its end); `batches(start_step)` starts
    the stream at batch `start_step`, as `make_dataset` does.
    """

    def __init__(
        self,
        source: LandmarkSource,
        augmentation: AugmentationConfig | None,
        seed: int = 0,
        batch_size: int = 1,
        workers: int = 2,
        prefetch: int | None = None,
    ):
        self.batch_size = batch_size
        self.workers = max(workers, 1)
        self.prefetch = max(prefetch or 2 * self.workers, batch_size)
        self._folder = tempfile.mkdtemp(prefix="scn_tf_feed_")
        self._pool = None
        try:
            task = _Task(write_shared(source, self._folder), augmentation, seed)
            with _environment(WORKER_ENVIRONMENT):
                context = multiprocessing.get_context("spawn")
                self._pool = context.Pool(self.workers, initializer=_start_worker, initargs=(task,))
        except BaseException:
            self.close()
            raise

    def batches(self, start_step: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        pending = collections.deque()
        index = start_step * self.batch_size
        while True:
            while len(pending) < self.prefetch:
                pending.append(self._pool.apply_async(_load, (index,)))
                index += 1
            samples = [pending.popleft().get() for _ in range(self.batch_size)]
            yield tuple(np.stack(parts) for parts in zip(*samples, strict=True))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> ProcessFeed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
