"""The paper's Fig. 9 on a cephalogram run: the SCN's factors decoded on their own, as cumulative IPE curves.

  python experiments/skull2d_components.py --run_dir runs/skull2d_cpu/scn/test1 --data_dir ../shared/data/isbi2015_ceph

Decodes, on the test ids, the SCN (the run's own predictions.csv), its local appearance alone, its spatial
configuration alone and its local appearance within --around_mm of the annotation (the paper's LAaroundGT),
with the factors of a landmark flipped where both are negative at the product's peak. Writes
components.md (the paper's table layout), components_ipe.png and heatmap_components.png into --output_dir
(default: the run folder).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

from scn_tf.cli.common import command, import_backend_quietly
from scn_tf.data.io import DataError, read_id_list, read_landmarks_csv
from scn_tf.evaluation import evaluate
from scn_tf.files import write_text_atomic
from scn_tf.model_dir import load_model_dir, read_model_config
from scn_tf.reports import plot_cumulative_ipe, summary_table
from scn_tf.splits import SPLITS_DIR


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "run_dir", None, "An SCN run folder (model, predictions.csv).", required=True, flag_values=values
    )
    flags.DEFINE_string("data_dir", None, "The data folder the run was trained on.", required=True, flag_values=values)
    flags.DEFINE_string("test_ids", str(SPLITS_DIR / "isbi2015_ceph" / "test1.txt"), "Test ids.", flag_values=values)
    flags.DEFINE_string(
        "output_dir", None, "Where the table and plots go (default: the run folder).", flag_values=values
    )
    flags.DEFINE_float(
        "around_mm", 10.0, "Radius of the local appearance around the annotation (mm).", flag_values=values
    )
    flags.DEFINE_integer("workers", 2, "Image-loading workers.", flag_values=values)


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    run_dir = Path(values.run_dir)
    output = Path(values.output_dir or run_dir)
    try:  # the inputs, before the backend takes seconds to load
        config = read_model_config(run_dir)
        data = config.data
        if not Path(values.data_dir).is_dir():
            raise DataError(f"--data_dir {values.data_dir}: folder does not exist")
        test_ids = read_id_list(values.test_ids)
        predictions = read_landmarks_csv(run_dir / "predictions.csv", data.num_landmarks, data.ndim)
    except (DataError, ValueError) as error:
        logging.error("%s", error)
        return 1
    import_backend_quietly(config)
    from scn_tf.components import component_points
    from scn_tf.data.pipeline import LandmarkSource

    _, model, _, _ = load_model_dir(run_dir)
    try:
        source = LandmarkSource(data, values.data_dir, test_ids, values.workers)
    except DataError as error:
        logging.error("%s", error)
        return 1
    truth = np.stack([source.annotations[image_id] for image_id in test_ids])
    points = {"SCN": np.stack([predictions[image_id] for image_id in test_ids])}
    components = component_points(model, source, values.around_mm, output / "heatmap_components.png")
    points.update({f"SCN {name}": value for name, value in components.items()})
    rows, curves, metrics = [], {}, {}
    for name, value in points.items():
        metrics[name] = evaluate(test_ids, value, truth, data.outlier_radii)
        curves[name] = list(metrics[name]["ipe"].values())
        lines = summary_table(metrics[name], name).splitlines()
        rows.extend(lines if not rows else lines[2:])
    header = f"{run_dir}: {len(test_ids)} test images, local appearance around GT within {values.around_mm} mm\n\n"
    write_text_atomic(output / "components.md", header + "\n".join(rows) + "\n")
    write_text_atomic(
        output / "components.json",
        json.dumps(
            {
                name: {k: m[k] for k in ("pe_median", "pe_mean", "pe_std", "outliers", "id_rate")}
                for name, m in metrics.items()
            },
            indent=1,
        ),
    )
    plot_cumulative_ipe(output / "components_ipe.png", curves)
    print(header + "\n".join(rows))
    return 0


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
