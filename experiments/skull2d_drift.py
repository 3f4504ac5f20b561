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

from pathlib import Path

import numpy as np
from absl import app, flags

from scn_tf.configs import preset
from scn_tf.data.io import read_id_list, read_landmarks_csv
from scn_tf.evaluation import mean_offset, point_errors

SPLITS = Path(__file__).resolve().parents[1] / "data_splits" / "isbi2015_ceph"
flags.DEFINE_string("run_dir", None, "A skull2d run folder (its predictions.csv).", required=True)
flags.DEFINE_string("data_dir", None, "ISBI 2015 folder with annotations/<doctor>_mm.csv.", required=True)
flags.DEFINE_string("reference", "senior", "The annotations the run was trained and evaluated on.")
flags.DEFINE_string("other", "junior", "The annotator against whom the reference's drift is measured.")
flags.DEFINE_string("train_ids", str(SPLITS / "train.txt"), "Training ids.")
flags.DEFINE_string("test_ids", str(SPLITS / "test1.txt"), "Test ids.")
flags.DEFINE_list("correct", ["10"], "1-based landmarks whose drift is removed in the what-if count.")
flags.DEFINE_list("radii", ["2", "4"], "Radii (mm) of the success detection rates.")
FLAGS = flags.FLAGS


def stack(landmarks: dict[str, np.ndarray], ids: list[str], source: str) -> np.ndarray:
    missing = [i for i in ids if i not in landmarks]
    if missing:
        raise SystemExit(f"{source}: no row for ids {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return np.stack([landmarks[i] for i in ids])


def sdr(errors: np.ndarray, radii: list[str]) -> str:
    values = errors[np.isfinite(errors)]
    parts = [f"MRE {values.mean():.3f} mm"]
    parts += [f"SDR {r} mm {100 * np.mean(values < float(r)):.2f}% ({int(np.sum(values >= float(r)))} >= {r})"
              for r in radii]
    return ", ".join(parts)


def main(argv):
    del argv
    names = preset("skull2d").data.landmark_names
    count = len(names)
    annotations = Path(FLAGS.data_dir) / "annotations"
    reference = read_landmarks_csv(annotations / f"{FLAGS.reference}_mm.csv", count, 2)
    other = read_landmarks_csv(annotations / f"{FLAGS.other}_mm.csv", count, 2)
    predictions = read_landmarks_csv(Path(FLAGS.run_dir) / "predictions.csv", count, 2)
    train_ids, test_ids = read_id_list(FLAGS.train_ids), read_id_list(FLAGS.test_ids)

    truth = stack(reference, test_ids, FLAGS.reference)
    predicted = stack(predictions, test_ids, "predictions.csv")
    bias = mean_offset(predicted, truth)
    drift = (mean_offset(stack(reference, train_ids, FLAGS.reference), stack(other, train_ids, FLAGS.other))
             - mean_offset(truth, stack(other, test_ids, FLAGS.other)))
    errors = point_errors(predicted, truth)

    print(f"| # | landmark | network offset on test (mm) | {FLAGS.reference} drift train -> test (mm) | "
          f"outliers >= 4 mm |")
    print("|---|---|---|---|---|")
    for index, name in enumerate(names):
        print(f"| {index + 1} | {name} | ({bias[index, 0]:+.2f}, {bias[index, 1]:+.2f}) = "
              f"{np.linalg.norm(bias[index]):.2f} | ({drift[index, 0]:+.2f}, {drift[index, 1]:+.2f}) = "
              f"{np.linalg.norm(drift[index]):.2f} | {int(np.sum(errors[:, index] >= 4))} |")
    print(f"\nas run: {sdr(errors, FLAGS.radii)}")
    chosen = [int(k) - 1 for k in FLAGS.correct]
    moved = predicted.copy()
    moved[:, chosen] -= drift[chosen]
    print(f"drift of landmarks {','.join(FLAGS.correct)} removed: {sdr(point_errors(moved, truth), FLAGS.radii)}")


if __name__ == "__main__":
    app.run(main)
