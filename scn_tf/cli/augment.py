"""scn-augment: write what the network sees, augmented samples with their landmarks, for inspection.

scn-augment --preset skull2d --data_dir ../shared/data/isbi2015_ceph --ids 001,002 --samples 3
    --seed 0 --output_dir augmented
scn-augment --preset spine3d --print_config > spine3d.json

Every output is checked before the first is written (existing files are replaced only with --overwrite, never
an input), and they appear together at the end: after an error or an interruption none is left.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from absl import app, flags, logging

from scn_tf.cli.common import command, import_backend_quietly, resolve_config
from scn_tf.configs import PRESETS
from scn_tf.data.ids import validate_ids
from scn_tf.data.io import DataError, format_landmark_row
from scn_tf.files import OutputError, StagedOutputs, inside, write_text_atomic
from scn_tf.visualization import save_overlay


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_enum(
        "preset",
        None,
        sorted(PRESETS),
        "Dataset preset (cpu2d, cpu3d: CPU-sized starting points for own data).",
        flag_values=values,
    )
    flags.DEFINE_string("config", None, "JSON configuration; overrides the preset's keys.", flag_values=values)
    flags.DEFINE_string(
        "data_dir", None, "Dataset folder; the configuration's paths are relative to it.", flag_values=values
    )
    flags.DEFINE_list("ids", None, "Comma-separated image ids.", flag_values=values)
    flags.DEFINE_integer("samples", 4, "Augmented samples per id.", flag_values=values)
    flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=values)
    flags.DEFINE_string("output_dir", None, "Where to write <id>_<k>.nii.gz, .csv and .png.", flag_values=values)
    flags.DEFINE_bool("overwrite", False, "Replace existing output files.", flag_values=values)
    flags.DEFINE_bool(
        "print_config", False, "Print the resolved configuration as JSON on stdout and exit.", flag_values=values
    )


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    try:
        config = resolve_config(values.preset, values.config)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    if values.print_config:
        sys.stdout.write(config.to_json() + "\n")
        return 0
    for name in ("data_dir", "ids", "output_dir"):
        if not values[name].value:
            raise app.UsageError(f"--{name} is required")
    output_dir = Path(values.output_dir)
    data_dir = Path(values.data_dir)
    try:  # the inputs named on the command line, before the backend takes seconds to load
        if not data_dir.is_dir():
            raise DataError(f"--data_dir {data_dir}: folder does not exist")
        validate_ids(values.ids, "--ids")
    except DataError as error:
        logging.error("%s", error)
        return 1
    import_backend_quietly(config)
    from scn_tf.data.pipeline import LandmarkSource, make_sample

    inputs = [data_dir / config.data.landmarks_csv, *(data_dir / config.data.image_dir).glob("*")]
    staged = StagedOutputs(values.overwrite, inputs)
    try:
        names = [f"{image_id}_{k}" for image_id in values.ids for k in range(values.samples)]
        for name in names:
            staged.claim_all(output_dir, [f"{name}{suffix}" for suffix in SAMPLE_SUFFIXES])
        source = LandmarkSource(config.data, values.data_dir, values.ids, verbose=False)
    except (DataError, OutputError) as error:
        logging.error("%s", error)
        return 1
    with staged:
        for id_index, image_id in enumerate(source.ids):
            for k in range(values.samples):
                rng = np.random.default_rng([values.seed, id_index, k])
                sample = make_sample(source, image_id, config.augmentation, rng)
                write_sample(staged.folder(output_dir), f"{image_id}_{k}", sample, config.data.landmark_names)
    logging.info("wrote %d samples to %s", len(names), output_dir)
    return 0


SAMPLE_SUFFIXES = (".nii.gz", ".csv", ".png")


def write_sample(output_dir: Path, name: str, sample, landmark_names=None) -> None:
    """The network input with its network-space geometry, its landmarks in that space (CSV) and a PNG."""
    geometry = sample.transform.geometry
    image = sitk.GetImageFromArray(sample.image[..., 0])
    image.SetSpacing([float(s) for s in geometry.spacing])
    sitk.WriteImage(image, str(inside(output_dir, f"{name}.nii.gz")))
    physical = sample.coords * geometry.spacing
    write_text_atomic(inside(output_dir, f"{name}.csv"), format_landmark_row(name.rsplit("_", 1)[0], physical) + "\n")
    save_overlay(
        inside(output_dir, f"{name}.png"),
        sample.image[..., 0],
        geometry.spacing,
        landmarks=sample.coords,
        names=landmark_names,
        title=name,
    )


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
