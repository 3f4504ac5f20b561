"""Shared test helpers: quiet TensorFlow, deterministic seeds, tiny generated landmark images, experiment
scripts as modules, and the time spent per test file (printed at the end of a run, so that a slow file
shows up in CI's log)."""

import collections
import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from scn_tf.configs import DataConfig

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_experiment(name: str):
    """experiments/<name>.py as a module (registered in sys.modules: dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blob_sample(
    rng: np.random.Generator, size: int = 32, num_landmarks: int = 2, ndim: int = 2, blob_sigma: float = 1.5
):
    """One image (1, *spatial, 1) with a distinct Gaussian blob per landmark, coords (1, N, d), valid (1, N).

    Landmark 0 is a bright blob and landmark 1 a dark one, so both local appearance and arrangement
    identify them.
    """
    coords = rng.uniform(6, size - 7, size=(num_landmarks, ndim)).astype(np.float32)
    grids = np.meshgrid(*[np.arange(size)] * ndim, indexing="ij")  # array order (z,) y, x
    image = np.zeros((size,) * ndim, np.float32)
    for index, point in enumerate(coords):
        squared = sum((grids[axis] - point[ndim - 1 - axis]) ** 2 for axis in range(ndim))
        image += (1.0 if index % 2 == 0 else -1.0) * np.exp(-squared / (2 * blob_sigma**2))
    return image[None, ..., None], coords[None], np.ones((1, num_landmarks), bool)


def landmark_row(image_id: str, points: np.ndarray) -> str:
    """A CSV row of `points`; image 'b' has its second landmark missing, as the tests expect."""
    values = points.ravel().astype(object)
    if image_id == "b":
        values[2:4] = np.nan
    return ",".join([image_id] + [str(v) for v in values])


def write_dataset(root: Path, ids=("a", "b", "c"), size=(60, 50), spacing=(0.8, 0.6)):
    """2D .mha images with a blob per landmark and a landmark CSV in mm (3 landmarks, one missing in 'b')."""
    (root / "images").mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(0)
    for image_id in ids:
        points = rng.uniform(0.2, 0.8, size=(3, 2)) * np.array(size) * np.array(spacing)
        y, x = np.mgrid[: size[1], : size[0]]
        array = np.zeros(size[::-1], np.float32)
        for px, py in points:
            array += 200 * np.exp(-((x * spacing[0] - px) ** 2 + (y * spacing[1] - py) ** 2) / 8.0)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        sitk.WriteImage(image, str(root / "images" / f"{image_id}.mha"))
        rows.append(landmark_row(image_id, points))
    (root / "landmarks.csv").write_text("\n".join(rows) + "\n")
    return DataConfig(
        name="tiny",
        ndim=2,
        num_landmarks=3,
        image_suffix=".mha",
        landmarks_csv="landmarks.csv",
        image_size=[32, 32],
        spacing=None,
        intensity_scale=1 / 100,
    )


def write_pixel_dataset(root: Path, ids=("a", "b", "c"), size=(60, 50), image_spacing=None) -> DataConfig:
    """2D 8-bit PNGs with a bright blob per landmark and a landmark CSV in pixels (3 named landmarks, one
    missing in 'b'): own data as a newcomer brings it. `image_spacing` is imposed on the images (mm per px)."""
    (root / "images").mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(0)
    y, x = np.mgrid[: size[1], : size[0]]
    for image_id in ids:
        points = rng.uniform(0.2, 0.8, size=(3, 2)) * np.array(size)
        array = np.full(size[::-1], 20.0)
        for px, py in points:
            array += 200 * np.exp(-((x - px) ** 2 + (y - py) ** 2) / 8.0)
        sitk.WriteImage(
            sitk.GetImageFromArray(np.clip(array, 0, 255).astype(np.uint8)), str(root / "images" / f"{image_id}.png")
        )
        rows.append(landmark_row(image_id, points))
    (root / "landmarks.csv").write_text("\n".join(rows) + "\n")
    return DataConfig(
        name="tiny_png",
        ndim=2,
        num_landmarks=3,
        landmark_names=["tip", "notch", "corner"],
        landmark_units="pixel",
        image_spacing=image_spacing,
        image_size=[32, 32],
        intensity_shift=-128.0,
        intensity_scale=1 / 128,
    )


def write_untrained_model(root: Path) -> Path:
    """A model folder `root`/run (4-filter SCN, untrained, seed 0) for the tiny data set written to `root`/data."""
    import keras

    from scn_tf.configs import AugmentationConfig, ExperimentConfig, NetworkConfig, TrainingConfig
    from scn_tf.files import write_json_atomic
    from scn_tf.model_dir import write_model_files
    from scn_tf.models import build_model

    data = write_dataset(root / "data")
    config = ExperimentConfig(
        data,
        AugmentationConfig(),
        NetworkConfig(filters=4, levels=2, spatial_kernel_size=3, spatial_downsampling=4),
        TrainingConfig(),
    )
    keras.utils.set_random_seed(0)
    model = build_model(config.network, config.data)
    model(np.zeros((1, 32, 32, 1), np.float32))
    run = root / "run"
    write_model_files(run, config)
    model.save_weights(run / "last.weights.h5")
    write_json_atomic(run / "sigmas.json", {"step": 0, "sigmas": [2.0, 2.5, 3.0]})
    return run


_FILE_SECONDS: collections.Counter = collections.Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Adds the set-up, call and tear-down time of every test to its file's total."""
    _FILE_SECONDS[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Seconds per test file, slowest first."""
    if not _FILE_SECONDS:
        return
    terminalreporter.section("seconds per test file")
    for path, seconds in _FILE_SECONDS.most_common():
        terminalreporter.write_line(f"{seconds:8.1f} s  {path}")
    terminalreporter.write_line(f"{sum(_FILE_SECONDS.values()):8.1f} s  total")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def write_dicom_series(folder: Path, array: np.ndarray, spacing=(1.0, 1.0, 2.5), origin=(0.0, 0.0, 0.0)) -> None:
    """`array` (z, y, x) as a DICOM series of one file per slice in `folder`, with its geometry in the tags."""
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    volume = sitk.GetImageFromArray(array)
    volume.SetSpacing(spacing[:2] + (1.0,))
    for z in range(array.shape[0]):
        slice_image = volume[:, :, z]
        slice_image.SetMetaData("0020|0032", f"{origin[0]:g}\\{origin[1]:g}\\{origin[2] + z * spacing[2]:g}")
        slice_image.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        slice_image.SetMetaData("0020|0013", str(z))
        slice_image.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1")
        writer.SetFileName(str(folder / f"{z:03d}.dcm"))
        writer.Execute(slice_image)
