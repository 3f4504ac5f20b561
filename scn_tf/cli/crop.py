"""scn-crop: a seeded copy of a data set whose images are cropped so that some landmarks fall outside.

  scn-crop --model_dir runs/my --data_dir DATA --ids test.txt --seed 2 --outside 3,8 --output_dir DATA_cropped

For measuring how well a model says that a landmark is absent (scn-predict's `present`, scn-evaluate's false
absences and presences). Each image is cut on one or two sides (scn_tf.data.cropping, 50-85% of an axis kept),
drawn again until between MIN and MAX annotated landmarks fall outside; the crop depends on the seed and the
id only. Writes, in the model's data layout, the cropped images (same format and pixel type; JPEG at quality
100), the landmark CSV with NaN for the landmarks cut off (coordinates in the cropped image's frame, in the
data's units), and crops.json (each id's index region and cut-off landmarks). --config or --preset instead of
--model_dir give the data layout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from absl import app, flags, logging

from scn_tf.cli.common import command, resolve_config
from scn_tf.cli.runner import find_id_list, read_split
from scn_tf.configs import PRESETS
from scn_tf.data import cropping
from scn_tf.data.io import (
    DataError,
    apply_image_frame,
    physical_to_pixel,
    pixel_to_physical,
    read_image,
    read_landmarks_csv,
    write_landmarks_csv,
)
from scn_tf.files import OutputError, StagedOutputs, inside, write_json_atomic
from scn_tf.listing import shortened
from scn_tf.model_dir import ModelDirError, read_model_config
from scn_tf.progress import progress_bar

JPEG_SUFFIXES = (".jpg", ".jpeg")


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string("model_dir", None, "A model folder whose data configuration to use.", flag_values=values)
    flags.DEFINE_enum("preset", None, sorted(PRESETS), "Or: the data configuration of a preset.", flag_values=values)
    flags.DEFINE_string("config", None, "Or: a JSON configuration (over --preset).", flag_values=values)
    flags.DEFINE_string("data_dir", None, "Dataset folder to crop from.", required=True, flag_values=values)
    flags.DEFINE_string(
        "ids", None, "File of ids to crop; looked for as given, then in --data_dir.", required=True, flag_values=values
    )
    flags.DEFINE_integer("seed", 0, "Seed of the crops.", flag_values=values)
    flags.DEFINE_list("outside", None, "MIN,MAX landmarks each crop takes out (default 1 to half).", flag_values=values)
    flags.DEFINE_string("output_dir", None, "Where the cropped data set goes.", required=True, flag_values=values)
    flags.DEFINE_bool("overwrite", False, "Replace existing files in --output_dir.", flag_values=values)


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    from scn_tf.cli.calibrate import parse_outside

    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    if values.model_dir and (values.preset or values.config):
        raise app.UsageError("give --model_dir, or --preset/--config, not both")
    data_dir, output_dir = Path(values.data_dir), Path(values.output_dir)
    try:
        if values.model_dir:
            config = read_model_config(values.model_dir)
        else:
            config = resolve_config(values.preset, values.config)
        data = config.data
        outside = parse_outside(values.outside, data.num_landmarks)
        ids = read_split(find_id_list(values.ids, values.data_dir))
        csv = data_dir / data.landmarks_csv
        annotations = read_landmarks_csv(csv, data.num_landmarks, data.ndim)
        missing = [i for i in ids if i not in annotations]
        if missing:
            raise DataError(f"{csv}: no annotation row for id(s) {shortened(missing)}")
        if output_dir.resolve() == data_dir.resolve():
            raise OutputError(f"--output_dir {output_dir} is --data_dir: the crops would replace the images")
        staged = StagedOutputs(values.overwrite, inputs=[csv])
        names = {i: inside(output_dir / data.image_dir, f"{i}{data.image_suffix}") for i in ids}
        for path in names.values():
            staged.claim(path)
        staged.claim(output_dir / data.landmarks_csv)
        staged.claim(output_dir / "crops.json")
    except (ModelDirError, DataError, OutputError, ValueError, OSError) as error:
        logging.error("%s", error)
        return 1
    rows, regions = {}, {}
    progress = progress_bar(len(ids), "image")
    try:
        with staged:
            for image_id in ids:
                path = data_dir / data.image_dir / f"{image_id}{data.image_suffix}"
                rows[image_id], regions[image_id] = crop_one(
                    path, image_id, annotations[image_id], data, values.seed, outside, staged.path(names[image_id])
                )
                progress.add(1)
            write_landmarks_csv(staged.path(output_dir / data.landmarks_csv), rows)
            write_json_atomic(
                staged.path(output_dir / "crops.json"),
                {"seed": values.seed, "outside": list(outside), "source": str(data_dir), "images": regions},
            )
    except (DataError, ValueError) as error:
        logging.error("%s", error)
        return 1
    logging.info("wrote %d cropped images and %s to %s", len(ids), data.landmarks_csv, output_dir)
    return 0


def crop_one(
    path: Path, image_id: str, landmarks: np.ndarray, data, seed: int, outside, target: Path
) -> tuple[np.ndarray, dict]:
    """Crops the image file at `path` and writes it to `target` (same pixel type); returns its landmarks in the
    written file's frame and units, and the crop's record."""
    if path.is_dir() or not path.exists():
        raise DataError(f"{path}: not an image file")
    framed = apply_image_frame(read_image(path, data.ndim, data.image_spacing), data.image_frame)
    points = pixel_to_physical(framed, landmarks) if data.landmark_units == "pixel" else landmarks
    try:
        _, kept, region = cropping.crop_out_landmarks(framed, points, cropping.crop_rng(seed, image_id), outside)
    except ValueError as error:
        raise DataError(f"{path}: {error}") from None
    raw = sitk.ReadImage(str(path))
    written = raw[tuple(slice(int(start), int(stop)) for start, stop in region)]
    sitk.WriteImage(written, str(target), True, 100 if path.suffix.lower() in JPEG_SUFFIXES else -1)
    cropped = framed[tuple(slice(int(start), int(stop)) for start, stop in region)]
    indices = physical_to_pixel(cropped, kept)
    if data.landmark_units == "pixel":
        coordinates = indices
    else:
        reread = apply_image_frame(read_image(target, data.ndim, data.image_spacing), data.image_frame)
        coordinates = pixel_to_physical(reread, indices)
    cut = np.flatnonzero(np.all(np.isfinite(landmarks), axis=1) & ~np.all(np.isfinite(kept), axis=1))
    return coordinates, {"region": region.tolist(), "cut_off": cut.tolist()}


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
