"""scn-evaluate: the paper's metrics for a predictions CSV against annotations.

  scn-evaluate --predictions P.csv --ground_truth G.csv --output_dir DIR [--ids LIST_FILE]
      [--radii 2,4,10] [--normalization wrist:1,5,50] [--model_dir RUN | --method NAME --units px]

Writes metrics.json, per_landmark.csv, summary.txt (the paper's table layout) and cumulative_ipe.png, all
together at the end and only after every input (--compare's files included) was read; existing reports are
replaced only with --overwrite. The
method name, landmark names and units come from the flags, else from --model_dir's config.json, else from
the JSON that scn-predict writes beside its CSV: px for landmarks in pixels, mm otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from scn_tf.cli.common import command
from scn_tf.configs import NETWORK_NAMES, load_config
from scn_tf.data.io import DataError, read_id_list, read_landmarks_csv
from scn_tf.evaluation import Normalization, coordinate_units, error_units, evaluate
from scn_tf.files import OutputError, StagedOutputs
from scn_tf.listing import shortened
from scn_tf.reports import REPORT_FILES, plot_cumulative_ipe, write_reports


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string("predictions", None, "Predictions CSV (id,x1,y1[,z1],...).", required=True, flag_values=values)
    flags.DEFINE_string("ground_truth", None, "Annotation CSV in the same units.", required=True, flag_values=values)
    flags.DEFINE_string("output_dir", None, "Where to write the reports.", required=True, flag_values=values)
    flags.DEFINE_string(
        "ids", None, "File listing the ids to evaluate (default: all, which must match).", flag_values=values
    )
    flags.DEFINE_list("radii", ["2", "4", "10"], "Outlier radii, in the units of the errors.", flag_values=values)
    flags.DEFINE_string(
        "normalization", None, "e.g. wrist:1,5,50 (0-based landmark indices, distance in mm).", flag_values=values
    )
    flags.DEFINE_integer(
        "ndim",
        None,
        "Coordinates per landmark; read from the predictions' JSON or the column count where not given.",
        flag_values=values,
    )
    flags.DEFINE_string(
        "model_dir",
        None,
        "The model folder that predicted: method, landmark names and units from its config.json.",
        flag_values=values,
    )
    flags.DEFINE_string(
        "method",
        None,
        "Method name in the table and the plot (default: the model's network, e.g. SCN).",
        flag_values=values,
    )
    flags.DEFINE_enum(
        "units",
        None,
        ["mm", "px"],
        "Units of the errors (default: px for landmarks in pixels, mm otherwise or with --normalization).",
        flag_values=values,
    )
    flags.DEFINE_list("compare", [], "Other metrics.json files to draw in the cumulative IPE plot.", flag_values=values)
    flags.DEFINE_bool(
        "overwrite", False, "Replace the reports of an earlier evaluation in --output_dir.", flag_values=values
    )


@dataclasses.dataclass
class Labels:
    """What the reports call the method, the landmarks and the error units."""

    method: str = "SCN"
    landmark_names: list[str] | None = None
    landmark_units: str = "mm"


def labels_of(predictions: Path, model_dir: str | None) -> Labels:
    """Labels from the model folder's config.json, else from scn-predict's JSON beside the predictions."""
    if model_dir:
        config = load_config(Path(model_dir) / "config.json")
        return Labels(NETWORK_NAMES[config.network.network], config.data.landmark_names, config.data.landmark_units)
    sidecar = predictions.with_suffix(".json")
    if not sidecar.exists():
        return Labels()
    details = json.loads(sidecar.read_text())
    return Labels(details.get("method", "SCN"), details.get("landmark_names"), details.get("landmark_units", "mm"))


def column_layout(path: Path, ndim: int | None) -> tuple[int, int]:
    """(num_landmarks, ndim) of a landmark CSV, from --ndim, scn-predict's JSON sidecar or the columns."""
    sidecar = path.with_suffix(".json")
    if ndim is None and sidecar.exists():
        ndim = json.loads(sidecar.read_text()).get("ndim")
    first = next((line for line in path.read_text().splitlines() if line.strip()), None)
    if first is None:
        raise DataError(f"{path}: file is empty")
    values = len(first.split(",")) - 1
    if ndim is None:
        fits = [d for d in (2, 3) if values % d == 0]
        if len(fits) != 1:
            raise DataError(f"{path}: {values} coordinate columns fit 2D and 3D alike; pass --ndim")
        ndim = fits[0]
    if values % ndim:
        raise DataError(f"{path}, row 1: {values} coordinate columns are not a multiple of {ndim}")
    return values // ndim, ndim


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    predictions_path, truth_path = Path(values.predictions), Path(values.ground_truth)
    inputs = [predictions_path, truth_path, predictions_path.with_suffix(".json"), *map(Path, values.compare)]
    staged = StagedOutputs(values.overwrite, inputs + ([Path(values.ids)] if values.ids else []))
    try:
        staged.claim_all(values.output_dir, REPORT_FILES)
        for path in (predictions_path, truth_path):
            if not path.exists():
                raise DataError(f"{path}: file does not exist")
        labels = labels_of(predictions_path, values.model_dir)
        num_landmarks, ndim = column_layout(predictions_path, values.ndim)
        predictions = read_landmarks_csv(predictions_path, num_landmarks, ndim)
        truth = read_landmarks_csv(truth_path, num_landmarks, ndim)
        if values.ids:
            ids = read_id_list(values.ids)
            for name, table, path in (
                ("predictions", predictions, predictions_path),
                ("ground truth", truth, truth_path),
            ):
                absent = [i for i in ids if i not in table]
                if absent:
                    raise DataError(f"{path}: {name} lack id(s) {shortened(absent)} listed in {values.ids}")
        else:
            only_predicted = sorted(set(predictions) - set(truth))
            only_truth = sorted(set(truth) - set(predictions))
            if only_predicted or only_truth:
                raise DataError(
                    f"ids differ: only in {predictions_path}: {shortened(only_predicted) or 'none'}; only in "
                    f"{truth_path}: {shortened(only_truth) or 'none'} (pass --ids to evaluate a subset)"
                )
            ids = list(predictions)
        normalization = Normalization.parse(values.normalization)
        metrics = evaluate(
            ids, np.stack([predictions[i] for i in ids]), np.stack([truth[i] for i in ids]), values.radii, normalization
        )
        method = values.method or labels.method
        curves = {method: metrics["ipe"].values(), **compared_curves(values.compare)}
    except (DataError, OutputError, ValueError, OSError) as error:
        logging.error("%s", error)
        return 1
    names = labels.landmark_names if labels.landmark_names and len(labels.landmark_names) == num_landmarks else None
    units = values.units or error_units(labels.landmark_units, values.normalization)
    data_units = coordinate_units(labels.landmark_units) if values.normalization else units  # the ID radius'
    with staged:
        folder = staged.folder(values.output_dir)
        write_reports(folder, metrics, method, names, units=units, data_units=data_units)
        if values.compare:
            plot_cumulative_ipe(folder / "cumulative_ipe.png", curves, units)
        summary = (folder / "summary.txt").read_text()
    print(summary, end="")
    return 0


def compared_curves(paths: list[str]) -> dict[str, list[float]]:
    """{method: image point errors} of other evaluations' metrics.json, each named by its method or folder."""
    curves = {}
    for path in paths:
        try:
            other = json.loads(Path(path).read_text())
            curves[other.get("method") or Path(path).parent.name or path] = list(other["ipe"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise DataError(
                f"{path} (--compare): not a readable metrics.json ({type(error).__name__}: {error})"
            ) from None
    return curves


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
