"""Checks before a training run writes anything or takes its first step: every listed image is there with a
sane header, every id has an annotation row, and the configuration fits the machine's memory.

The memory estimate is deliberately rough (activations kept for the backward pass dominate): per level of the
network, batch x voxels at that level x filters x ACTIVATION_COPIES x 4 bytes, plus the heatmap-sized tensors
(predictions, targets, the two SCN components and their gradients) and the cached source images. It is
meant to stop configurations that cannot work (a 30000 x 30000 input), not to plan a GPU's memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import SimpleITK as sitk

from scn_tf.configs import ExperimentConfig
from scn_tf.data.ids import validate_ids
from scn_tf.data.io import MAX_IMAGE_VOXELS, DataError, read_landmarks_csv

ACTIVATION_COPIES = 8  # per conv block: two convolutions, activations, dropout mask, their gradients
HEATMAP_COPIES = 8  # predictions, targets, local and spatial components, their gradients
SOURCE_COPIES = 2  # the decoded image and its prepared (smoothed, float32) copy
DEFAULT_FILTERS = 128


class ResourceError(DataError):
    """A configuration that needs more than the machine has; the message gives the estimate."""


def machine_memory() -> int:
    """Physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def training_memory(config: ExperimentConfig, source_voxels: int = 0) -> int:
    """Rough bytes a training run of `config` needs (see the module docstring)."""
    data, network = config.data, config.network
    voxels = math.prod(data.image_size)
    filters = network.filters or DEFAULT_FILTERS
    levels = network.levels or (5 if network.network == "unet" else 4)
    level_sum = sum(2.0 ** (-data.ndim * level) for level in range(levels))
    batch = config.training.batch_size
    activations = batch * voxels * filters * ACTIVATION_COPIES * 4 * level_sum
    heatmaps = batch * voxels * data.num_landmarks * HEATMAP_COPIES * 4
    return int(activations + heatmaps + source_voxels * SOURCE_COPIES * 4)


def gib(count: int) -> str:
    return f"{count / 2**30:.1f} GiB"


def check_memory(config: ExperimentConfig, source_voxels: int = 0, available: int | None = None) -> int:
    """The estimate; a ResourceError naming it and the machine's memory where it does not fit."""
    needed = training_memory(config, source_voxels)
    available = machine_memory() if available is None else available
    if needed > available:
        data = config.data
        raise ResourceError(
            f"this configuration needs about {gib(needed)} of memory, the machine has {gib(available)}: batch "
            f"{config.training.batch_size} x input {'x'.join(map(str, data.image_size))} x "
            f"{config.network.filters or DEFAULT_FILTERS} filters, and {source_voxels:,} source voxels; "
            "lower data.image_size, network.filters or training.batch_size"
        )
    return needed


def image_header(path: Path) -> tuple[int, ...]:
    """The size in the header of `path` (a file or a DICOM folder), read without the pixels."""
    if not path.exists():
        raise DataError(f"{path}: image file does not exist")
    if path.is_dir():
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path))
        if not files:
            raise DataError(f"{path}: directory holds no DICOM series")
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        reader.ReadImageInformation()
        return tuple(reader.GetSize()[:2]) + (len(files),)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise DataError(f"{path}: cannot read the image header ({str(error).strip().splitlines()[-1]})") from error
    size, spacing = tuple(reader.GetSize()), reader.GetSpacing()
    if min(size) < 1 or math.prod(size) > MAX_IMAGE_VOXELS:
        raise DataError(f"{path}: image size {size} in the header is not between 1 and {MAX_IMAGE_VOXELS} voxels")
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise DataError(f"{path}: image spacing {spacing} in the header is not positive and finite")
    return size


def check_inputs(config: ExperimentConfig, data_dir: str | os.PathLike, splits: dict[str, Sequence[str]]) -> int:
    """Every id of every split ({name: ids}) valid, annotated and with a readable image header, and the run's
    memory estimate within the machine's; returns the total source voxels."""
    data = config.data
    data_dir = Path(data_dir)
    csv = data_dir / data.landmarks_csv
    annotations = read_landmarks_csv(csv, data.num_landmarks, data.ndim)
    voxels = 0
    for name, ids in splits.items():
        ids = validate_ids(ids, f"{name} ids")
        missing = [i for i in ids if i not in annotations]
        if missing:
            raise DataError(f"{csv}: no annotation row for {name} id(s) {', '.join(missing[:10])}")
        for image_id in ids:
            size = image_header(data_dir / data.image_dir / f"{image_id}{data.image_suffix}")
            voxels += math.prod(size)
    check_memory(config, voxels)
    return voxels
