"""scn-predict: landmarks of new images with a trained model.

  scn-predict --model_dir runs/skull2d --output predictions.csv [--overlay_dir overlays] [--checkpoint best] \
      [--mirror auto] [--save_heatmaps heatmaps] images/*.jpg

Writes the annotation CSV format in the model's landmark units, one row per image (id = file name without
extensions; where names repeat, with as many parent folders as tell them apart: `scans__a`), and beside it a
JSON with each image's file, each landmark's confidence (heatmap peak), its scale against the training
images' peaks (scn_tf.confidence) and learned sigma (`sigma`, in the JSON's `units`: px for a model with
landmarks in pixels, else mm, then also as `sigma_mm`); warns for images far below the model's usual.
An image smaller than the network's field of view is refused; so is, under fixed intensity normalisation, one
whose pixel type the training images did not have (a 16-bit image for an 8-bit model), unless
--pixel_type_policy rescale (default: the model's data.pixel_type_policy) maps its values onto the training
type's range.
Every input is read and every output path checked before anything is written: a bad one ends the command with
exit 1 and no output, unless --skip_bad (the JSON's "skipped" lists the files left out). Existing outputs
(the CSV, the JSON, overlays, heatmaps) are replaced only with --overwrite, and never an input. The outputs
appear together at the end: after an error, SIGINT or SIGTERM, or a full disk, none of them is left.
Millimetres are in the model's `data.image_frame`: "header" is the file's physical space, "zero_origin" the
image with origin 0 and identity direction (mm from the first voxel along the index axes), as its training
landmarks.

--format: the CSV (and its JSON) are always written; `csv` gives the CSV a header row naming the landmarks
(`id,<name>_x,<name>_y,...`, `landmark_<k>` without names); `slicer` also writes `<output stem>/<id>.mrk.json`
(3D Slicer markups, LPS millimetres in the image file's physical space, whatever the model's units and image
frame; absent landmarks as undefined control points); `coco` (2D) also writes `<output stem>.coco.json`
(COCO keypoints, x, y as continuous pixel indices, unchanged; absent landmarks with visibility 0).

--model_dir RUN_A,RUN_B,...: an ensemble. The models must have equal `data` configurations (checked; the
error names the differing keys); their heatmaps are averaged before decoding; the JSON's `sigma` is the mean of
the models' learned sigmas. Confidence scale (confidence.json) and calibration (calibration.json) belong to
single models and are not used: no error radii, every landmark reported present.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from absl import app, flags, logging

from scn_tf import calibration, confidence
from scn_tf.cli.common import command, import_backend_quietly
from scn_tf.configs import NETWORK_NAMES, ExperimentConfig
from scn_tf.data.formats import coco_document, write_slicer_json
from scn_tf.data.ids import unique_ids
from scn_tf.data.io import (
    PIXEL_TYPE_POLICIES,
    DataError,
    file_physical_points,
    strip_image_suffix,
    write_landmarks_csv,
)
from scn_tf.evaluation import coordinate_units
from scn_tf.files import OutputError, StagedOutputs, inside, write_json_atomic
from scn_tf.model_dir import (
    PIXEL_TYPES_FILE,
    ModelDirError,
    check_same_data,
    load_model_dir,
    load_pixel_types,
    merged_pixel_types,
    read_model_config,
)
from scn_tf.progress import progress_bar
from scn_tf.visualization import save_overlay


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "model_dir",
        None,
        "A training run's output folder; several, comma-separated, predict as an ensemble (mean heatmaps).",
        required=True,
        flag_values=values,
    )
    flags.DEFINE_string("output", None, "Predictions CSV to write.", required=True, flag_values=values)
    flags.DEFINE_string("overlay_dir", None, "Write a PNG overlay per image here.", flag_values=values)
    flags.DEFINE_enum("checkpoint", "last", ["last", "best"], "Which weights of the run.", flag_values=values)
    flags.DEFINE_enum(
        "mirror",
        "off",
        ["off", "auto"],
        "2D: 'auto' also reads each image mirrored left-right "
        "and keeps the more confident reading (reported per image).",
        flag_values=values,
    )
    flags.DEFINE_string(
        "save_heatmaps",
        None,
        "Write each image's heatmaps here as <id>.mha on the input image's grid, one float32 component per landmark.",
        flag_values=values,
    )
    flags.DEFINE_bool(
        "skip_bad",
        False,
        "Predict the usable images and list the unusable ones, instead of stopping "
        "with nothing written at the first bad input.",
        flag_values=values,
    )
    flags.DEFINE_enum(
        "pixel_type_policy",
        None,
        list(PIXEL_TYPE_POLICIES),
        "An image whose pixel type the training images did not have: 'refuse' it or 'rescale' its values onto "
        "the training type's range (default: the model's data.pixel_type_policy).",
        flag_values=values,
    )
    flags.DEFINE_float(
        "coverage",
        calibration.DEFAULT_COVERAGE,
        "With a calibrated model (scn-calibrate): the probability that a landmark lies within its error_radius.",
        flag_values=values,
    )
    flags.DEFINE_integer(
        "tta",
        0,
        "Test-time augmentation: average the heatmaps of this many seeded whole-pixel shifts of the network grid "
        "(up to 3 pixels) with the image's own (0: off).",
        flag_values=values,
    )
    flags.DEFINE_enum(
        "format",
        None,
        list(OUTPUT_FORMATS),
        "Besides the headerless CSV: 'csv' writes the CSV with a header row, 'slicer' also <output stem>/<id>.mrk.json "
        "(LPS mm), 'coco' (2D) also <output stem>.coco.json (pixel indices).",
        flag_values=values,
    )
    flags.DEFINE_bool("overwrite", False, "Replace existing output files.", flag_values=values)


OUTPUT_FORMATS = ("csv", "slicer", "coco")


def format_outputs(output: Path, output_format: str | None, image_ids) -> list[Path]:
    """The files --format adds to the CSV and its JSON."""
    if output_format == "slicer":
        return [inside(output.with_suffix(""), f"{image_id}.mrk.json") for image_id in image_ids]
    if output_format == "coco":
        return [output.with_suffix(".coco.json")]
    return []


MODEL_FILE_PATTERNS = (
    "config.json",
    "preprocessing.json",
    PIXEL_TYPES_FILE,
    "*.weights.h5",
    "*sigmas.json",
    "confidence*.json",
    calibration.CALIBRATION_FILE,
)


def model_files(model_dir: str) -> list[Path]:
    """The files of a model folder that prediction reads (never an output)."""
    return [path for pattern in MODEL_FILE_PATTERNS for path in Path(model_dir).glob(pattern)]


def model_dirs_of(values: flags.FlagValues) -> list[str]:
    """The model folders of --model_dir (comma-separated)."""
    return [d.strip() for d in values.model_dir.split(",") if d.strip()]


def load_models(model_dirs: list[str], checkpoint: str):
    """(config, model or list of models, sigmas (the mean over models), quantiles, pixel types) of one model
    folder or of an ensemble; a ModelDirError where the ensemble's data configurations or histogram references
    differ."""
    loaded = [load_model_dir(model_dir, checkpoint) for model_dir in model_dirs]
    if len(loaded) == 1:
        config, model, sigmas, quantiles = loaded[0]
        return config, model, sigmas, quantiles, load_pixel_types(model_dirs[0])
    config = loaded[0][0]
    quantiles = loaded[0][3]
    for model_dir, entry in zip(model_dirs[1:], loaded[1:], strict=True):
        if quantiles is not None and not np.allclose(entry[3], quantiles):
            raise ModelDirError(
                f"{model_dir}: its histogram reference quantiles differ from {model_dirs[0]}'s; an ensemble "
                "needs models matched to the same reference"
            )
    sigma_list = [entry[2] for entry in loaded]
    sigmas = None if any(s is None for s in sigma_list) else np.mean(sigma_list, axis=0)
    pixel_types = merged_pixel_types([load_pixel_types(model_dir) for model_dir in model_dirs])
    return config, [entry[1] for entry in loaded], sigmas, quantiles, pixel_types


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    paths = [Path(p) for p in arguments]
    if not paths:
        raise app.UsageError("give one or more image files")
    missing = [str(p) for p in paths if not p.exists()]
    if missing and not values.skip_bad:
        logging.error("image file(s) do not exist: %s", ", ".join(missing))
        return 1
    model_dirs = model_dirs_of(values)
    try:
        calibration.check_coverage(values.coverage)
        if not model_dirs:
            raise ModelDirError("--model_dir names no model folder")
        model_configs = [read_model_config(model_dir) for model_dir in model_dirs]
        check_same_data(model_dirs, model_configs)
    except (ModelDirError, ValueError) as error:
        logging.error("%s", error)
        return 1
    if values.format == "slicer" and not Path(values.output).suffix:
        logging.error("--format slicer writes <output stem>/<id>.mrk.json: give --output a suffix (.csv)")
        return 1
    if values.format == "coco" and model_configs[0].data.ndim != 2:
        logging.error("--format coco is for 2D landmarks; %s is %dD", values.model_dir, model_configs[0].data.ndim)
        return 1
    import_backend_quietly(model_configs[0])
    output = Path(values.output)
    staged = StagedOutputs(
        values.overwrite, inputs=paths + [file for model_dir in model_dirs for file in model_files(model_dir)]
    )
    try:
        staged.claim(output)
        staged.claim(output.with_suffix(".json"))
        config, model, sigmas, quantiles, pixel_types = load_models(model_dirs, values.checkpoint)
    except (ModelDirError, OutputError, ValueError) as error:
        logging.error("%s", error)
        return 1
    data = config.data
    if values.mirror == "auto" and data.ndim != 2:
        logging.error("--mirror auto is for 2D models; %s is %dD", values.model_dir, data.ndim)
        return 1
    from scn_tf.inference import read_model_input, tta_shifts

    try:
        tta_shifts(values.tta, data.ndim)
    except ValueError as error:
        logging.error("--tta: %s", error)
        return 1

    def read(path: Path):
        return read_model_input(path, config, pixel_types, values.pixel_type_policy)

    inputs, bad = {}, []
    for image_id, path in zip(unique_ids(paths), paths, strict=True):  # every input checked before anything is written
        try:
            read(path)
            inputs[image_id] = path
        except DataError as error:
            bad.append(str(path))
            logging.error("%s", error)
    if bad and not values.skip_bad:
        logging.error(
            "%d of %d input(s) cannot be used; nothing written (--skip_bad predicts the others)", len(bad), len(paths)
        )
        return 1
    if bad:
        logging.warning("skipped %d bad input(s): %s", len(bad), ", ".join(bad))
    if not inputs:
        logging.error("no usable input image")
        return 1
    try:
        for image_id in inputs:
            if values.save_heatmaps:
                staged.claim(inside(values.save_heatmaps, f"{image_id}.mha"))
            if values.overlay_dir:
                staged.claim(inside(values.overlay_dir, f"{image_id}.png"))
        for path in format_outputs(output, values.format, inputs):
            staged.claim(path)
    except OutputError as error:
        logging.error("%s", error)
        return 1
    with staged:
        predict_all(values, config, model, sigmas, quantiles, read, inputs, bad, staged)
    logging.info("wrote %s (%d images)", output, len(inputs))
    return 0


@contextlib.contextmanager
def warnings_said_before():
    """scn_tf's warnings and notes off: reading an input the second time repeats what the check said."""
    logger = std_logging.getLogger("scn_tf")
    level = logger.level
    logger.setLevel(std_logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def predict_all(
    values, config: ExperimentConfig, model, sigmas, quantiles, read, inputs: dict, bad: list, staged: StagedOutputs
) -> None:
    """Predicts every input, read by `read` as the check before it read them, and writes the outputs that
    `staged` checked, under its staged names."""
    from scn_tf.inference import Predictor, source_frame_heatmaps

    data, output = config.data, Path(values.output)
    model_dirs = model_dirs_of(values)
    ensemble = len(model_dirs) > 1
    reference = None if ensemble else confidence.load_reference(model_dirs[0], values.checkpoint)
    calibrated = None if ensemble else calibration.load_calibration(model_dirs[0], values.checkpoint)
    if ensemble:
        logging.info(
            "ensemble of %d models: heatmaps averaged; no confidence scale and no calibration (single models' own)",
            len(model_dirs),
        )
    elif calibrated is None:
        logging.info("%s has no calibration: no error radii, every landmark reported present", model_dirs[0])
    predictor = Predictor(model, data, sigmas, quantiles, confidence_reference=reference, tta=values.tta)
    rows, details, exported = {}, {}, {}
    progress = progress_bar(len(inputs), "image")
    for image_id, path in inputs.items():
        with warnings_said_before():
            image = read(path)
        prediction = predictor.predict_image(image, image_id, values.mirror, keep_heatmaps=bool(values.save_heatmaps))
        coordinates = prediction.in_units(data.landmark_units)
        uncertainty = calibration_entries(calibrated, prediction.confidence, values.coverage)
        if uncertainty["present"] is not None:
            coordinates = np.where(np.array(uncertainty["present"])[:, None], coordinates, np.nan)
        rows[image_id] = coordinates
        if values.format in ("slicer", "coco"):
            indices = np.where(np.isfinite(coordinates), prediction.indices, np.nan)
            exported[image_id] = (path, image.GetSize(), indices, file_physical_points(path, image, indices))
        details[image_id] = {
            "file": str(path),
            **uncertainty,
            **confidence.describe(prediction.confidence, reference),
            "mirrored": prediction.mirrored,
            "mirror_scores": prediction.mirror_scores,
            **sigma_entries(prediction, data.landmark_units),
        }
        if prediction.mirror_scores:
            logging.info(
                "%s: kept the %s reading (scores %s)",
                image_id,
                "mirrored" if prediction.mirrored else "original",
                prediction.mirror_scores,
            )
        if details[image_id]["low_confidence"]:
            logging.warning(
                "%s: confidence far below this model's usual (median landmark peak at %.0f%% of the "
                "training images'): check orientation, modality and field of view%s",
                image_id,
                100 * details[image_id]["relative_confidence"],
                "" if data.ndim != 2 or values.mirror == "auto" else ", or try --mirror auto",
            )
        if values.save_heatmaps:
            heatmaps = source_frame_heatmaps(prediction, image, data.image_frame)
            sitk.WriteImage(heatmaps, str(staged.path(inside(values.save_heatmaps, f"{image_id}.mha"))))
        if values.overlay_dir:
            save_overlay(
                staged.path(inside(values.overlay_dir, f"{image_id}.png")),
                sitk.GetArrayFromImage(image),
                image.GetSpacing(),
                predicted=np.where(np.isfinite(coordinates), prediction.indices, np.nan),
                names=data.landmark_names,
                title=f"{image_id}: predicted landmarks",
                radii=overlay_radii(uncertainty["error_radius"], data.landmark_units, image.GetSpacing()),
                radius_label=radius_label(calibrated, values.coverage),
            )
        progress.add(1)
    summary = {
        "landmark_units": data.landmark_units,
        "units": coordinate_units(data.landmark_units),
        "image_frame": data.image_frame,
        "num_landmarks": data.num_landmarks,
        "ndim": data.ndim,
        "method": NETWORK_NAMES[config.network.network],
        "landmark_names": data.landmark_names,
        "confidence_meaning": confidence.MEANING if reference else confidence.UNAVAILABLE,
        "calibrated": calibrated is not None,
        "coverage": values.coverage if calibrated is not None else None,
        "calibration_meaning": calibration_meaning(calibrated, values.coverage),
        "tta": values.tta,
        "images": details,
        "skipped": bad,
    }
    if ensemble:
        summary.update(ensemble_entries(model_dirs))
    write_json_atomic(staged.path(output.with_suffix(".json")), summary)
    names = data.landmark_names or [f"landmark_{k}" for k in range(data.num_landmarks)]
    write_landmarks_csv(staged.path(output), rows, header=names if values.format == "csv" else None)
    write_format(values.format, output, staged, names, exported)


def ensemble_entries(model_dirs: list[str]) -> dict:
    """What an ensemble's JSON says about its members, its sigma, confidence and calibration."""
    methods = [NETWORK_NAMES[read_model_config(model_dir).network.network] for model_dir in model_dirs]
    return {
        "method": f"ensemble of {len(model_dirs)} models ({', '.join(methods)})",
        "models": [str(model_dir) for model_dir in model_dirs],
        "sigma_meaning": f"sigma: the mean of the {len(model_dirs)} models' learned sigmas",
        "confidence_meaning": (
            "confidence: the peak of the models' mean heatmap; the training images' scale (confidence.json) "
            "belongs to single models and does not apply to an ensemble"
        ),
        "calibration_meaning": (
            "calibration (calibration.json) belongs to single models and does not apply to an ensemble: no error "
            "radii, and every landmark is reported present"
        ),
    }


def write_format(output_format: str | None, output: Path, staged: StagedOutputs, names: list, exported: dict) -> None:
    """The Slicer or COCO files of --format: {id: (file, image size, pixel indices, LPS points)}, NaN where absent."""
    if output_format == "slicer":
        for image_id, (_, _, _, points) in exported.items():
            write_slicer_json(staged.path(inside(output.with_suffix(""), f"{image_id}.mrk.json")), names, points)
    elif output_format == "coco":
        entries = [
            (image_id + Path(path).name[len(strip_image_suffix(path)) :], size, indices)
            for image_id, (path, size, indices, _) in exported.items()
        ]  # file names of the CSV's ids (folders prefixed where names repeat), so that they read back as them
        write_json_atomic(staged.path(output.with_suffix(".coco.json")), coco_document(names, entries))


def calibration_entries(calibrated, peaks, coverage: float) -> dict:
    """Per image: `error_radius` (model units) and `present`, one value per landmark; None without calibration."""
    if calibrated is None:
        return {"error_radius": None, "present": None}
    return {
        "error_radius": [float(v) for v in calibrated.error_radius(peaks, coverage)],
        "present": [bool(v) for v in calibrated.present(peaks)],
    }


def calibration_meaning(calibrated, coverage: float) -> str:
    if calibrated is None:
        return (
            f"the model folder has no {calibration.CALIBRATION_FILE} for these weights (scn-calibrate writes it): "
            "no error radii, and every landmark is reported present"
        )
    return (
        f"error_radius: the landmark lies within this distance ({calibrated.units}) of its prediction with "
        f"probability {coverage} (split-conformal on {len(calibrated.image_ids)} calibration images); present: "
        "the heatmap peak reaches the calibrated threshold (absent landmarks have NaN coordinates in the CSV)"
    )


def overlay_radii(radii, landmark_units: str, spacing) -> np.ndarray | None:
    """Error radii in pixels of the image's x axis, for the overlay."""
    if radii is None:
        return None
    values = np.asarray(radii, np.float64)
    return values if landmark_units == "pixel" else values / float(spacing[0])


def radius_label(calibrated, coverage: float) -> str:
    return "" if calibrated is None else f"{100 * coverage:g}% error radius (calibrated)"


def sigma_entries(prediction, landmark_units: str) -> dict:
    """The learned sigmas of a prediction as the JSON gives them: `sigma` in the landmarks' units, and for a
    model in mm the same values as `sigma_mm` (the key earlier versions wrote)."""
    sigma = prediction.sigma_in(landmark_units)
    entries = {"sigma": None if sigma is None else sigma.tolist()}
    if landmark_units == "mm":
        entries["sigma_mm"] = entries["sigma"]
    return entries


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
