"""Cross-validation: every fold of an experiment, then one table in the paper's layout and IPE plots.

  python experiments/cross_validation.py --experiment hand2d --data_dir DATA --networks scn,unet --folds 0,1,2
  python experiments/cross_validation.py --experiment spine3d --data_dir DATA --processes 2 -- --eval_every 2500

Folds that finished (metrics.json present) are skipped, interrupted ones resume from their last checkpoint.
Flags after `--` go to every run of experiments/<experiment>.py. With --processes K, K folds run at once
(one process each, e.g. one per GPU with CUDA_VISIBLE_DEVICES set by --devices).
"""

from __future__ import annotations

import dataclasses
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from absl import flags

from scn_tf.cli.common import command
from scn_tf.configs import NETWORK_NAMES, load_config
from scn_tf.data.io import read_landmarks_csv
from scn_tf.evaluation import Normalization, coordinate_units, error_units, evaluate
from scn_tf.files import write_json_atomic, write_text_atomic
from scn_tf.reports import plot_cumulative_ipe, summary_table
from scn_tf.script_runs import device_environment, run_script
from scn_tf.splits import CV_FOLDS


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_enum(
        "experiment",
        None,
        ["hand2d", "skull2d", "hand3d", "spine3d"],
        "Dataset experiment.",
        required=True,
        flag_values=values,
    )
    flags.DEFINE_string("data_dir", None, "Dataset folder.", required=True, flag_values=values)
    flags.DEFINE_string(
        "output_dir", "runs/cv", "Runs go to <output_dir>/<experiment>/<network>/fold_<k>.", flag_values=values
    )
    flags.DEFINE_list("networks", ["scn"], "Networks to run.", flag_values=values)
    flags.DEFINE_list(
        "folds", None, "Folds (default: all of the experiment's cross-validation folds).", flag_values=values
    )
    flags.DEFINE_integer("processes", 1, "Folds run at once, one process each.", flag_values=values)
    flags.DEFINE_list(
        "devices", [], "GPU ids handed out to the processes in turn (CUDA_VISIBLE_DEVICES).", flag_values=values
    )


@dataclasses.dataclass
class CrossValidation:
    """Which experiment's folds to run, where, and how many at once."""

    experiment: str
    data_dir: str
    output_dir: str = "runs/cv"
    devices: list[str] = dataclasses.field(default_factory=list)


def run_fold(cv: CrossValidation, network: str, fold: str, index: int, extra: list[str]) -> Path:
    """Runs (or resumes, or skips when finished) one fold in its own process; returns its run folder."""
    folder = Path(cv.output_dir) / cv.experiment / network / f"fold_{fold}"
    arguments = ["--data_dir", cv.data_dir, "--fold", fold, "--network", network, *extra]
    script = Path(__file__).resolve().parent / f"{cv.experiment}.py"
    return run_script(script, arguments, folder, f"{network} fold {fold}", device_environment(cv.devices, index))


def aggregate(folders: list[Path], data_dir: str) -> dict:
    """Metrics over the test images of all folds together (the paper pools the folds)."""
    config = load_config(folders[0] / "config.json")
    data = config.data
    truth_table = read_landmarks_csv(Path(data_dir) / data.landmarks_csv, data.num_landmarks, data.ndim)
    predictions = {}
    for folder in folders:
        predictions.update(read_landmarks_csv(folder / "predictions.csv", data.num_landmarks, data.ndim))
    ids = sorted(predictions)
    return evaluate(
        ids,
        np.stack([predictions[i] for i in ids]),
        np.stack([truth_table[i] for i in ids]),
        data.outlier_radii,
        Normalization.parse(data.pe_normalization),
    )


def main(values: flags.FlagValues, extra: list[str]) -> int:
    cv = CrossValidation(values.experiment, values.data_dir, values.output_dir, values.devices)
    folds = values.folds or CV_FOLDS[cv.experiment]
    jobs = [(network, fold) for network in values.networks for fold in folds]
    with ThreadPoolExecutor(max(values.processes, 1)) as pool:
        folders = list(pool.map(lambda job: run_fold(cv, job[0], job[1], jobs.index(job), extra), jobs))
    root = Path(cv.output_dir) / cv.experiment
    data = load_config(folders[0] / "config.json").data
    units = error_units(data.landmark_units, data.pe_normalization)
    table, csv_rows, curves = (
        [],
        [
            "method,pe_median,pe_mean,pe_std,"
            + ",".join(f"outliers_{r},outliers_{r}_percent" for r in data.outlier_radii)
            + ",id_rate"
        ],
        {},
    )
    for network in values.networks:
        metrics = aggregate([f for (n, _), f in zip(jobs, folders, strict=True) if n == network], cv.data_dir)
        name = NETWORK_NAMES[network]
        write_json_atomic(root / f"metrics_{network}.json", metrics)
        lines = summary_table(metrics, name, units, coordinate_units(data.landmark_units)).splitlines()
        table.extend(lines if not table else lines[2:])
        csv_rows.append(
            ",".join(
                [name]
                + [f"{metrics[k]:.4f}" for k in ("pe_median", "pe_mean", "pe_std")]
                + [f"{o['count']},{o['percent']:.4f}" for o in metrics["outliers"].values()]
                + [f"{metrics['id_rate']:.4f}"]
            )
        )
        curves[name] = list(metrics["ipe"].values())
        plot_cumulative_ipe(root / f"cumulative_ipe_{network}.png", {name: curves[name]}, units)
    header = f"{cv.experiment}: folds {', '.join(folds)} pooled ({len(curves[name])} test images)\n\n"
    write_text_atomic(root / "table.md", header + "\n".join(table) + "\n")
    write_text_atomic(root / "table.csv", "\n".join(csv_rows) + "\n")
    plot_cumulative_ipe(root / "cumulative_ipe.png", curves, units)
    print((root / "table.md").read_text(), end="")
    return 0


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
