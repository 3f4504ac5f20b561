"""Cross-validation: every fold of an experiment, then one table in the paper's layout and IPE plots.

  python experiments/cross_validation.py --experiment hand2d --data_dir DATA --networks scn,unet --folds 0,1,2
  python experiments/cross_validation.py --experiment spine3d --data_dir DATA --processes 2 -- --eval_every 2500

Folds that finished (metrics.json present) are skipped, interrupted ones resume from their last checkpoint.
Flags after `--` go to every run of experiments/<experiment>.py. With --processes K, K folds run at once
(one process each, e.g. one per GPU with CUDA_VISIBLE_DEVICES set by --devices).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from absl import app, flags

from scn_tf.configs import NETWORK_NAMES, load_config
from scn_tf.data.io import read_landmarks_csv
from scn_tf.evaluation import Normalization, evaluate
from scn_tf.files import write_json_atomic, write_text_atomic
from scn_tf.reports import plot_cumulative_ipe, summary_table
from scn_tf.script_runs import device_environment, run_script
from scn_tf.splits import CV_FOLDS

FLAGS = flags.FLAGS
flags.DEFINE_enum("experiment", None, ["hand2d", "skull2d", "hand3d", "spine3d"], "Dataset experiment.",
                  required=True)
flags.DEFINE_string("data_dir", None, "Dataset folder.", required=True)
flags.DEFINE_string("output_dir", "runs/cv", "Runs go to <output_dir>/<experiment>/<network>/fold_<k>.")
flags.DEFINE_list("networks", ["scn"], "Networks to run.")
flags.DEFINE_list("folds", None, "Folds (default: all of the experiment's cross-validation folds).")
flags.DEFINE_integer("processes", 1, "Folds run at once, one process each.")
flags.DEFINE_list("devices", [], "GPU ids handed out to the processes in turn (CUDA_VISIBLE_DEVICES).")



def run_fold(network: str, fold: str, index: int, extra: list[str]) -> Path:
    folder = Path(FLAGS.output_dir) / FLAGS.experiment / network / f"fold_{fold}"
    arguments = ["--data_dir", FLAGS.data_dir, "--fold", fold, "--network", network, *extra]
    script = Path(__file__).resolve().parent / f"{FLAGS.experiment}.py"
    return run_script(script, arguments, folder, f"{network} fold {fold}", device_environment(FLAGS.devices, index))


def aggregate(folders: list[Path]) -> dict:
    """Metrics over the test images of all folds together (the paper pools the folds)."""
    config = load_config(folders[0] / "config.json")
    data = config.data
    truth_table = read_landmarks_csv(Path(FLAGS.data_dir) / data.landmarks_csv, data.num_landmarks, data.ndim)
    predictions = {}
    for folder in folders:
        predictions.update(read_landmarks_csv(folder / "predictions.csv", data.num_landmarks, data.ndim))
    ids = sorted(predictions)
    return evaluate(ids, np.stack([predictions[i] for i in ids]), np.stack([truth_table[i] for i in ids]),
                    data.outlier_radii, Normalization.parse(data.pe_normalization))


def main(argv):
    extra = argv[1:]
    folds = FLAGS.folds or CV_FOLDS[FLAGS.experiment]
    jobs = [(network, fold) for network in FLAGS.networks for fold in folds]
    with ThreadPoolExecutor(max(FLAGS.processes, 1)) as pool:
        folders = list(pool.map(lambda job: run_fold(job[0], job[1], jobs.index(job), extra), jobs))
    root = Path(FLAGS.output_dir) / FLAGS.experiment
    table, csv_rows, curves = [], ["method,pe_median,pe_mean,pe_std," + ",".join(
        f"outliers_{r},outliers_{r}_percent" for r in load_config(folders[0] / "config.json").data.outlier_radii)
        + ",id_rate"], {}
    for network in FLAGS.networks:
        metrics = aggregate([f for (n, _), f in zip(jobs, folders, strict=True) if n == network])
        name = NETWORK_NAMES[network]
        write_json_atomic(root / f"metrics_{network}.json", metrics)
        lines = summary_table(metrics, name).splitlines()
        table.extend(lines if not table else lines[2:])
        csv_rows.append(",".join([name] + [f"{metrics[k]:.4f}" for k in ("pe_median", "pe_mean", "pe_std")]
                                 + [f"{o['count']},{o['percent']:.4f}" for o in metrics["outliers"].values()]
                                 + [f"{metrics['id_rate']:.4f}"]))
        curves[name] = list(metrics["ipe"].values())
        plot_cumulative_ipe(root / f"cumulative_ipe_{network}.png", {name: curves[name]})
    header = f"{FLAGS.experiment}: folds {', '.join(folds)} pooled ({len(curves[name])} test images)\n\n"
    write_text_atomic(root / "table.md", header + "\n".join(table) + "\n")
    write_text_atomic(root / "table.csv", "\n".join(csv_rows) + "\n")
    plot_cumulative_ipe(root / "cumulative_ipe.png", curves)
    print((root / "table.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    app.run(main)
