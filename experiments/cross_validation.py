"""Cross-validation: every fold of an experiment, then one table in the paper's layout and IPE plots.

  python experiments/cross_validation.py --experiment hand2d --data_dir DATA --networks scn,unet --folds 0,1,2
  python experiments/cross_validation.py --experiment spine3d --data_dir DATA --processes 2 -- --eval_every 2500
  python experiments/cross_validation.py --config plan.json --data_dir DATA --ids all.txt --num_folds 5

Folds that finished (metrics.json present) are skipped, interrupted ones resume from their last checkpoint.
Flags after `--` go to every run of experiments/<experiment>.py (with --config: of scn-train, e.g.
`-- --preset cpu2d` for a configuration that holds only the keys it changes). With --processes K, K folds run
at once (one process each, e.g. one per GPU with CUDA_VISIBLE_DEVICES set by --devices).

--config (any data set; instead of --experiment): the ids of --ids (looked for as given, then in --data_dir)
are shuffled with --seed (default: the configuration's training seed) and cut into --num_folds folds, written
as <output_dir>/<config name>/folds/fold_<k>/{train,test}.txt with folds.json (seed, fold count, ids) before
the first run. A repeated call reads those lists, so a resumed cross-validation trains on the same folds; an id
list, fold count or seed other than the recorded one is an error. Runs go to
<output_dir>/<config name>/<network>/fold_<k>, the table and plots to <output_dir>/<config name>.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from absl import flags

from scn_tf.cli.common import command, resolve_config
from scn_tf.cli.runner import find_id_list
from scn_tf.configs import NETWORK_NAMES, load_config
from scn_tf.data.folds import k_fold
from scn_tf.data.io import DataError, read_id_list, read_landmarks_csv
from scn_tf.evaluation import Normalization, coordinate_units, error_units, evaluate
from scn_tf.files import write_json_atomic, write_text_atomic
from scn_tf.listing import shortened
from scn_tf.reports import plot_cumulative_ipe, summary_table
from scn_tf.script_runs import device_environment, run_script
from scn_tf.splits import CV_FOLDS


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_enum(
        "experiment",
        None,
        ["hand2d", "skull2d", "hand3d", "spine3d"],
        "Dataset experiment (or --config).",
        flag_values=values,
    )
    flags.DEFINE_string(
        "config",
        None,
        "A configuration JSON (scn-train --config) for any data set (or --experiment).",
        flag_values=values,
    )
    flags.mark_flags_as_mutual_exclusive(["experiment", "config"], required=True, flag_values=values)
    flags.DEFINE_string("data_dir", None, "Dataset folder.", required=True, flag_values=values)
    flags.DEFINE_string("ids", None, "--config: file of the ids to cross-validate, one per line.", flag_values=values)
    flags.DEFINE_integer("num_folds", 5, "--config: number of folds.", flag_values=values)
    flags.DEFINE_integer(
        "seed",
        None,
        "--config: seed of the fold assignment (default: the configuration's training seed).",
        flag_values=values,
    )
    flags.DEFINE_string(
        "output_dir",
        "runs/cv",
        "Runs go to <output_dir>/<experiment or config name>/<network>/fold_<k>.",
        flag_values=values,
    )
    flags.DEFINE_list(
        "networks", None, "Networks to run (default: scn; with --config the configuration's).", flag_values=values
    )
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

    experiment: str  # the experiment's name, or the configuration's (its file name without .json)
    data_dir: str
    output_dir: str = "runs/cv"
    devices: list[str] = dataclasses.field(default_factory=list)
    config: str | None = None  # a configuration JSON: folds of own data through scn-train

    @property
    def root(self) -> Path:
        return Path(self.output_dir) / self.experiment


def run_fold(cv: CrossValidation, network: str, fold: str, index: int, extra: list[str]) -> Path:
    """Runs (or resumes, or skips when finished) one fold in its own process; returns its run folder."""
    folder = cv.root / network / f"fold_{fold}"
    label, environment = f"{network} fold {fold}", device_environment(cv.devices, index)
    if cv.config is not None:
        lists = cv.root / "folds" / f"fold_{fold}"
        arguments = ["--config", str(Path(cv.config).resolve()), "--data_dir", cv.data_dir, "--network", network]
        arguments += ["--train_ids", str(lists / "train.txt"), "--test_ids", str(lists / "test.txt"), *extra]
        return run_script("scn_tf.cli.train", arguments, folder, label, environment, module=True)
    arguments = ["--data_dir", cv.data_dir, "--fold", fold, "--network", network, *extra]
    script = Path(__file__).resolve().parent / f"{cv.experiment}.py"
    return run_script(script, arguments, folder, label, environment)


def config_value(path: str, section: str, key: str, default):
    """A key of a configuration JSON that may hold only some keys (scn-train --preset P --config FILE)."""
    try:
        value = json.loads(Path(path).read_text()).get(section, {}).get(key)
    except (OSError, ValueError, AttributeError) as error:
        raise DataError(f"{path}: cannot read configuration ({error})") from None
    return default if value is None else value


def check_ids(config_file: str, data_dir: str, ids: list[str], extra: list[str]) -> None:
    """Every id with an annotation row and an image, before any fold starts, in the configuration that each
    fold's scn-train reads (the file over the --preset passed on to it, if any)."""
    named = [a.split("=", 1)[1] for a in extra if a.startswith("--preset=")]
    named += [extra[k + 1] for k, a in enumerate(extra[:-1]) if a == "--preset"]
    try:
        data = resolve_config(named[-1] if named else None, config_file).data
    except ValueError as error:
        raise DataError(str(error)) from None
    csv = Path(data_dir) / data.landmarks_csv
    annotations = read_landmarks_csv(csv, data.num_landmarks, data.ndim)
    missing = [i for i in ids if i not in annotations]
    if missing:
        raise DataError(f"{csv}: no annotation row for --ids id(s) {shortened(missing)}")
    folder = Path(data_dir) / data.image_dir
    absent = [i for i in ids if not (folder / f"{i}{data.image_suffix}").exists()]
    if absent:
        raise DataError(f"{folder}: no image <id>{data.image_suffix} for --ids id(s) {shortened(absent)}")


def seeded_folds(root: Path, ids: list[str], num_folds: int, seed: int) -> list[str]:
    """The fold names ("0", ...) of `ids`, written as root/folds/fold_<k>/{train,test}.txt and folds.json; where
    folds.json exists, its lists are read and checked against `ids`, `num_folds` and `seed` instead."""
    folder = root / "folds"
    record = folder / "folds.json"
    names = [str(k) for k in range(num_folds)]
    if record.exists():
        saved = json.loads(record.read_text())
        if sorted(saved["ids"]) != sorted(ids):
            added, removed = sorted(set(ids) - set(saved["ids"])), sorted(set(saved["ids"]) - set(ids))
            raise DataError(
                f"{record}: the folds were made for another id list ({len(added)} id(s) added: "
                f"{', '.join(added[:5]) or '-'}; {len(removed)} removed: {', '.join(removed[:5]) or '-'}); "
                "use the same --ids or another --output_dir"
            )
        if saved["num_folds"] != num_folds or saved["seed"] != seed:
            raise DataError(
                f"{record}: the folds were made with --num_folds {saved['num_folds']} --seed {saved['seed']}, "
                f"not {num_folds} and {seed}; use those or another --output_dir"
            )
        tested = []
        for name in names:
            train = read_id_list(folder / f"fold_{name}" / "train.txt")
            test = read_id_list(folder / f"fold_{name}" / "test.txt")
            if sorted(train + test) != sorted(ids) or set(train) & set(test):
                raise DataError(f"{folder / f'fold_{name}'}: train.txt and test.txt do not split the recorded ids")
            tested += test
        if sorted(tested) != sorted(ids):
            raise DataError(f"{folder}: the folds' test lists do not cover the recorded ids once each")
        logging.info("folds read from %s", folder)
        return names
    if not 2 <= num_folds <= len(ids):
        raise DataError(f"--num_folds {num_folds}: needs 2 to {len(ids)} (the number of ids)")
    for name in names:
        train, test = k_fold(ids, num_folds, int(name), seed)
        write_text_atomic(folder / f"fold_{name}" / "train.txt", "".join(f"{i}\n" for i in train))
        write_text_atomic(folder / f"fold_{name}" / "test.txt", "".join(f"{i}\n" for i in test))
    write_json_atomic(record, {"seed": seed, "num_folds": num_folds, "ids": sorted(ids)})
    logging.info("%d folds of %d ids (seed %d) written to %s", num_folds, len(ids), seed, folder)
    return names


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


def prepare(values: flags.FlagValues, extra: list[str]) -> tuple[CrossValidation, list[str], list[str]]:
    """The cross-validation, its networks and its folds (for --config, the seeded folds written or read)."""
    if values.config is None:
        cv = CrossValidation(values.experiment, values.data_dir, values.output_dir, values.devices)
        folds = CV_FOLDS[cv.experiment]
        networks = values.networks or ["scn"]
    else:
        if not values.ids:
            raise DataError("--config needs --ids FILE (the ids to cross-validate)")
        name = Path(values.config).name.removesuffix(".json")
        cv = CrossValidation(name, values.data_dir, values.output_dir, values.devices, values.config)
        ids = read_id_list(find_id_list(values.ids, values.data_dir))
        check_ids(values.config, values.data_dir, ids, extra)
        seed = values.seed if values.seed is not None else int(config_value(values.config, "training", "seed", 0))
        folds = seeded_folds(cv.root, ids, values.num_folds, seed)
        networks = values.networks or [config_value(values.config, "network", "network", "scn")]
    unknown = [fold for fold in values.folds or [] if fold not in folds]
    if unknown and values.config is not None:
        raise DataError(f"--folds {','.join(unknown)}: not among the folds {', '.join(folds)}")
    return cv, networks, values.folds or folds


def main(values: flags.FlagValues, extra: list[str]) -> int:
    try:
        cv, networks, folds = prepare(values, extra)
    except DataError as error:
        logging.error("%s", error)
        return 1
    jobs = [(network, fold) for network in networks for fold in folds]

    def attempt(job: tuple[str, str]) -> Path | RuntimeError:
        try:
            return run_fold(cv, job[0], job[1], jobs.index(job), extra)
        except RuntimeError as error:
            return error

    with ThreadPoolExecutor(max(values.processes, 1)) as pool:
        folders = list(pool.map(attempt, jobs))
    failed = [str(outcome) for outcome in folders if isinstance(outcome, RuntimeError)]
    if failed:
        for message in failed:
            logging.error("%s", message)
        logging.error(
            "%d of %d runs failed, no table written; the %d finished are kept and skipped when the command is repeated",
            len(failed),
            len(jobs),
            len(jobs) - len(failed),
        )
        return 1
    root = cv.root
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
    for network in networks:
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
