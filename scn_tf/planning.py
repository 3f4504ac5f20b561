"""scn-plan's decisions: a complete configuration from a data set's image headers, its landmarks, a sample of
its intensities and a budget, each decision with its reason.

The plan starts from the CPU preset of the data's dimension (`cpu2d`, `cpu3d`) or, for the GPU budget, from
the paper's preset (`skull2d`, `spine3d`), and sets what depends on the data:

- the image frame and the images' median spacing; landmark units (pixels for PNG/JPEG/BMP/TIFF unless told,
  which are then read at 1 mm per pixel whatever resolution the file records);
- the field of view: the landmarks' spread around the image centre (where the network is centred), widened
  by the augmentation's rotation, scaling and translation;
- the input size and network spacing: as fine as the budget allows (never finer than the images' own median
  spacing) while training at least as many iterations as the CPU preset; for the CPU budget, timed
  training steps on this machine (`time_step`) give the iterations that fill the minutes;
- the intensity mapping: Hounsfield units (CT) by the paper's fixed mapping, 8/16-bit images by the data's
  0.1st and 99.9th percentiles (small bright or dark landmarks keep their contrast), other volumes (MR) by
  per-image percentiles;
- the learned sigma's start (CPU: from the spacing; GPU: the paper's); the spatial configuration's
  downsampling and kernel size so that its receptive field covers the input; for the GPU budget the paper's
  elastic deformation and smoothing scaled to the planned spacing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from scn_tf.configs import ExperimentConfig, preset
from scn_tf.data.io import (
    IMAGE_SUFFIXES,
    PLAIN_IMAGE_SUFFIXES,
    DataError,
    read_header,
    read_image,
    read_landmarks_table,
    strip_image_suffix,
)
from scn_tf.listing import shortened
from scn_tf.models.receptive_fields import spatial_configuration

SAMPLED_IMAGES = 20  # images whose pixels give the intensity percentiles
CPU_SIZES = {2: [64, 96, 128, 160, 192, 224, 256], 3: [24, 32, 40, 48, 56, 64]}
MAX_ITERATIONS = {2: 20_000, 3: 10_000}
FIXED_SECONDS = 12.0  # TensorFlow start, tracing, test predictions, reports: scn-train at 100 vs 1,100 steps
SECONDS_PER_IMAGE = 0.05  # reading, caching and predicting each image
STEP_MARGIN = 1.1  # a training step with the augmenting pipeline beside it over the timed step: 1.0-1.12
INTENSITY_PERCENTILES = (0.1, 99.9)
SC_CHOICES = [(4, 5), (4, 7), (8, 7), (8, 11), (16, 11)]  # (downsampling, kernel), cheapest first


@dataclasses.dataclass
class Decision:
    key: str
    value: object
    reason: str


@dataclasses.dataclass
class Survey:
    """What the data set says: ids with an image and a row, headers, landmarks in mm around each image's centre."""

    ids: list[str]
    suffix: str
    ndim: int
    sizes: np.ndarray  # (M, d) pixels
    spacings: np.ndarray  # (M, d) mm (or 1 for plain images without a given spacing)
    pixel_types: list[str]
    num_landmarks: int
    landmark_units: str
    offsets: np.ndarray  # (M, N, d) landmark minus image centre, mm; NaN where missing
    image_spacing: list[float] | None
    skipped: list[str]
    files: dict[str, Path]  # id: image file, the ids' images
    landmark_names: list[str] | None = None

    @property
    def median_spacing(self) -> np.ndarray:
        return np.median(self.spacings, axis=0)

    @property
    def median_extent(self) -> np.ndarray:
        return np.median(self.sizes * self.spacings, axis=0)


def image_files(folder: Path) -> dict[str, Path]:
    """{id: path} of the image files in `folder` (DICOM series: one folder per id, suffix ""), by the most
    common supported suffix."""
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder does not exist")
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            if sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path)):
                found.setdefault("", {})[path.name] = path
            continue
        suffix = next((s for s in IMAGE_SUFFIXES if path.name.lower().endswith(s)), None)
        if suffix is not None:
            found.setdefault(suffix, {})[strip_image_suffix(path.name)] = path
    if not found:
        raise DataError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) and no DICOM series folders")
    suffix = max(found, key=lambda s: len(found[s]))
    return found[suffix]


def survey(
    data_dir: Path, landmarks: str, landmark_units: str | None = None, image_spacing: list[float] | None = None
) -> Survey:
    """Reads the headers of every image with a landmark row and the landmarks; DataErrors name the files."""
    files = image_files(data_dir / "images")
    csv = data_dir / landmarks
    if not csv.exists():
        raise DataError(f"{csv}: landmark file does not exist")
    headers = {image_id: read_header(path) for image_id, path in files.items()}
    dimensions = {
        image_id: 2 if len(h.size) == 2 or (len(h.size) == 3 and h.size[2] == 1) else len(h.size)
        for image_id, h in headers.items()
    }
    counts = Counter(dimensions.values())
    if len(counts) > 1:
        minority = min(counts, key=counts.get)
        odd = [files[i].name for i, d in dimensions.items() if d == minority]
        raise DataError(
            f"{data_dir / 'images'}: mixed dimensionality ({dict(counts)} images of each); "
            f"{minority}D: {shortened(odd)}"
        )
    ndim = next(iter(counts))
    if image_spacing is not None and len(image_spacing) != ndim:
        raise DataError(f"--image_spacing {list(image_spacing)}: {len(image_spacing)} values for {ndim}D images")
    table = read_landmarks_table(csv, None, ndim)
    rows = table.landmarks
    if not rows:
        raise DataError(f"{csv}: no landmark rows")
    num_landmarks = len(next(iter(rows.values())))
    ids = [i for i in files if i in rows]
    skipped = sorted(set(files) ^ set(rows))
    if not ids:
        raise DataError(f"no id has both an image in {data_dir / 'images'} and a row in {csv}")
    suffix = files[ids[0]].name[len(ids[0]) :]
    plain = suffix.lower() in PLAIN_IMAGE_SUFFIXES
    units = landmark_units or ("pixel" if plain else "mm")
    if units == "mm" and plain and image_spacing is None:
        raise DataError(
            f"landmarks in mm but the {suffix} images ({files[ids[0]].name}, ...) carry no physical spacing: "
            "give --image_spacing, or --landmark_units pixel"
        )
    spacings, sizes, offsets = [], [], []
    for image_id in ids:
        size, spacing, origin, direction = geometry(files[image_id], headers[image_id], ndim, image_spacing, plain)
        matrix = direction * spacing  # index -> physical
        points = rows[image_id] if units == "mm" else origin + rows[image_id] @ matrix.T
        centre = origin + matrix @ ((size - 1) / 2)
        sizes.append(size)
        spacings.append(spacing)
        offsets.append(np.linalg.solve(direction, (points - centre).T).T)  # along the image's axes (the network's)
    offsets = np.stack(offsets)
    if not np.isfinite(offsets).any():
        raise DataError(f"{csv}: no annotated landmark for the {len(ids)} ids with an image")
    extents = np.stack(sizes) * np.stack(spacings)
    outside = np.any(np.abs(offsets) > extents[:, None, :] / 2 + np.stack(spacings)[:, None, :], axis=2)
    if outside.sum() > 0.5 * np.isfinite(offsets[..., 0]).sum():
        listed = shortened(i for i, row in zip(ids, outside, strict=True) if row.any())
        raise DataError(
            f"{csv}: most landmarks lie outside their images ({int(outside.sum())}; ids {listed}): check "
            "--landmark_units and the coordinates' axis order (x, y[, z])"
        )
    return Survey(
        ids,
        suffix,
        ndim,
        np.stack(sizes),
        np.stack(spacings),
        [headers[i].pixel_type for i in ids],
        num_landmarks,
        units,
        offsets,
        image_spacing if image_spacing is not None or not plain else [1.0] * ndim,  # plain: never the file's dpi
        skipped,
        {i: files[i] for i in ids},
        table.names,
    )


def geometry(
    path: Path, header, ndim: int, image_spacing: list[float] | None, plain: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(size, spacing, origin, direction) of an image's first `ndim` axes from its header alone; plain images
    (PNG, JPEG, ...) have origin 0 and identity direction, and spacing 1 unless `image_spacing`."""
    size = np.array(header.size[:ndim], np.float64)
    origin, direction = np.zeros(ndim), np.eye(ndim)
    spacing = np.array(header.spacing[:ndim], np.float64)
    if not plain:
        reader = sitk.ImageFileReader()
        reader.SetFileName(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path))[0] if path.is_dir() else str(path))
        reader.ReadImageInformation()
        dimension = reader.GetDimension()
        origin = np.array(reader.GetOrigin()[:ndim], np.float64)
        direction = np.array(reader.GetDirection()).reshape(dimension, dimension)[:ndim, :ndim]
        if abs(np.linalg.det(direction)) < 1e-6:  # a slice across its volume's axes: as SimpleITK extracts it
            direction = np.eye(ndim)
    elif image_spacing is None:
        spacing = np.ones(ndim)
    if image_spacing is not None:
        spacing = np.array(image_spacing, np.float64)
    return size, spacing, origin, direction


def field_of_view(offsets: np.ndarray, rotation: float, scale: float, translation: float) -> np.ndarray:
    """(d,) mm that hold every landmark around the centre under the augmentation's largest rotation, scaling
    and translation, plus a 10% margin."""
    absolute = np.abs(offsets.reshape(-1, offsets.shape[-1]))
    absolute = absolute[np.all(np.isfinite(absolute), axis=1)]
    others = absolute.sum(axis=1, keepdims=True) - absolute
    reach = (absolute + math.sin(rotation) * others) * (1 + scale) + translation
    return 2.2 * reach.max(axis=0)


def spatial_choice(levels: int, size: int) -> tuple[int, int]:
    """The cheapest (downsampling, kernel) whose spatial configuration sees the whole input."""
    for downsampling, kernel in SC_CHOICES:
        if spatial_configuration(levels, kernel, downsampling) >= size:
            return downsampling, kernel
    return SC_CHOICES[-1]


def round_size(value: float, multiple: int) -> int:
    return max(multiple, int(math.ceil(value / multiple)) * multiple)


def input_size(
    longest: int, fov: np.ndarray, native: list[int], levels: int, multiple: int
) -> tuple[list[int], tuple[int, int]]:
    """The input size with `longest` pixels along the field of view's longest axis (no side finer than
    `native`) and its spatial configuration (downsampling, kernel): every side divides by the U-Net's
    2**(levels - 1) and by the downsampling, and pools to at least the kernel's half width plus one."""
    sizes = [min(round_size(longest * f / max(fov), multiple), n) for f, n in zip(fov, native, strict=True)]
    downsampling, kernel = spatial_choice(levels, max(sizes))
    step = math.lcm(multiple, downsampling)
    smallest = round_size(downsampling * (kernel // 2 + 1), step)
    fitted = []
    for side, limit in zip(sizes, native, strict=True):
        up = max(round_size(side, step), smallest)
        fitted.append(up if up <= limit or up - step < smallest else up - step)
    return fitted, (downsampling, kernel)


def intensity_plan(survey_: Survey) -> tuple[dict, list[Decision]]:
    """The "data" keys of the intensity mapping from a sample of the images' pixels."""
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(survey_.ids), min(SAMPLED_IMAGES, len(survey_.ids)), replace=False)
    values = []
    for index in sorted(chosen):
        array = sitk.GetArrayFromImage(read_image(survey_.files[survey_.ids[index]], survey_.ndim))
        values.append(np.asarray(array, np.float32).ravel()[:: max(1, array.size // 200_000)])
    values = np.concatenate(values)
    low, high = (float(v) for v in np.percentile(values, INTENSITY_PERCENTILES))
    kind = Counter(survey_.pixel_types).most_common(1)[0][0]
    if kind.startswith(("int", "float")) and float(values.min()) <= -500 and survey_.ndim == 3:  # CT, any type
        keys = {
            "normalization": "fixed",
            "intensity_shift": 0.0,
            "intensity_scale": 1 / 2048,
            "intensity_clamp": [-1.0, 1.0],
            "outside_value": preset("spine3d").data.outside_value,
        }
        return keys, [
            Decision(
                "intensity",
                "HU / 2048, clamped to [-1, 1]",
                f"signed {kind} values down to {values.min():.0f}: CT in Hounsfield units, the paper's spine mapping "
                f"(beyond the scan: {keys['outside_value']:g} HU)",
            )
        ]
    if survey_.ndim == 3 and not kind.startswith("uint8"):
        keys = {
            "normalization": "percentile",
            "percentiles": [1.0, 99.0],
            "intensity_clamp": [-1.0, 1.0],
            "outside_value": 0.0,
        }
        return keys, [
            Decision(
                "intensity",
                "per image, 1st/99th percentile to -1/1",
                f"{kind} volumes without a fixed scale (MR-like): each image's own percentiles",
            )
        ]
    if high <= low:
        high = low + 1.0
    shift, scale = -(low + high) / 2, 2 / (high - low)
    keys = {
        "normalization": "fixed",
        "intensity_shift": shift,
        "intensity_scale": scale,
        "intensity_clamp": [-1.0, 1.0],
        "outside_value": round(low, 4),
    }
    return keys, [
        Decision(
            "intensity",
            f"(x {shift:+.4g}) * {scale:.4g}, clamped to [-1, 1]",
            f"{kind} images; the {INTENSITY_PERCENTILES[0]:g} and {INTENSITY_PERCENTILES[1]:g} percentiles of "
            f"{len(chosen)} images' pixels "
            f"({low:.4g}, {high:.4g}) map to -1 and 1; beyond the image: {low:.4g} (-1)",
        )
    ]


@contextlib.contextmanager
def quiet():
    """Keeps a timing fit's progress lines and INFO records (checkpoint saved, ...) out of the plan's output."""
    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow", "scn_tf")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def time_step(config: ExperimentConfig, warmup: int = 3, timed: int = 10) -> float:
    """Seconds per training step of `config` on this machine: one short fit on a fixed random batch, timed
    between the batches the loop asks for after `warmup` steps (tracing excluded)."""
    import tempfile

    from scn_tf.models import build_model
    from scn_tf.training import Trainer

    data = config.data
    shape = (config.training.batch_size, *reversed(data.image_size), 1)
    rng = np.random.default_rng(0)
    batch = (
        rng.normal(size=shape).astype(np.float32),
        (rng.uniform(0.3, 0.7, (shape[0], data.num_landmarks, data.ndim)) * np.array(data.image_size)).astype(
            np.float32
        ),
        np.ones((shape[0], data.num_landmarks), bool),
    )
    asked: list[float] = []

    def batches(_start: int):
        while True:
            asked.append(time.perf_counter())  # the loop asks for batch k + 1 once step k is done
            yield batch

    training = dataclasses.replace(config.training, iterations=warmup + timed, checkpoint_every=10**9, log_every=10**9)
    with tempfile.TemporaryDirectory() as folder, quiet():
        Trainer(build_model(config.network, data), data.num_landmarks, training, folder).fit(batches)
    return (asked[-1] - asked[warmup]) / (len(asked) - 1 - warmup)


def plan(
    data_dir: str | Path,
    landmarks: str = "landmarks.csv",
    budget: str = "cpu",
    minutes: float = 10.0,
    landmark_units: str | None = None,
    image_spacing: list[float] | None = None,
    timer: Callable[[ExperimentConfig], float] = time_step,
    found: Survey | None = None,
) -> tuple[ExperimentConfig, list[Decision]]:
    """The configuration for the data set in `data_dir` and the decisions behind it (`found`: its survey,
    where the caller has read it already)."""
    data_dir = Path(data_dir)
    found = found or survey(data_dir, landmarks, landmark_units, image_spacing)
    ndim = found.ndim
    decisions = [
        Decision("ids", len(found.ids), f"images with a landmark row ({len(found.skipped)} ids with only one of them)"),
        Decision("data.ndim", ndim, f"the images' headers ({found.suffix})"),
        Decision("data.num_landmarks", found.num_landmarks, f"{landmarks}'s columns"),
        Decision(
            "data.landmark_units",
            found.landmark_units,
            "PNG/JPEG/BMP/TIFF pixels"
            if found.landmark_units == "pixel" and landmark_units is None
            else "given"
            if landmark_units
            else "images with physical headers",
        ),
    ]
    base = preset(("cpu2d" if ndim == 2 else "cpu3d") if budget == "cpu" else ("skull2d" if ndim == 2 else "spine3d"))
    augmentation = {"translation": 0.0, "spatial_units": "mm"}
    spacing = found.median_spacing
    decisions.append(
        Decision(
            "image spacing",
            [round(float(v), 4) for v in spacing],
            "--image_spacing"
            if image_spacing
            else "1 mm per pixel (plain images, whatever resolution they record)"
            if found.suffix.lower() in PLAIN_IMAGE_SUFFIXES
            else "median of the headers",
        )
    )
    anisotropy = float(spacing.max() / spacing.min())
    if anisotropy > 2:
        decisions.append(
            Decision(
                "anisotropy",
                round(anisotropy, 2),
                "network voxels stay isotropic: the coarse axis is interpolated at the network spacing",
            )
        )
    translation = float(0.05 * np.max(found.median_extent))
    augmentation["translation"] = round(translation, 2)
    rotation = base.augmentation.rotation
    scale = base.augmentation.scale + base.augmentation.scale_axis
    fov = field_of_view(found.offsets, rotation, scale, translation)
    fov = np.minimum(fov, found.median_extent)  # beyond the image is padding
    decisions.append(
        Decision(
            "field of view (mm)",
            [round(float(v), 1) for v in fov],
            f"landmark spread around the image centre under rotation {rotation}, scale "
            f"+-{scale:.2f}, translation {translation:.1f} mm (5% of the image), +10%; at most the median image",
        )
    )
    levels = base.network.resolved(ndim)["levels"]
    multiple = math.lcm(2 ** (levels - 1), 8)
    finest = float(np.min(spacing))
    native = [max(multiple, int(f / finest) // multiple * multiple) for f in fov]  # not finer than the images
    config = base
    if budget == "gpu":
        target = 512 if ndim == 2 else 96
        sizes, choice = input_size(target, fov, native, levels, multiple)
        iterations = base.training.iterations
        reason = f"the paper's scale ({target} along the longest axis), not finer than the images' spacing"
    else:
        sizes, iterations, reason, timings = None, None, "", {}
        least = base.training.iterations  # the CPU preset's own count: fewer trains a finer input too little
        for longest in reversed(CPU_SIZES[ndim]):
            candidate, choice = input_size(longest, fov, native, levels, multiple)
            if tuple(candidate) not in timings:
                timings[tuple(candidate)] = timer(_configured(base, found, candidate, fov, augmentation, choice))
            seconds = timings[tuple(candidate)]
            overhead = FIXED_SECONDS + SECONDS_PER_IMAGE * len(found.ids)
            steps = int((60 * minutes - overhead) / (seconds * STEP_MARGIN) // 100 * 100)
            if steps >= least or longest == CPU_SIZES[ndim][0]:
                sizes, iterations = candidate, max(100, min(steps, MAX_ITERATIONS[ndim]))
                reason = (
                    f"the largest input whose steps ({seconds:.3f} s each, timed here) leave at least "
                    f"{least} iterations (the {base.data.name} preset's) in {minutes:g} minutes"
                )
                break
    config = _configured(base, found, sizes, fov, augmentation, choice, iterations)
    config = config.updated({"data": {"landmarks_csv": landmarks, "image_dir": "images"}})
    network_spacing = config.data.spacing[0]
    decisions.append(Decision("data.image_size", sizes, reason))
    decisions.append(
        Decision(
            "data.spacing",
            config.data.spacing,
            f"the field of view over the input size (isotropic; the images' finest spacing is {finest:.4g})",
        )
    )
    decisions.append(
        Decision(
            "training.iterations",
            iterations,
            "the paper's" if budget == "gpu" else f"fills {minutes:g} minutes of scn-train",
        )
    )
    downsampling, kernel = choice
    decisions.append(
        Decision(
            "network.spatial_downsampling, spatial_kernel_size",
            [downsampling, kernel],
            f"the cheapest spatial configuration that sees the whole input "
            f"({spatial_configuration(levels, kernel, downsampling)} >= {max(sizes)} px)",
        )
    )
    if budget == "gpu":
        ratio = network_spacing / base.data.spacing[0]
        scaled = {
            "augmentation": {
                "elastic_magnitude": round(base.augmentation.elastic_magnitude * ratio, 3),
                "max_min_distance": round(base.augmentation.max_min_distance * ratio, 3),
            },
            "data": {"smoothing_sigma": round(base.data.smoothing_sigma * ratio, 4)},
        }
        config = config.updated(scaled)
        decisions.append(
            Decision(
                "augmentation.elastic_magnitude, max_min_distance, data.smoothing_sigma (mm)",
                [*scaled["augmentation"].values(), scaled["data"]["smoothing_sigma"]],
                f"the {base.data.name} preset's in its network pixels ({base.data.spacing[0]:g} mm; here "
                f"{network_spacing:.4g})",
            )
        )
        sigma, why = base.training.sigma_init, f"the {base.data.name} preset's"
    else:
        sigma = round(float(np.clip(2.0 * np.median(spacing) / network_spacing, 2.0, 4.0)), 2)
        why = "two image pixels in network pixels, at least 2 (the CPU presets' start)"
    config = config.updated({"training": {"sigma_init": sigma}})
    decisions.append(Decision("training.sigma_init", sigma, why))
    keys, intensity = intensity_plan(found)
    config = config.updated({"data": keys})
    decisions += intensity
    return config, decisions


def _configured(
    base: ExperimentConfig,
    found: Survey,
    sizes: list[int],
    fov: np.ndarray,
    augmentation: dict,
    spatial: tuple[int, int],
    iterations: int | None = None,
) -> ExperimentConfig:
    spacing = float(np.max(fov / np.array(sizes)))
    overrides = {
        "data": {
            "name": "planned",
            "ndim": found.ndim,
            "num_landmarks": found.num_landmarks,
            "image_suffix": found.suffix,
            "landmark_units": found.landmark_units,
            "landmark_names": found.landmark_names,
            "image_spacing": found.image_spacing,
            "image_frame": "header",
            "image_size": [int(v) for v in sizes],
            "spacing": [round(spacing, 5)] * found.ndim,
        },
        "augmentation": augmentation,
        "network": {"spatial_downsampling": spatial[0], "spatial_kernel_size": spatial[1]},
    }
    if found.ndim == 3:  # longer volumes are predicted by half-overlapping windows, and trained at any of them
        overrides["data"]["window_step"] = max(1, int(sizes[-1]) // 2)
        overrides["augmentation"] = {**augmentation, "crop_z": True}
    if iterations is not None:
        overrides["training"] = {"iterations": int(iterations)}
    return base.updated(overrides)
