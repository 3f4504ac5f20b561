"""scn-evaluate: the paper's metrics for a predictions CSV against annotations.

  scn-evaluate --predictions P.csv --ground_truth G.csv --output_dir DIR [--ids LIST_FILE] \
      [--radii 2,4,10] [--normalization wrist:1,5,50]

Writes metrics.json, per_landmark.csv, summary.txt (the paper's table layout) and cumulative_ipe.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from scn_tf.data.io import DataError, read_id_list, read_landmarks_csv
from scn_tf.evaluation import Normalization, evaluate
from scn_tf.files import OutputError, check_writable_dir
from scn_tf.reports import plot_cumulative_ipe, write_reports

FLAGS = flags.FLAGS
flags.DEFINE_string("predictions", None, "Predictions CSV (id,x1,y1[,z1],...).", required=True)
flags.DEFINE_string("ground_truth", None, "Annotation CSV in the same units.", required=True)
flags.DEFINE_string("output_dir", None, "Where to write the reports.", required=True)
flags.DEFINE_string("ids", None, "File listing the ids to evaluate (default: all, which must match).")
flags.DEFINE_list("radii", ["2", "4", "10"], "Outlier radii, in the units of the errors.")
flags.DEFINE_string("normalization", None, "e.g. wrist:1,5,50 (0-based landmark indices, distance).")
flags.DEFINE_integer("ndim", None, "Coordinates per landmark; read from the predictions' JSON or the column "
                     "count where not given.")
flags.DEFINE_string("name", "SCN", "Method name in the table and the plot.")
flags.DEFINE_list("compare", [], "Other metrics.json files to draw in the cumulative IPE plot.")
flags.DEFINE_bool("overwrite", False, "Replace the reports of an earlier evaluation in --output_dir.")

REPORT_FILES = ("metrics.json", "per_landmark.csv", "summary.txt", "cumulative_ipe.png")


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


def main(argv):
    del argv
    predictions_path, truth_path = Path(FLAGS.predictions), Path(FLAGS.ground_truth)
    try:
        check_writable_dir(FLAGS.output_dir)
        existing = [name for name in REPORT_FILES if (Path(FLAGS.output_dir) / name).exists()]
        if existing and not FLAGS.overwrite:
            raise OutputError(f"{FLAGS.output_dir}: holds {', '.join(existing)} already; pass --overwrite to "
                              "replace them")
        for path in (predictions_path, truth_path):
            if not path.exists():
                raise DataError(f"{path}: file does not exist")
        num_landmarks, ndim = column_layout(predictions_path, FLAGS.ndim)
        predictions = read_landmarks_csv(predictions_path, num_landmarks, ndim)
        truth = read_landmarks_csv(truth_path, num_landmarks, ndim)
        if FLAGS.ids:
            ids = read_id_list(FLAGS.ids)
            for name, table, path in (("predictions", predictions, predictions_path),
                                      ("ground truth", truth, truth_path)):
                absent = [i for i in ids if i not in table]
                if absent:
                    raise DataError(f"{path}: {name} lack id(s) {', '.join(absent[:10])} listed in {FLAGS.ids}")
        else:
            only_predicted = sorted(set(predictions) - set(truth))
            only_truth = sorted(set(truth) - set(predictions))
            if only_predicted or only_truth:
                raise DataError(f"ids differ: only in {predictions_path}: {only_predicted[:10]}; only in "
                                f"{truth_path}: {only_truth[:10]} (pass --ids to evaluate a subset)")
            ids = list(predictions)
        normalization = Normalization.parse(FLAGS.normalization)
        metrics = evaluate(ids, np.stack([predictions[i] for i in ids]), np.stack([truth[i] for i in ids]),
                           FLAGS.radii, normalization)
    except (DataError, OutputError, ValueError) as error:
        logging.error("%s", error)
        return 1
    write_reports(FLAGS.output_dir, metrics, FLAGS.name)
    if FLAGS.compare:
        curves = {FLAGS.name: metrics["ipe"].values()}
        for path in FLAGS.compare:
            other = json.loads(Path(path).read_text())
            curves[Path(path).parent.name or path] = other["ipe"].values()
        plot_cumulative_ipe(Path(FLAGS.output_dir) / "cumulative_ipe.png", curves)
    print((Path(FLAGS.output_dir) / "summary.txt").read_text(), end="")
    return 0


def run():
    app.run(main)


if __name__ == "__main__":
    run()
