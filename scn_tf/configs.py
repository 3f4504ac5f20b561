"""Configuration dataclasses with the paper's values as defaults, and the dataset presets.

An `ExperimentConfig` has four sections, `data`, `augmentation`, `network` and `training`, and serialises to
JSON and back; a user's own dataset is a JSON file of the same form. Coordinates and sizes are in
(x, y[, z]) order; lengths in millimetres of the image's physical space (pixels where the image has
identity spacing, as the hand radiographs).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

# The networks, by configuration name, with the names that tables and plots give them.
NETWORK_NAMES = {"scn": "SCN", "unet": "U-Net", "la": "LA-Net"}


def _check_choice(key: str, value, choices: Iterable) -> None:
    """A ValueError naming the key, the allowed values and the value given, unless it is one of them."""
    choices = list(choices)
    if value not in choices:
        allowed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{key} must be one of {allowed}, got {value!r}")


class _Section:
    """JSON round trip for a dataclass section; unknown keys are an error that names them."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}; known: {sorted(names)}")
        return cls(**values)


MAX_IMAGE_SIDE = 8192  # network input pixels per axis; the memory check (scn_tf.preflight) bounds the product


def _require(
    name: str,
    value,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
) -> None:
    """A ValueError naming the key unless `value` is a finite number (an integer if asked) in range."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or (integer and number != int(number)):
        raise ValueError(f"{name} must be a finite {'integer' if integer else 'number'}, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, got {value!r}")
    if above is not None and number <= above:
        raise ValueError(f"{name} must be greater than {above:g}, got {value!r}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be at most {maximum:g}, got {value!r}")


@dataclasses.dataclass
class TrainingConfig(_Section):
    """Optimiser, loss and bookkeeping settings; defaults are the original cephalogram code's.

    `optimizer` "sgd" is the original's SGD with Nesterov momentum; "adam" is an option for small CPU
    configurations, whose learning rate does not depend on the loss scale. `lr_schedule` "constant" is the
    original's; "cosine" decays the rate from `learning_rate` to `learning_rate * lr_final_factor` over the
    run, after `lr_warmup` steps of linear warm-up.
    """

    iterations: int = 30_000
    optimizer: str = "sgd"
    learning_rate: float = 1e-6
    lr_schedule: str = "constant"
    lr_warmup: int = 0
    lr_final_factor: float = 0.0
    momentum: float = 0.99
    clip_norm: float | None = 1e4
    alpha: float = 20.0
    weight_decay: float = 0.001
    gamma: float = 100.0
    sigma_init: float = 2.5
    batch_size: int = 1
    seed: int = 0
    nonfinite_lr_factor: float = 0.5
    max_recoveries: int = 5
    sigma_min: float = 0.1
    log_every: int = 100
    checkpoint_every: int = 1000
    max_to_keep: int = 3
    xla: bool = False
    mixed_precision: bool = False

    def __post_init__(self):
        _check_choice("training.optimizer", self.optimizer, ("sgd", "adam"))
        _check_choice("training.lr_schedule", self.lr_schedule, ("constant", "cosine"))
        for key in ("iterations", "batch_size", "log_every", "checkpoint_every", "max_to_keep"):
            _require(f"training.{key}", getattr(self, key), minimum=1, integer=True)
        for key in ("learning_rate", "sigma_init", "sigma_min", "gamma"):
            _require(f"training.{key}", getattr(self, key), above=0.0)
        for key in ("alpha", "weight_decay", "momentum", "lr_warmup", "lr_final_factor", "max_recoveries"):
            _require(f"training.{key}", getattr(self, key), minimum=0.0)
        _require("training.nonfinite_lr_factor", self.nonfinite_lr_factor, above=0.0, maximum=1.0)
        if self.clip_norm is not None:
            _require("training.clip_norm", self.clip_norm, above=0.0)
        if self.sigma_min >= self.sigma_init:
            raise ValueError(
                f"training.sigma_min ({self.sigma_min}) must be below training.sigma_init ({self.sigma_init})"
            )


@dataclasses.dataclass
class DataConfig(_Section):
    """Where the data is and how a source image becomes a network input.

    `image_dir` and `landmarks_csv` are relative to `--data_dir`. `landmark_units` is "mm" (physical
    coordinates of the image) or "pixel" (continuous indices). `image_spacing` imposes a spacing on the
    source images (null: the file's own). `image_frame` is the physical frame of images, landmarks and
    predictions: "header" (the file's origin and direction) or "zero_origin" (origin 0, identity direction,
    spacing kept: the original's, in which its spine landmark CSV lies); predictions in mm are written in
    the same frame. `spacing` is the network-space pixel size; null fits the whole image into `image_size`
    with fixed aspect ratio. `outside_value` fills the network input beyond the source image (spine: the
    original's -3024 HU, -1 after normalisation, also the padding of short test volumes). `resampling` "field"
    evaluates the spatial transform on a coarse grid and interpolates it, exactly at every pixel of the cells
    where the grid misses (fast; source positions at most 0.06 mm off for the presets,
    docs/pipeline_speed.md), "exact" at every pixel.
    """

    name: str = "custom"
    ndim: int = 2
    num_landmarks: int = 19
    image_dir: str = "images"
    image_suffix: str = ".png"
    landmarks_csv: str = "landmarks.csv"
    landmark_units: str = "mm"
    image_spacing: list[float] | None = None
    image_frame: str = "header"
    landmark_names: list[str] | None = None
    image_size: list[int] = dataclasses.field(default_factory=lambda: [512, 512])
    spacing: list[float] | None = None
    smoothing_sigma: float = 0.0
    normalization: str = "fixed"
    intensity_shift: float = 0.0
    intensity_scale: float = 1.0
    intensity_clamp: list[float] | None = None
    percentiles: list[float] = dataclasses.field(default_factory=lambda: [1.0, 99.0])
    histogram_reference: str | None = None
    outside_value: float = 0.0
    resampling: str = "field"
    window_step: int = 64
    outlier_radii: list[str] = dataclasses.field(default_factory=lambda: ["2", "4", "10"])
    pe_normalization: str | None = None

    def __post_init__(self):
        _check_choice("data.ndim", self.ndim, (2, 3))
        _check_choice("data.landmark_units", self.landmark_units, ("mm", "pixel"))
        _check_choice("data.image_frame", self.image_frame, ("header", "zero_origin"))
        _check_choice("data.normalization", self.normalization, ("fixed", "percentile", "histogram_matching"))
        _check_choice("data.resampling", self.resampling, ("field", "exact"))
        if self.normalization == "histogram_matching" and not self.histogram_reference:
            raise ValueError("data.normalization 'histogram_matching' needs data.histogram_reference (an id)")
        for key in ("image_size", "spacing", "image_spacing"):
            value = getattr(self, key)
            if value is not None and len(value) != self.ndim:
                raise ValueError(f"data.{key} has {len(value)} values, data.ndim is {self.ndim}")
        _require("data.num_landmarks", self.num_landmarks, minimum=1, integer=True)
        for side in self.image_size:
            _require("data.image_size", side, minimum=1, maximum=MAX_IMAGE_SIDE, integer=True)
        for key in ("spacing", "image_spacing"):
            for value in getattr(self, key) or ():
                _require(f"data.{key}", value, above=0.0)
        _require("data.smoothing_sigma", self.smoothing_sigma, minimum=0.0)
        for radius in self.outlier_radii:
            _require("data.outlier_radii", radius, above=0.0)
        if self.landmark_names is not None and len(self.landmark_names) != self.num_landmarks:
            raise ValueError(
                f"data.landmark_names has {len(self.landmark_names)} names for {self.num_landmarks} landmarks"
            )


@dataclasses.dataclass
class AugmentationConfig(_Section):
    """Random spatial and intensity augmentation; zero disables a part.

    Translation and elastic magnitudes are in mm, or in network pixels with `spatial_units`
    "network_pixels" (the authors' hand code, which displaces after fitting the image into the input);
    rotation in radians (per axis in 3D); `scale` is the
    uniform and `scale_axis` the per-axis relative range: as in the original, the network -> source point
    map is multiplied by a factor in [1 - s, 1 + s], so the image appears zoomed by its inverse.
    `elastic_grid` control points per axis over the network's field of view, or with `elastic_space`
    "source" over the whole source image, in its space (the spine code). `crop_z` offsets the window along
    z by (L - field of view) * U(-0.5, 0.5), L the volume's length (the spine's random crop; short volumes
    shift too).
    `max_min_distance` (mm; null: none) keeps a landmark that the elastic part moves out of the field of
    view valid at the border pixel while it is at most this far out (the original's 30 mm for cephalograms,
    2 x the spacing for the spine); without the elastic part, landmarks outside the field of view are invalid.
    """

    translation: float = 0.0
    rotation: float = 0.0
    scale: float = 0.0
    scale_axis: float = 0.0
    elastic_grid: int = 0
    elastic_magnitude: float = 0.0
    intensity_shift: float = 0.0
    intensity_scale: float = 0.0
    crop_z: bool = False
    max_min_distance: float | None = None
    spatial_units: str = "mm"
    elastic_space: str = "network"

    def __post_init__(self):
        _check_choice("augmentation.spatial_units", self.spatial_units, ("mm", "network_pixels"))
        _check_choice("augmentation.elastic_space", self.elastic_space, ("network", "source"))


@dataclasses.dataclass
class NetworkConfig(_Section):
    """Network choice and size; null values take the model's defaults for the dimension."""

    network: str = "scn"
    filters: int | None = None
    levels: int | None = None
    spatial_kernel_size: int | None = None
    spatial_downsampling: int | None = None
    dropout_rate: float = 0.5
    padding: str | None = None
    unet_variant: str = "paper"

    def __post_init__(self):
        _check_choice("network.network", self.network, NETWORK_NAMES)


SECTIONS = {
    "data": DataConfig,
    "augmentation": AugmentationConfig,
    "network": NetworkConfig,
    "training": TrainingConfig,
}


@dataclasses.dataclass
class ExperimentConfig:
    data: DataConfig
    augmentation: AugmentationConfig
    network: NetworkConfig
    training: TrainingConfig

    def to_dict(self) -> dict:
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> ExperimentConfig:
        unknown = set(values) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown configuration sections: {sorted(unknown)}; known: {sorted(SECTIONS)}")
        return cls(**{name: section.from_dict(values.get(name, {})) for name, section in SECTIONS.items()})

    def updated(self, overrides: dict) -> ExperimentConfig:
        """A copy with {section: {key: value}} overrides applied (unknown keys are an error)."""
        merged = self.to_dict()
        for section, values in overrides.items():
            if section not in SECTIONS:
                raise ValueError(f"unknown configuration section {section!r}")
            merged[section].update(values)
        return ExperimentConfig.from_dict(merged)


def load_config(path: str | os.PathLike, base: ExperimentConfig | None = None) -> ExperimentConfig:
    """Reads a JSON configuration; with `base`, the file's keys override the base's. A top-level
    "trainable_weights" (written by --describe) is ignored, so that a description reads back."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read configuration ({error})") from error
    if isinstance(values, dict):
        values.pop("trainable_weights", None)
    try:
        return base.updated(values) if base is not None else ExperimentConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error


ISBI_LANDMARK_NAMES = [
    "sella",
    "nasion",
    "orbitale",
    "porion",
    "subspinale",
    "supramentale",
    "pogonion",
    "menton",
    "gnathion",
    "gonion",
    "lower incisal incision",
    "upper incisal incision",
    "upper lip",
    "lower lip",
    "subnasale",
    "soft tissue pogonion",
    "posterior nasal spine",
    "anterior nasal spine",
    "articulare",
]


def _skull2d() -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(
            name="skull2d",
            ndim=2,
            num_landmarks=19,
            image_dir="images",
            image_suffix=".jpg",
            landmarks_csv="annotations/challenge_mm.csv",
            landmark_units="mm",
            image_spacing=[0.1, 0.1],
            landmark_names=list(ISBI_LANDMARK_NAMES),
            image_size=[512, 512],
            spacing=[0.46875, 0.46875],
            smoothing_sigma=0.15,
            normalization="fixed",
            intensity_shift=-128.0,
            intensity_scale=1 / 128,
            intensity_clamp=[-1.0, 1.0],
            outside_value=0.0,
            outlier_radii=["2", "2.5", "3", "4"],
        ),
        augmentation=AugmentationConfig(
            translation=10.0,
            rotation=0.25,
            scale=0.2,
            scale_axis=0.2,
            elastic_grid=5,
            elastic_magnitude=10.0,
            intensity_shift=0.25,
            intensity_scale=0.25,
            max_min_distance=30.0,
        ),
        network=NetworkConfig(network="scn", filters=128, spatial_kernel_size=11, spatial_downsampling=16),
        training=TrainingConfig(
            iterations=30_000,
            learning_rate=1e-6,
            clip_norm=1e4,
            alpha=20.0,
            weight_decay=0.001,
            gamma=100.0,
            sigma_init=2.5,
            checkpoint_every=5000,
        ),
    )


def _skull2d_cpu() -> ExperimentConfig:
    """The cephalogram SCN sized for one hour of training on 2 CPU cores (issue 7; README, "Real data").

    Departures from the original and why: 1.5 mm pixels on a 128x160 input (the 193.5x240 mm image
    fits without the square padding; 10x fewer pixels than 512x512); 32 filters (16x fewer MACs per pixel
    than 128); spatial configuration at 1/8 (16x20 maps, as 1/16 of a small input leaves 8x10) with the
    original's 11x11 kernels; pre-smoothing at 0.6 mm against aliasing at 1.5 mm pixels; sigma
    initialised at 2 px (3 mm) and weight decay 5e-4 as the calibration probe; Adam with a cosine-decayed
    rate instead of constant-rate SGD, which at this size stalls at the zero-output start (lr 1e-5) or
    diverges (lr 1e-4); 21,500 iterations, 53.5 minutes here including the data pipeline (0.149 s per
    step with TF_ENABLE_ONEDNN_OPTS=1, the matrix-product kernel gradient and the einsum upsampling; 0.28 s
    before them).
    """
    config = _skull2d()
    return config.updated(
        {
            "data": {"image_size": [128, 160], "spacing": [1.5, 1.5], "smoothing_sigma": 0.6},
            "network": {"filters": 32, "spatial_downsampling": 8},
            "training": {
                "iterations": 21_500,
                "optimizer": "adam",
                "learning_rate": 2e-4,
                "lr_schedule": "cosine",
                "lr_warmup": 500,
                "lr_final_factor": 0.0,
                "clip_norm": None,
                "sigma_init": 2.0,
                "weight_decay": 5e-4,
                "checkpoint_every": 1000,
            },
        }
    )


def _hand2d() -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(
            name="hand2d",
            ndim=2,
            num_landmarks=37,
            image_dir="images",
            image_suffix=".mha",
            landmarks_csv="all.csv",
            landmark_units="pixel",
            image_spacing=[1.0, 1.0],
            image_size=[512, 512],
            spacing=None,
            smoothing_sigma=0.0,
            normalization="histogram_matching",
            histogram_reference="3147",
            intensity_shift=-128.0,
            intensity_scale=1 / 128,
            intensity_clamp=[-1.0, 1.0],
            pe_normalization="wrist:1,5,50",
        ),
        augmentation=AugmentationConfig(
            translation=20.0,
            rotation=math.radians(15),
            scale=0.4,
            scale_axis=0.0,
            elastic_grid=12,
            elastic_magnitude=5.0,
            intensity_shift=0.25,
            intensity_scale=0.25,
            spatial_units="network_pixels",
        ),
        network=NetworkConfig(network="scn", filters=128, spatial_kernel_size=11, spatial_downsampling=16),
        training=TrainingConfig(
            iterations=30_000,
            learning_rate=1e-6,
            clip_norm=1e4,
            alpha=20.0,
            weight_decay=0.0005,
            gamma=100.0,
            sigma_init=2.5,
            checkpoint_every=5000,
        ),
    )


def _spine3d() -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(
            name="spine3d",
            ndim=3,
            num_landmarks=26,
            image_dir="images",
            image_suffix=".nii.gz",
            landmarks_csv="points_world_coordinates.csv",
            landmark_units="mm",
            image_spacing=None,
            image_frame="zero_origin",
            image_size=[96, 96, 192],
            spacing=[2.0, 2.0, 2.0],
            smoothing_sigma=0.5,
            normalization="fixed",
            intensity_shift=0.0,
            intensity_scale=1 / 2048,
            intensity_clamp=[-1.0, 1.0],
            outside_value=-3024.0,
            window_step=64,
            outlier_radii=["10", "20"],
        ),
        augmentation=AugmentationConfig(
            translation=20.0,
            rotation=0.2,
            scale=0.0,
            scale_axis=0.1,
            elastic_grid=5,
            elastic_magnitude=15.0,
            intensity_shift=0.15,
            intensity_scale=0.15,
            crop_z=True,
            max_min_distance=4.0,
            elastic_space="source",
        ),
        network=NetworkConfig(
            network="scn", filters=64, spatial_kernel_size=7, spatial_downsampling=8, padding="reflect"
        ),
        training=TrainingConfig(
            iterations=40_000,
            learning_rate=5e-8,
            clip_norm=None,
            alpha=100.0,
            weight_decay=0.0005,
            gamma=1000.0,
            sigma_init=4.0,
            checkpoint_every=2500,
        ),
    )


def _hand3d() -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(
            name="hand3d",
            ndim=3,
            num_landmarks=28,
            image_dir="images",
            image_suffix=".nii.gz",
            landmarks_csv="landmarks.csv",
            landmark_units="mm",
            image_spacing=None,
            image_frame="zero_origin",
            image_size=[96, 128, 32],
            spacing=None,
            smoothing_sigma=0.0,
            normalization="percentile",
            percentiles=[1.0, 99.0],
            intensity_clamp=[-1.0, 1.0],
        ),
        augmentation=AugmentationConfig(
            translation=10.0,
            rotation=0.2,
            scale=0.0,
            scale_axis=0.1,
            elastic_grid=5,
            elastic_magnitude=5.0,
            intensity_shift=0.15,
            intensity_scale=0.15,
        ),
        network=NetworkConfig(
            network="scn", filters=64, spatial_kernel_size=7, spatial_downsampling=4, padding="reflect"
        ),
        training=TrainingConfig(
            iterations=20_000,
            learning_rate=5e-8,
            clip_norm=None,
            alpha=1000.0,
            weight_decay=0.0005,
            gamma=1000.0,
            sigma_init=4.0,
            checkpoint_every=2500,
        ),
    )


def _cpu_training(iterations: int) -> TrainingConfig:
    """Adam with a cosine-decayed rate: at these sizes constant-rate SGD stalls or diverges (as skull2d_cpu)."""
    return TrainingConfig(
        iterations=iterations,
        optimizer="adam",
        learning_rate=3e-4,
        lr_schedule="cosine",
        lr_warmup=100,
        clip_norm=None,
        alpha=20.0,
        weight_decay=5e-4,
        gamma=100.0,
        sigma_init=2.0,
        checkpoint_every=500,
    )


def _cpu2d() -> ExperimentConfig:
    """A starting point for own 2D data that trains on 2 CPU cores in minutes (docs/own_data.md).

    8-bit images (PNG, JPEG) with landmarks in pixels; the whole image fitted into 128x128 network pixels;
    augmentation in network pixels, so that it does not depend on the images' size or spacing; the
    skull2d_cpu network (32 filters, spatial configuration at 1/8 with 11x11 kernels).
    """
    return ExperimentConfig(
        data=DataConfig(
            name="cpu2d",
            ndim=2,
            num_landmarks=2,
            image_dir="images",
            image_suffix=".png",
            landmarks_csv="landmarks.csv",
            landmark_units="pixel",
            image_spacing=None,
            image_frame="header",
            image_size=[128, 128],
            spacing=None,
            normalization="fixed",
            intensity_shift=-128.0,
            intensity_scale=1 / 128,
            intensity_clamp=[-1.0, 1.0],
        ),
        augmentation=AugmentationConfig(
            translation=8.0,
            rotation=0.2,
            scale=0.15,
            scale_axis=0.05,
            intensity_shift=0.2,
            intensity_scale=0.2,
            spatial_units="network_pixels",
        ),
        network=NetworkConfig(network="scn", filters=32, levels=4, spatial_kernel_size=11, spatial_downsampling=8),
        training=_cpu_training(2000),
    )


def _cpu3d() -> ExperimentConfig:
    """The 3D counterpart of cpu2d: volumes in mm (NIfTI, MHA, NRRD) fitted into 32x32x32 network voxels,
    intensities by percentiles (no per-modality constants), 16 filters, spatial configuration at 1/4.
    A training step took 0.29 s on 2 loaded CPU cores (48x48x48: 1.25 s), docs/own_data.md."""
    return ExperimentConfig(
        data=DataConfig(
            name="cpu3d",
            ndim=3,
            num_landmarks=2,
            image_dir="images",
            image_suffix=".nii.gz",
            landmarks_csv="landmarks.csv",
            landmark_units="mm",
            image_spacing=None,
            image_frame="header",
            image_size=[32, 32, 32],
            spacing=None,
            normalization="percentile",
            percentiles=[1.0, 99.0],
            intensity_clamp=[-1.0, 1.0],
        ),
        augmentation=AugmentationConfig(
            translation=3.0,
            rotation=0.15,
            scale=0.1,
            scale_axis=0.05,
            intensity_shift=0.15,
            intensity_scale=0.15,
            spatial_units="network_pixels",
        ),
        network=NetworkConfig(
            network="scn", filters=16, levels=4, spatial_kernel_size=7, spatial_downsampling=4, padding="same"
        ),
        training=_cpu_training(1000),
    )


PRESETS = {
    "skull2d": _skull2d,
    "skull2d_cpu": _skull2d_cpu,
    "hand2d": _hand2d,
    "hand3d": _hand3d,
    "spine3d": _spine3d,
    "cpu2d": _cpu2d,
    "cpu3d": _cpu3d,
}


def preset(name: str) -> ExperimentConfig:
    """A fresh copy of a preset: the paper's datasets (skull2d, hand2d, hand3d, spine3d), skull2d_cpu, or the
    CPU-sized starting points for own data (cpu2d, cpu3d)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
