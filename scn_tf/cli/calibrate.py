"""scn-calibrate: calibrated error radii and landmark presence for a trained model.

  scn-calibrate --model_dir runs/my --data_dir DATA --ids calib.txt [--checkpoint best]

Predicts the listed images (annotated, never trained on) and writes `calibration.json` into the model folder
(scn_tf.calibration): each landmark's split-conformal error radii, conditioned on the heatmap peak where that
makes them sharper, and the peak threshold below which a landmark is reported absent, chosen on the same
images cropped by `--crop_seed` so that `--crop_outside` landmarks fall outside. scn-predict then writes each
landmark's `error_radius` (at `--coverage`) and `present`. An existing calibration is replaced only with
--overwrite.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from scn_tf import calibration
from scn_tf.cli.common import command, import_backend_quietly
from scn_tf.cli.runner import find_id_list, read_split
from scn_tf.confidence import REFERENCE_FILE
from scn_tf.data import cropping
from scn_tf.data.io import DataError, read_landmarks_csv
from scn_tf.files import OutputError, StagedOutputs
from scn_tf.listing import shortened
from scn_tf.model_dir import ModelDirError, load_model_dir, read_model_config
from scn_tf.progress import progress_bar


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string("model_dir", None, "A training run's output folder.", required=True, flag_values=values)
    flags.DEFINE_string(
        "data_dir",
        None,
        "Dataset folder in the model's layout (images, landmark CSV).",
        required=True,
        flag_values=values,
    )
    flags.DEFINE_string(
        "ids",
        None,
        "File of calibration ids (annotated, not trained on); looked for as given, then in --data_dir.",
        required=True,
        flag_values=values,
    )
    flags.DEFINE_enum("checkpoint", "last", ["last", "best"], "Which weights of the run.", flag_values=values)
    flags.DEFINE_integer("crop_seed", 1, "Seed of the crops that choose the presence threshold.", flag_values=values)
    flags.DEFINE_list(
        "crop_outside",
        None,
        "MIN,MAX landmarks each crop takes out of the image (default: 1 to half of the landmarks).",
        flag_values=values,
    )
    flags.DEFINE_bool("overwrite", False, "Replace the model folder's calibration.json.", flag_values=values)


def parse_outside(text: list[str] | None, num_landmarks: int) -> tuple[int, int]:
    if not text:
        return cropping.default_outside(num_landmarks)
    try:
        low, high = (int(v) for v in text)
    except ValueError:
        raise ValueError(f"--crop_outside must be MIN,MAX (two integers), got {','.join(text)!r}") from None
    if not 1 <= low <= high < num_landmarks:
        raise ValueError(f"--crop_outside {low},{high}: needs 1 <= MIN <= MAX < {num_landmarks} (the landmarks)")
    return low, high


def check_ids(model_dir: Path, data_dir: Path, config, ids: list[str]) -> None:
    """A DataError for calibration ids the model trained on or without an annotated landmark."""
    reference = model_dir / REFERENCE_FILE
    if reference.exists():
        trained = set(json.loads(reference.read_text()).get("image_ids", []))
        overlap = [i for i in ids if i in trained]
        if overlap:
            raise DataError(
                f"{len(overlap)} calibration id(s) are training images of {model_dir} ({shortened(overlap)}): "
                "their errors are too small to calibrate with"
            )
    csv = data_dir / config.data.landmarks_csv
    annotations = read_landmarks_csv(csv, config.data.num_landmarks, config.data.ndim)
    missing = [i for i in ids if i not in annotations]
    if missing:
        raise DataError(f"{csv}: no annotation row for calibration id(s) {shortened(missing)}")
    empty = [i for i in ids if not np.all(np.isfinite(annotations[i]), axis=1).any()]
    if empty:
        raise DataError(f"{csv}: calibration id(s) {shortened(empty)} have no annotated landmark")


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    model_dir, data_dir = Path(values.model_dir), Path(values.data_dir)
    try:
        config = read_model_config(model_dir)
        if not data_dir.is_dir():
            raise DataError(f"--data_dir {data_dir}: folder does not exist")
        ids = read_split(find_id_list(values.ids, values.data_dir))
        if not ids:
            raise DataError(f"{values.ids}: no ids")
        outside = parse_outside(values.crop_outside, config.data.num_landmarks)
        check_ids(model_dir, data_dir, config, ids)
        staged = StagedOutputs(values.overwrite)
        staged.claim(model_dir / calibration.CALIBRATION_FILE)
    except (ModelDirError, DataError, OutputError, ValueError, OSError) as error:
        logging.error("%s", error)
        return 1
    import_backend_quietly(config)
    from scn_tf.data.pipeline import LandmarkSource
    from scn_tf.inference import Predictor

    try:
        config, model, sigmas, quantiles = load_model_dir(model_dir, values.checkpoint)
        source = LandmarkSource(config.data, data_dir, ids, verbose=False)
    except (ModelDirError, DataError, ValueError) as error:
        logging.error("%s", error)
        return 1
    predictor = Predictor(model, config.data, sigmas, quantiles)
    result = calibration.measure(
        predictor,
        source.images,
        source.points,
        source.annotations,
        config.data.landmark_units,
        values.crop_seed,
        outside,
        values.checkpoint,
        progress_bar(len(ids), "image"),
    )
    with staged:
        calibration.write_calibration(staged.folder(model_dir), result)
    summary(result)
    return 0


def summary(result: calibration.Calibration) -> None:
    """Median radius per coverage level and the presence threshold, on stdout."""
    for coverage in calibration.LEVELS:
        radii = [max(r.radii) for r in result.radii(coverage)]
        print(f"coverage {coverage:.2f}: error radius median {np.median(radii):.2f} {result.units} over landmarks")
    if result.present_threshold is None:
        print(f"presence: no threshold ({result.presence.get('reason')}); every landmark is reported present")
    else:
        print(
            f"presence: peak >= {result.present_threshold:.3f} x the landmark's median (balanced accuracy "
            f"{result.presence['balanced_accuracy']:.3f} on {result.presence['absent_count']} cut-off and "
            f"{result.presence['present_count']} kept landmarks)"
        )


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
