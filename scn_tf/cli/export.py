"""scn-export: a trained model as files that run without scn_tf.

  scn-export --model_dir runs/skull2d --output_dir exported [--format onnx|saved_model] [--checkpoint best]

Writes the network with its decoding (scn_tf.export.wrapper_model), exported by Keras' `model.export`, as
OUT/model.onnx (default) or the TensorFlow SavedModel OUT/saved_model/, and OUT/preprocessing.json: how an
image file becomes the network input and the outputs become landmarks in the image's coordinates
(docs/export.md). `python examples/onnx_predict.py OUT IMAGE...` predicts with numpy, SimpleITK and
onnxruntime only. An existing output folder is written into only with --overwrite; the outputs appear
together at the end, and after an error none of them is left.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import flags, logging

from scn_tf import calibration
from scn_tf.cli.common import command, import_backend_quietly
from scn_tf.files import OutputError, StagedOutputs, inside, write_json_atomic
from scn_tf.model_dir import ModelDirError, load_model_dir, read_model_config


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string("model_dir", None, "A training run's output folder.", required=True, flag_values=values)
    flags.DEFINE_string(
        "output_dir", None, "Folder to write the exported model into.", required=True, flag_values=values
    )
    flags.DEFINE_enum("format", "onnx", ["onnx", "saved_model"], "The exported network's format.", flag_values=values)
    flags.DEFINE_enum("checkpoint", "last", ["last", "best"], "Which weights of the run.", flag_values=values)
    flags.DEFINE_bool("overwrite", False, "Write into an existing output folder.", flag_values=values)


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        logging.error("scn-export takes no positional arguments, got %s", " ".join(arguments))
        return 1
    output_dir = Path(values.output_dir)
    try:
        config = read_model_config(values.model_dir)
        weights = Path(values.model_dir) / f"{values.checkpoint}.weights.h5"
        if not weights.exists():
            raise ModelDirError(f"{values.model_dir}: no {weights.name}; nothing to export")
        if output_dir.exists() and not values.overwrite:
            raise OutputError(f"{output_dir}: exists; pass --overwrite to write into it")
    except (ModelDirError, OutputError) as error:
        logging.error("%s", error)
        return 1
    import_backend_quietly(config)
    from scn_tf import export

    staged = StagedOutputs(values.overwrite)
    try:
        staged.claim(inside(output_dir, "preprocessing.json"))
        config, model, _, quantiles = load_model_dir(values.model_dir, values.checkpoint)
    except (ModelDirError, OutputError, ValueError) as error:
        logging.error("%s", error)
        return 1
    calibrated = calibration.load_calibration(values.model_dir, values.checkpoint)
    target = inside(output_dir, export.FORMATS[values.format])
    with staged:
        export.export_model(export.wrapper_model(model, config), staged.folder(output_dir) / target.name, values.format)
        for name in export.written_files(staged.folder(output_dir)):
            staged.claim(inside(output_dir, name))
        write_json_atomic(
            staged.path(output_dir / "preprocessing.json"),
            export.preprocessing(config, values.format, quantiles, calibrated, values.checkpoint),
        )
    logging.info("wrote %s and %s", target, output_dir / "preprocessing.json")
    return 0


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
