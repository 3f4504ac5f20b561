"""Landmarks with a model exported by scn-export, using numpy, SimpleITK and onnxruntime only.

  python examples/onnx_predict.py EXPORT_DIR IMAGE... > landmarks.csv

Prints one CSV row per image, `id,x1,y1[,z1],...` (id: the file name without its suffix), in the model's
landmark units (preprocessing.json "landmarks"), NaN for a landmark the model's calibration reports absent.
The steps are scn-predict's (scn_tf.inference.Predictor), from preprocessing.json: read the image, set its
frame, smooth, match its histogram, resample it onto the network grid, normalise the intensities, run the
network (3D: windows along z, their heatmaps merged by maximum and decoded here), and map the landmarks back
to the image. Image files as SimpleITK reads them (no DICOM folders).
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import SimpleITK as sitk


def read_image(path: str, settings: dict) -> sitk.Image:
    """The image as float32 in the model's frame: "zero_origin" sets origin 0 and an identity direction."""
    image = sitk.ReadImage(path)
    components = image.GetNumberOfComponentsPerPixel()
    if components > 1:  # colour: the channels averaged (equal ones kept), an alpha channel (2 or 4) dropped
        channels = sitk.GetArrayViewFromImage(image)[..., : 3 if components >= 3 else 1]
        equal = (channels == channels[..., :1]).all()
        grey = sitk.GetImageFromArray(np.float32(channels[..., 0] if equal else channels.mean(axis=-1)))
        grey.CopyInformation(image)
        image = grey
    image = sitk.Cast(image, sitk.sitkFloat32)
    if settings["ndim"] == 2 and image.GetDimension() == 3 and image.GetSize()[2] == 1:
        image = image[:, :, 0]
    if settings["image"]["spacing"]:  # imposed on the images in training
        image.SetSpacing(settings["image"]["spacing"])
    if settings["image"]["frame"] == "zero_origin":
        image.SetOrigin([0.0] * image.GetDimension())
        image.SetDirection(np.eye(image.GetDimension()).ravel().tolist())
    return image


def match_histogram(image: sitk.Image, reference: np.ndarray) -> sitk.Image:
    """The image's Otsu-foreground quantiles mapped piecewise linearly onto `reference`, linear beyond them."""
    array = sitk.GetArrayFromImage(image)
    foreground = sitk.GetArrayFromImage(sitk.OtsuThreshold(sitk.GetImageFromArray(array), 0, 1)).astype(bool)
    quantiles = np.percentile(array[foreground], np.linspace(0, 100, len(reference)))
    points, unique = np.unique(quantiles, return_index=True)
    targets = reference[unique]
    matched = np.interp(array, points, targets)
    if len(points) > 1:
        below = targets[0] + (array - points[0]) * (targets[1] - targets[0]) / (points[1] - points[0])
        above = targets[-1] + (array - points[-1]) * (targets[-1] - targets[-2]) / (points[-1] - points[-2])
        matched = np.where(array < points[0], below, np.where(array > points[-1], above, matched))
    result = sitk.GetImageFromArray(matched.astype(np.float32))
    result.CopyInformation(image)
    return result


def network_grid(image: sitk.Image, grid: dict) -> sitk.Image:
    """The network's grid in the image's space: its spacing (or the largest that fits the image), the image's
    direction, centred on the image's centre voxel; in 3D with a fixed spacing, as long as the image in z."""
    ndim = image.GetDimension()
    size = np.array(grid["size"])
    extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    if grid["spacing"] is None:
        spacing = np.full(ndim, np.max(extent / size))
    else:
        spacing = np.array(grid["spacing"], np.float64)
        if ndim == 3:
            size[2] = max(size[2], math.ceil(extent[2] / spacing[2]))
    direction = np.array(image.GetDirection()).reshape(ndim, ndim)
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint(((np.array(image.GetSize()) - 1) / 2).tolist()))
    reference = sitk.Image([int(v) for v in size], sitk.sitkFloat32)
    reference.SetSpacing(spacing.tolist())
    reference.SetDirection(direction.ravel().tolist())
    reference.SetOrigin((centre - direction @ ((size - 1) / 2 * spacing)).tolist())
    return reference


def normalize(array: np.ndarray, intensity: dict) -> np.ndarray:
    if intensity["normalization"] == "percentile":
        low, high = np.percentile(array, intensity["percentiles"])
        array = 2.0 * (array - low) / max(high - low, 1e-6) - 1.0
    else:
        array = (array + intensity["shift"]) * intensity["scale"]
    if intensity["clamp"] is not None:
        array = np.clip(array, *intensity["clamp"])
    return array.astype(np.float32)


def merged_heatmaps(session: onnxruntime.InferenceSession, array: np.ndarray, windows: dict) -> np.ndarray:
    """Heatmaps (z, y, x, N) of a volume run as windows along z, merged by maximum (the last one at the end)."""
    length, step = windows["length"], min(windows["step"], windows["length"])  # no slice skipped
    starts = list(range(0, array.shape[0] - length + 1, step))
    if starts[-1] != array.shape[0] - length:
        starts.append(array.shape[0] - length)
    merged = None
    for start in starts:
        (heatmaps,) = session.run(["heatmaps"], {"image": array[None, start : start + length, ..., None]})
        if merged is None:
            merged = np.full(array.shape + heatmaps.shape[-1:], -np.inf, np.float32)
        np.maximum(merged[start : start + length], heatmaps[0], out=merged[start : start + length])
    return merged


def decode(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, d) (x, y[, z]) of each heatmap's maximum (*spatial, N), refined on each axis by the vertex of the
    parabola through it and its neighbours where they make a proper maximum, and (N,) the maxima."""
    spatial, landmarks = heatmaps.shape[:-1], np.arange(heatmaps.shape[-1])
    index = np.argmax(heatmaps.reshape(-1, len(landmarks)), axis=0)
    position = np.array(np.unravel_index(index, spatial))  # (d, N), array order
    peaks = heatmaps[(*position, landmarks)]
    coords = position.astype(np.float32)
    for axis, length in enumerate(spatial):
        inner = (position[axis] > 0) & (position[axis] < length - 1)
        before, after = position.copy(), position.copy()
        before[axis] = np.where(inner, position[axis] - 1, position[axis])
        after[axis] = np.where(inner, position[axis] + 1, position[axis])
        b, a = heatmaps[(*before, landmarks)], heatmaps[(*after, landmarks)]
        denominator = b - 2.0 * peaks + a
        refine = inner & (denominator < 0)
        coords[axis] += np.where(refine, 0.5 * (b - a) / np.where(refine, denominator, -1.0), 0.0)
    return coords[::-1].T, peaks


def predict(path: str, session: onnxruntime.InferenceSession, settings: dict) -> np.ndarray:
    """(N, d) landmarks of one image in the model's units."""
    image = read_image(path, settings)
    if settings["smoothing_sigma_mm"] > 0:
        image = sitk.SmoothingRecursiveGaussian(image, settings["smoothing_sigma_mm"])
    if settings["histogram_quantiles"] is not None:
        image = match_histogram(image, np.array(settings["histogram_quantiles"]))
    grid, outside = network_grid(image, settings["network_grid"]), settings["network_grid"]["outside_value"]
    network_image = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, outside, sitk.sitkFloat32)
    array = normalize(sitk.GetArrayFromImage(network_image), settings["intensity"])
    if settings["ndim"] == 2:
        coords, peaks = (
            output[0] for output in session.run(["coordinates", "peaks"], {"image": array[None, ..., None]})
        )
    else:
        coords, peaks = decode(merged_heatmaps(session, array, settings["windows"]))
    points = [grid.TransformContinuousIndexToPhysicalPoint(c.astype(np.float64).tolist()) for c in coords]
    if settings["landmarks"]["units"] == "pixel":
        points = [image.TransformPhysicalPointToContinuousIndex(p) for p in points]
    points = np.array(points)
    if settings["present_min_peak"] is not None:  # the calibration's presence threshold
        points[peaks < np.array(settings["present_min_peak"])] = np.nan
    return points


def image_id(path: str) -> str:
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem


def load(export_dir: str) -> tuple[onnxruntime.InferenceSession, dict]:
    """The exported network's session and preprocessing.json."""
    settings = json.loads((Path(export_dir) / "preprocessing.json").read_text())
    if settings["format"] != "onnx":
        sys.exit(f"{export_dir}: holds a {settings['format']} model; export with --format onnx")
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads leave the cores free
    model = str(Path(export_dir) / settings["model"])
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"]), settings


def main(export_dir: str, *images: str) -> None:
    session, settings = load(export_dir)
    for path in images:
        values = ["NaN" if not np.isfinite(v) else f"{v:.6g}" for v in predict(path, session, settings).ravel()]
        print(",".join([image_id(path), *values]))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
