"""Checks before a training run writes anything or takes its first step: every listed image is there with a
sane header and at least the network's smallest size (which prediction checks too), every id has an
annotation row, and the configuration fits the machine's memory; warnings for test ids among the training
ids and training rows without landmarks, and the training data's digest that a resumed run compares.

The memory estimate is deliberately rough (activations kept for the backward pass dominate): per level of the
network, batch x voxels at that level x filters x ACTIVATION_COPIES x 4 bytes, plus the heatmap-sized tensors
(predictions, targets, the two SCN components and their gradients) and the cached source images. It is
meant to stop configurations that cannot work (a 30000 x 30000 input), not to plan a GPU's memory.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scn_tf.configs import ExperimentConfig
from scn_tf.data.ids import validate_ids
from scn_tf.data.io import DataError, ImageHeader, check_header, gib, read_header, read_landmarks_csv
from scn_tf.listing import shortened

log = logging.getLogger("scn_tf")

ACTIVATION_COPIES = 8  # per conv block: two convolutions, activations, dropout mask, their gradients
HEATMAP_COPIES = 8  # predictions, targets, local and spatial components, their gradients
SOURCE_COPIES = 2  # the decoded image and its prepared (smoothed, float32) copy


class ResourceError(DataError):
    """A configuration that needs more than the machine has; the message gives the estimate."""


def machine_memory() -> int:
    """Physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def training_memory(config: ExperimentConfig, source_voxels: int = 0) -> int:
    """Rough bytes a training run of `config` needs (see the module docstring)."""
    data, resolved = config.data, config.network.resolved(config.data.ndim)
    voxels = math.prod(data.image_size)
    filters, levels = resolved["filters"], resolved["levels"]
    level_sum = sum(2.0 ** (-data.ndim * level) for level in range(levels))
    batch = config.training.batch_size
    activations = batch * voxels * filters * ACTIVATION_COPIES * 4 * level_sum
    heatmaps = batch * voxels * data.num_landmarks * HEATMAP_COPIES * 4
    return int(activations + heatmaps + source_voxels * SOURCE_COPIES * 4)


def check_memory(config: ExperimentConfig, source_voxels: int = 0, available: int | None = None) -> int:
    """The estimate; a ResourceError naming it and the machine's memory where it does not fit."""
    needed = training_memory(config, source_voxels)
    available = machine_memory() if available is None else available
    if needed > available:
        data = config.data
        raise ResourceError(
            f"this configuration needs about {gib(needed)} of memory, the machine has {gib(available)}: batch "
            f"{config.training.batch_size} x input {'x'.join(map(str, data.image_size))} x "
            f"{config.network.resolved(data.ndim)['filters']} filters, and {source_voxels:,} source voxels; "
            "lower data.image_size, network.filters or training.batch_size"
        )
    return needed


def image_header(path: Path) -> ImageHeader:
    """The header of `path` (a file or a DICOM folder), read without the pixels and checked (io.check_header:
    size, memory to read it, spacing)."""
    header = read_header(path)
    check_header(path, header)
    return header


def network_downsampling(config: ExperimentConfig) -> int:
    """The network's total downsampling factor: its deepest map has one pixel per this many input pixels
    along every axis (2**(levels - 1) for the U-Net and LA-Net; for the SCN also `spatial_downsampling`, the
    spatial configuration's pooling: their least common multiple)."""
    resolved = config.network.resolved(config.data.ndim)
    factor = 2 ** (resolved["levels"] - 1)
    if config.network.network == "scn":
        factor = math.lcm(factor, resolved["spatial_downsampling"])
    return factor


def check_image_extent(
    path: str | os.PathLike, size: Sequence[int], spacing: Sequence[float], config: ExperimentConfig
) -> None:
    """A DataError where an image is smaller than the smallest the network can use: along every axis it must
    have at least D pixels, D the network's total downsampling factor (network_downsampling), and, with a
    fixed network pixel size (`data.spacing`), span at least D network pixels. Less is less than one pixel
    of the network's deepest map: a 1x1 image stretched over the input, or a 2 mm image in a 1 mm network,
    yields landmarks outside the image. Where `data.spacing` is null the image is fitted into
    `data.image_size`, so its extent fills the input by construction and the pixel count alone applies. A
    single-slice 3D image counts as 2D; other dimension mismatches are left to read_image."""
    data = config.data
    size, spacing = list(size), list(spacing)
    if len(size) == 3 and size[2] == 1 and data.ndim == 2:
        size, spacing = size[:2], spacing[:2]
    if len(size) != data.ndim:
        return
    minimum = network_downsampling(config)
    extent = [n * s for n, s in zip(size, spacing, strict=True)]
    network_pixels = [math.inf] * data.ndim
    if data.spacing is not None:
        network_pixels = [e / s for e, s in zip(extent, data.spacing, strict=True)]
    for axis, (pixels, covered) in enumerate(zip(size, network_pixels, strict=True)):
        if pixels < minimum or covered < minimum - 1e-6:
            spans = f" and spans {covered:.1f} network pixels of {data.spacing[axis]:g} mm" if data.spacing else ""
            raise DataError(
                f"{path}: image size {tuple(size)} ({' x '.join(f'{e:g}' for e in extent)} mm) has {pixels} "
                f"pixel(s){spans} along {'xyz'[axis]}; the network needs at least {minimum} along every axis "
                "(its total downsampling factor)"
            )


def check_inputs(config: ExperimentConfig, data_dir: str | os.PathLike, splits: dict[str, Sequence[str]]) -> int:
    """Every id of every split ({name: ids}) valid, annotated and with a readable image header of at least the
    network's smallest size, and the run's memory estimate within the machine's; returns the total source
    voxels."""
    data = config.data
    data_dir = Path(data_dir)
    csv = data_dir / data.landmarks_csv
    annotations = read_landmarks_csv(csv, data.num_landmarks, data.ndim)
    voxels = 0
    for name, ids in splits.items():
        ids = validate_ids(ids, f"{name} ids")
        missing = [i for i in ids if i not in annotations]
        if missing:
            raise DataError(f"{csv}: no annotation row for {name} id(s) {shortened(missing)}")
        for image_id in ids:
            path = data_dir / data.image_dir / f"{image_id}{data.image_suffix}"
            header = image_header(path)
            check_image_extent(path, header.size, data.image_spacing or header.spacing, config)
            voxels += math.prod(header.size)
    check_memory(config, voxels)
    return voxels


def training_data_digest(annotations: dict[str, np.ndarray], ids: Sequence[str]) -> str:
    """SHA-256 over the sorted ids and their annotation rows as read (NaN for every missing coordinate): what
    a resumed run compares with the data its first start trained on."""
    hasher = hashlib.sha256()
    for image_id in sorted(set(ids)):
        row = np.asarray(annotations[image_id], "<f8")
        hasher.update(image_id.encode() + b"\0" + np.where(np.isnan(row), np.nan, row).tobytes())
    return hasher.hexdigest()


def check_training_data(
    config: ExperimentConfig, data_dir: str | os.PathLike, train_ids: Sequence[str], test_ids: Sequence[str]
) -> str:
    """Warnings for test ids that are training ids too (optimistic test metrics) and for training rows without
    any annotated landmark (nothing to learn from); returns the training data's digest
    (training_data_digest). Call it after check_inputs, which refuses ids without a row."""
    data = config.data
    annotations = read_landmarks_csv(Path(data_dir) / data.landmarks_csv, data.num_landmarks, data.ndim)
    training = set(train_ids)
    shared = [i for i in test_ids if i in training]
    if shared:
        log.warning(
            "%d of %d test id(s) are training ids too (%s): the test metrics will be optimistic",
            len(shared),
            len(test_ids),
            shortened(shared, 5),
        )
    empty = [i for i in train_ids if not np.isfinite(annotations[i]).all(axis=1).any()]
    if empty:
        log.warning(
            "%s: %d training id(s) without any annotated landmark, which teach the network nothing: %s",
            Path(data_dir) / data.landmarks_csv,
            len(empty),
            shortened(empty),
        )
    return training_data_digest(annotations, train_ids)
