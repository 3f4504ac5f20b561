"""Configuration dataclasses with the paper's values as defaults, and the dataset presets.

An `ExperimentConfig` has four sections, `data`, `augmentation`, `network` and `training`, and serialises to
JSON and back; a user's own dataset is a JSON file of the same form. Coordinates and sizes are in
(x, y[, z]) order; lengths in millimetres of the image's physical space (pixels where the image has
identity spacing, as the hand radiographs).

Every construction validates (a JSON file, a preset, `updated`, `dataclasses.replace`): each value's type by
its field's annotation, then each section's ranges and choices, then whether the network runs on inputs of
`data.image_size`; a ValueError names the key, the value and what is allowed, before a run writes anything.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import types
import typing
from collections.abc import Iterable
from pathlib import Path

from scn_tf.evaluation import Normalization, radius_number

# The networks, by configuration name, with the names that tables and plots give them.
NETWORK_NAMES = {"scn": "SCN", "unet": "U-Net", "la": "LA-Net"}
PADDINGS = ("same", "reflect")  # scn_tf.models.layers.Conv
UNET_VARIANTS = ("paper", "released")  # scn_tf.models.unet.VARIANTS
# The models' values for the network settings left null: build_model's levels, scn_tf.models.scn.DEFAULTS.
DEFAULT_LEVELS = {"scn": 4, "la": 4, "unet": 5}
DIMENSION_DEFAULTS = {
    2: {"filters": 128, "spatial_kernel_size": 11, "spatial_downsampling": 16, "padding": "same"},
    3: {"filters": 64, "spatial_kernel_size": 7, "spatial_downsampling": 8, "padding": "reflect"},
}
UNET_PADDING = "same"  # the original's U-Nets pad with zeros in 2D and 3D (scn_tf.models.unet)
MAX_IMAGE_SIDE = 8192  # network input pixels per axis; the memory check (scn_tf.preflight) bounds the product
MAX_LEVELS = int(math.log2(MAX_IMAGE_SIDE)) + 1  # 2**(levels - 1) divides every side


def _check_choice(key: str, value, choices: Iterable) -> None:
    """A ValueError naming the key, the allowed values and the value given, unless it is one of them."""
    choices = list(choices)
    if value not in choices:
        allowed = ", ".join("null" if choice is None else repr(choice) for choice in choices)
        raise ValueError(f"{key} must be one of {allowed}, got {value!r}")


def _require(
    name: str,
    value,
    minimum: int | None = None,
    above: int | None = None,
    maximum: int | None = None,
    below: int | None = None,
) -> None:
    """A ValueError naming the key unless `value` (a number, or a string of one) is finite and within bounds."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    if above is not None and number <= above:
        raise ValueError(f"{name} must be greater than {above}, got {value!r}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value!r}")
    if below is not None and number >= below:
        raise ValueError(f"{name} must be below {below}, got {value!r}")


class _TypeMismatch(Exception):
    """A value that does not have its field's annotated type."""


_EXPECTED = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false", type(None): "null"}
_EXPECTED_ITEMS = {int: "integers", float: "finite numbers", str: "strings"}
_KINDS = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"), (dict, "an object"))


def _is_union(annotation) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _typed(value, annotation):
    """`value` if it has the annotated type (int, float, str, bool, None, list[X] and unions of them), else
    _TypeMismatch; an int where a float is annotated comes back as a float (Keras's SGD refuses an integer
    momentum). A bool is neither an int nor a float, and a float is no int even when integral (8.0): JSON
    writes integers without a point, so a point there is more likely a slip than meant. Floats are finite."""
    if _is_union(annotation):
        for option in typing.get_args(annotation):
            try:
                return _typed(value, option)
            except _TypeMismatch:
                pass
        raise _TypeMismatch
    if typing.get_origin(annotation) is list:
        if not isinstance(value, list):
            raise _TypeMismatch
        return [_typed(item, typing.get_args(annotation)[0]) for item in value]
    if annotation is float and type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            raise _TypeMismatch from None
    if isinstance(value, bool) != (annotation is bool) or not isinstance(value, annotation):
        raise _TypeMismatch
    if annotation is float and not math.isfinite(value):
        raise _TypeMismatch
    return value


def _expected(annotation) -> str:
    """What an annotation allows, in the words of a message."""
    if _is_union(annotation):
        return " or ".join(_expected(option) for option in typing.get_args(annotation))
    if typing.get_origin(annotation) is list:
        items = typing.get_args(annotation)[0]
        return f"a list of {' or '.join(_EXPECTED_ITEMS[item] for item in typing.get_args(items) or [items])}"
    return _EXPECTED[annotation]


def _checked(key: str, value, annotation):
    """`value`, typed by `_typed`; a ValueError naming the key, the value and the type allowed if it is not."""
    try:
        return _typed(value, annotation)
    except _TypeMismatch:
        pass
    if value is None:
        shown = "null"
    else:
        kind = next((name for kind, name in _KINDS if isinstance(value, kind)), f"a {type(value).__name__}")
        shown = f"{value!r}" if isinstance(value, list) else f"{value!r} ({kind})"
    raise ValueError(f"{key} must be {_expected(annotation)}, got {shown}")


@functools.cache
def _field_types(cls: type) -> dict:
    """The dataclass fields' annotations, resolved (the module's annotations are strings)."""
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(cls)}


def _json_object(name: str, values) -> dict:
    if not isinstance(values, dict):
        raise ValueError(f"{name} must be a JSON object of keys and values, got {values!r}")
    return values


class _Section:
    """A dataclass section: JSON round trip, and validation at construction, every value's type by its
    field's annotation (an int given for a float is stored as a float), then `validate`'s ranges and
    choices. Unknown keys are an error that names them."""

    section = ""  # the section's key in the configuration, which messages name

    def __post_init__(self):
        for name, annotation in _field_types(type(self)).items():
            setattr(self, name, _checked(f"{self.section}.{name}", getattr(self, name), annotation))
        self.validate()

    def validate(self) -> None:
        """The section's ranges and choices, its values' types being right."""

    def _in_range(self, keys: str, **bounds: int) -> None:
        """`_require` for each of the space-separated keys: every item of a list; null passes."""
        for key in keys.split():
            value = getattr(self, key)
            items = value if isinstance(value, list) else [] if value is None else [value]
            for item in items:
                _require(f"{self.section}.{key}", item, **bounds)

    def _check_length(self, key: str, length: int, why: str = "") -> None:
        value = getattr(self, key)
        if value is not None and len(value) != length:
            raise ValueError(f"{self.section}.{key} must have {length} values{why}, got {value!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = set(_json_object(cls.section, values)) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}; known: {sorted(names)}")
        return cls(**values)


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

    section = "training"

    def validate(self) -> None:
        _check_choice("training.optimizer", self.optimizer, ("sgd", "adam"))
        _check_choice("training.lr_schedule", self.lr_schedule, ("constant", "cosine"))
        self._in_range("iterations batch_size log_every checkpoint_every max_to_keep", minimum=1)
        self._in_range("learning_rate sigma_init sigma_min gamma clip_norm", above=0)
        self._in_range("alpha weight_decay lr_warmup lr_final_factor max_recoveries", minimum=0)
        self._in_range("momentum", minimum=0, maximum=1)  # Keras's SGD
        self._in_range("nonfinite_lr_factor", above=0, maximum=1)
        self._in_range("seed", minimum=0, maximum=2**32 - 1)  # NumPy's global seed
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
    docs/pipeline_speed.md), "exact" at every pixel. `pixel_type_policy` is what prediction does, under fixed
    intensity normalisation, with an image whose pixel type (uint8, uint16, float32, ...) none of the training
    images had: "refuse" it, or "rescale" its values onto the training type's range
    (scn_tf.data.io.conform_pixel_type). `histogram_reference` is the id of the image whose Otsu-foreground
    histogram every image is matched to under `normalization` "histogram_matching". `window_step` (3D) is the
    z step, in network voxels, of the sliding windows that prediction runs over volumes longer than the input.
    `outlier_radii` are in the errors' units; strings of numbers are accepted and stored as numbers.
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
    outlier_radii: list[str | int | float] = dataclasses.field(default_factory=lambda: [2, 4, 10])
    pe_normalization: str | None = None
    pixel_type_policy: str = "refuse"

    section = "data"

    def validate(self) -> None:
        _check_choice("data.ndim", self.ndim, (2, 3))
        _check_choice("data.pixel_type_policy", self.pixel_type_policy, ("refuse", "rescale"))
        _check_choice("data.landmark_units", self.landmark_units, ("mm", "pixel"))
        _check_choice("data.image_frame", self.image_frame, ("header", "zero_origin"))
        _check_choice("data.normalization", self.normalization, ("fixed", "percentile", "histogram_matching"))
        _check_choice("data.resampling", self.resampling, ("field", "exact"))
        if self.normalization == "histogram_matching" and not self.histogram_reference:
            raise ValueError("data.normalization 'histogram_matching' needs data.histogram_reference (an id)")
        for key in ("image_size", "spacing", "image_spacing"):
            self._check_length(key, self.ndim, f" (data.ndim is {self.ndim})")
        self._in_range("num_landmarks window_step", minimum=1)
        self._in_range("image_size", minimum=1, maximum=MAX_IMAGE_SIDE)
        self._in_range("spacing image_spacing outlier_radii", above=0)
        self.outlier_radii = [radius_number(radius) for radius in self.outlier_radii]  # "2" given, 2 written
        self._in_range("smoothing_sigma", minimum=0)
        if self.intensity_scale == 0:
            raise ValueError(f"data.intensity_scale must not be 0 (a constant input), got {self.intensity_scale}")
        self._check_length("intensity_clamp", 2)
        if self.intensity_clamp is not None and not self.intensity_clamp[0] < self.intensity_clamp[1]:
            raise ValueError(f"data.intensity_clamp must be [low, high] with low < high, got {self.intensity_clamp}")
        self._check_length("percentiles", 2)
        if not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise ValueError(f"data.percentiles must be [low, high], 0 <= low < high <= 100, got {self.percentiles}")
        if self.landmark_names is not None and len(self.landmark_names) != self.num_landmarks:
            raise ValueError(
                f"data.landmark_names has {len(self.landmark_names)} names for {self.num_landmarks} landmarks"
            )
        self._check_pe_normalization()

    def _check_pe_normalization(self) -> None:
        """'NAME:first,second,distance' with two different landmarks of the data and a positive distance, as the
        evaluation after training will read it."""
        if self.pe_normalization is None:
            return
        try:
            parsed = Normalization.parse(self.pe_normalization)
        except ValueError:
            parsed = None
        landmarks = range(self.num_landmarks)
        if (
            parsed is None
            or parsed.first == parsed.second
            or parsed.first not in landmarks
            or parsed.second not in landmarks
            or not 0 < parsed.distance < math.inf
        ):
            raise ValueError(
                "data.pe_normalization must be null or 'NAME:first,second,distance' with two different 0-based "
                f"landmark indices below data.num_landmarks ({self.num_landmarks}) and a positive distance in mm, "
                f"got {self.pe_normalization!r}"
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
    `absent_fraction` of the samples are cropped first (scn_tf.data.cropping: one or two sides cut, 50-85% of
    the axis kept), so that the landmarks cut off train towards a flat heatmap, as missing annotations do:
    the network learns to say that a landmark is not in the image (0: never, the original).
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
    absent_fraction: float = 0.0

    section = "augmentation"

    def validate(self) -> None:
        _check_choice("augmentation.spatial_units", self.spatial_units, ("mm", "network_pixels"))
        _check_choice("augmentation.elastic_space", self.elastic_space, ("network", "source"))
        self._in_range(
            "translation rotation elastic_grid elastic_magnitude intensity_shift max_min_distance", minimum=0
        )
        self._in_range("scale scale_axis intensity_scale", minimum=0, below=1)  # factors 1 +- s stay positive
        self._in_range("absent_fraction", minimum=0, maximum=1)


@dataclasses.dataclass
class NetworkConfig(_Section):
    """Network choice and size; null values take the model's defaults for the network and dimension."""

    network: str = "scn"
    filters: int | None = None
    levels: int | None = None
    spatial_kernel_size: int | None = None
    spatial_downsampling: int | None = None
    dropout_rate: float = 0.5
    padding: str | None = None
    unet_variant: str = "paper"

    section = "network"

    def validate(self) -> None:
        _check_choice("network.network", self.network, NETWORK_NAMES)
        _check_choice("network.padding", self.padding, (None, *PADDINGS))
        _check_choice("network.unet_variant", self.unet_variant, UNET_VARIANTS)
        self._in_range("filters spatial_kernel_size", minimum=1)
        self._in_range("levels", minimum=1, maximum=MAX_LEVELS)
        self._in_range("spatial_downsampling", minimum=1, maximum=MAX_IMAGE_SIDE)
        self._in_range("dropout_rate", minimum=0, below=1)  # Keras's Dropout

    def resolved(self, ndim: int) -> dict:
        """levels, filters, spatial_kernel_size, spatial_downsampling and padding as the model is built with them."""
        defaults = {"levels": DEFAULT_LEVELS[self.network], **DIMENSION_DEFAULTS[ndim]}
        if self.network == "unet":
            defaults["padding"] = UNET_PADDING
        return {key: default if getattr(self, key) is None else getattr(self, key) for key, default in defaults.items()}


def _pools_to(sizes: list[int], factor: int, smallest: int) -> bool:
    """Whether every side divides by `factor` into at least `smallest` pixels."""
    return all(side % factor == 0 and side // factor >= smallest for side in sizes)


def check_network_fits(network: NetworkConfig, data: DataConfig) -> None:
    """A ValueError unless the network runs on inputs of `data.image_size`, which Keras would otherwise find at
    the first step: every side must divide by 2**(levels - 1), as each level's skip meets the upsampled
    deeper level, and for the SCN by spatial_downsampling, whose pooled map is upsampled back to the input
    size; with 'reflect' padding (TensorFlow's) a padded map must be larger than its padding, so the
    deepest level keeps 2 pixels per side and the spatial configuration spatial_kernel_size // 2 + 1."""
    sizes = data.image_size
    resolved = network.resolved(data.ndim)
    reflect = resolved["padding"] == "reflect"
    # (key, pooling factor of a value, pixels per side needed after pooling, the values worth trying)
    constraints = [("levels", lambda n: 2 ** (n - 1), 2 if reflect else 1, range(1, MAX_LEVELS + 1))]
    if network.network == "scn":
        smallest = resolved["spatial_kernel_size"] // 2 + 1 if reflect else 1
        constraints.append(("spatial_downsampling", lambda n: n, smallest, range(1, min(sizes) + 1)))
    for key, factor, smallest, candidates in constraints:
        value = resolved[key]
        if _pools_to(sizes, factor(value), smallest):
            continue
        given = value if getattr(network, key) is not None else f"null ({value} by default)"
        allowed = [n for n in candidates if _pools_to(sizes, factor(n), smallest)]
        raise ValueError(
            f"network.{key} {given} needs every side of data.image_size {sizes} divisible by {factor(value)}"
            + (f", with at least {smallest} pixels per side after pooling ('reflect' padding)" if smallest > 1 else "")
            + (
                f"; the values that fit are {', '.join(map(str, allowed))} (the largest: {allowed[-1]})"
                if allowed
                else "; no value fits"
            )
        )


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

    def __post_init__(self):
        check_network_fits(self.network, self.data)

    def to_dict(self) -> dict:
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> ExperimentConfig:
        unknown = set(_json_object("a configuration", values)) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown configuration sections: {sorted(unknown)}; known: {sorted(SECTIONS)}")
        return cls(**{name: section.from_dict(values.get(name, {})) for name, section in SECTIONS.items()})

    def updated(self, overrides: dict) -> ExperimentConfig:
        """A copy with {section: {key: value}} overrides applied (unknown keys are an error)."""
        merged = self.to_dict()
        for section, values in _json_object("a configuration", overrides).items():
            if section not in SECTIONS:
                raise ValueError(f"unknown configuration section {section!r}")
            merged[section].update(_json_object(section, values))
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
            outlier_radii=[2, 2.5, 3, 4],
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
            outlier_radii=[10, 20],
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
