"""How much of a cephalogram run's error is annotation drift between the training and the test images.

  python experiments/skull2d_drift.py --run_dir runs/skull2d_cpu/scn/test1 --data_dir ../shared/data/isbi2015_ceph

For each landmark it prints the network's mean offset from the reference annotations on the test ids, and
the drift of the reference annotator: the mean reference-minus-other difference on the training ids minus
that on the test ids. A network trained on the reference labels learns its training-time convention, so a
drift shows up as an offset on the test images that no model of the images can remove. The last lines
count the outliers again with the predictions moved by the drift of the landmarks named in --correct: a
diagnosis of what limits the run, not a method (it reads the other annotator's test labels).
predictions.csv holds 6 significant digits, so a count may differ from metrics.json by a pair within
0.001 mm of a radius.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

from scn_tf.cli.common import command
from scn_tf.configs import preset
from scn_tf.data.io import DataError, read_id_list, read_landmarks_csv
from scn_tf.evaluation import evaluate, mean_offset, point_errors, radius_key
from scn_tf.listing import shortened
from scn_tf.splits import SPLITS_DIR

SPLITS = SPLITS_DIR / "isbi2015_ceph"


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "run_dir", None, "A skull2d run folder (its predictions.csv).", required=True, flag_values=values
    )
    flags.DEFINE_string(
        "data_dir", None, "ISBI 2015 folder with annotations/<doctor>_mm.csv.", required=True, flag_values=values
    )
    flags.DEFINE_string(
        "reference", "senior", "The annotations the run was trained and evaluated on.", flag_values=values
    )
    flags.DEFINE_string(
        "other", "junior", "The annotator against whom the reference's drift is measured.", flag_values=values
    )
    flags.DEFINE_string("train_ids", str(SPLITS / "train.txt"), "Training ids.", flag_values=values)
    flags.DEFINE_string("test_ids", str(SPLITS / "test1.txt"), "Test ids.", flag_values=values)
    flags.DEFINE_list(
        "correct", ["10"], "1-based landmarks whose drift is removed in the what-if count.", flag_values=values
    )
    flags.DEFINE_list("radii", ["2", "4"], "Radii (mm) of the success detection rates.", flag_values=values)


def stack(landmarks: dict[str, np.ndarray], path: Path, ids: list[str], ids_file: str) -> np.ndarray:
    """The rows of landmark file `path` (read into `landmarks`) for `ids`, as (images, landmarks, 2)."""
    missing = [i for i in ids if i not in landmarks]
    if missing:
        raise DataError(f"{path}: no row for id(s) {shortened(missing)} listed in {ids_file}")
    return np.stack([landmarks[i] for i in ids])


def summary(ids: list[str], predicted: np.ndarray, truth: np.ndarray, radii: list[str]) -> str:
    """MRE and success detection rates by the evaluation's own definitions (outlier: PE >= radius)."""
    metrics = evaluate(ids, predicted, truth, radii)
    parts = [f"MRE {metrics['pe_mean']:.3f} mm"]
    for radius in radii:
        outliers = metrics["outliers"][radius_key(radius)]
        parts.append(f"SDR {radius} mm {100 - outliers['percent']:.2f}% ({outliers['count']} >= {radius})")
    return ", ".join(parts)


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    names = preset("skull2d").data.landmark_names
    annotations = Path(values.data_dir) / "annotations"
    paths = {
        "reference": annotations / f"{values.reference}_mm.csv",
        "other": annotations / f"{values.other}_mm.csv",
        "predictions": Path(values.run_dir) / "predictions.csv",
    }
    try:
        tables = {key: read_landmarks_csv(path, len(names), 2) for key, path in paths.items()}
        splits = {
            "train": (read_id_list(values.train_ids), values.train_ids),
            "test": (read_id_list(values.test_ids), values.test_ids),
        }
        rows = {
            (key, split): stack(tables[key], paths[key], *splits[split])
            for key, split in [
                ("reference", "train"),
                ("other", "train"),
                ("reference", "test"),
                ("other", "test"),
                ("predictions", "test"),
            ]
        }
    except DataError as error:
        logging.error("%s", error)
        return 1
    test_ids, truth, predicted = splits["test"][0], rows["reference", "test"], rows["predictions", "test"]
    drift = mean_offset(rows["reference", "train"], rows["other", "train"]) - mean_offset(truth, rows["other", "test"])
    bias = mean_offset(predicted, truth)
    errors = point_errors(predicted, truth)

    print(
        f"| # | landmark | network offset on test (mm) | {values.reference} drift train -> test (mm) | "
        f"outliers >= 4 mm |"
    )
    print("|---|---|---|---|---|")
    for index, name in enumerate(names):
        print(
            f"| {index + 1} | {name} | ({bias[index, 0]:+.2f}, {bias[index, 1]:+.2f}) = "
            f"{np.linalg.norm(bias[index]):.2f} | ({drift[index, 0]:+.2f}, {drift[index, 1]:+.2f}) = "
            f"{np.linalg.norm(drift[index]):.2f} | {int(np.sum(errors[:, index] >= 4))} |"
        )
    print(f"\nas run: {summary(test_ids, predicted, truth, values.radii)}")
    chosen = [int(k) - 1 for k in values.correct]
    moved = predicted.copy()
    moved[:, chosen] -= drift[chosen]
    print(f"drift of landmarks {','.join(values.correct)} removed: {summary(test_ids, moved, truth, values.radii)}")
    return 0


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
