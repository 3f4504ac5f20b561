"""The paper's Table 2 on cephalograms: SCN, Localization U-Net and LA-Net trained on few ISBI 2015 images.

  TF_ENABLE_ONEDNN_OPTS=1 python experiments/reduced_training.py --data_dir ../shared/data/isbi2015_ceph
  python experiments/reduced_training.py --data_dir DATA --sizes 10,25 --networks scn,unet

Every (size, draw, network) trains experiments/skull2d.py --cpu on data_splits/isbi2015_ceph/reduced/<size>/
<draw>.txt (--train_subset, --subset_draw) with --iterations (5,500), the same for every network and draw, and is
evaluated on test1 against the senior annotations. Runs that finished are skipped, interrupted ones
resume; each run folder's run.json holds its command and wall time. Then, per size, a table in the layout
of the paper's Table 2 with mean +- SD over the draws (PE median, PE mean +- SD, outliers at --radii, ID
rate, wall minutes per run) and one cumulative-IPE plot of the draws pooled, in <output_dir>/<size>/.
Fix --iterations before the first run (e.g. from the step time, for a training budget); never choose it
from test1 results. Flags after `--` go to every run of skull2d.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from absl import flags

from scn_tf.cli.common import command
from scn_tf.configs import NETWORK_NAMES
from scn_tf.data.io import read_landmarks_csv
from scn_tf.evaluation import evaluate, radius_key
from scn_tf.files import write_json_atomic, write_text_atomic
from scn_tf.reports import plot_cumulative_ipe
from scn_tf.script_runs import run_script, wall_seconds

SKULL2D = Path(__file__).resolve().parent / "skull2d.py"
# Fixed before any run from the step times alone, for 15 minutes per run on 2 CPU cores: the SCN's step at
# the CPU preset took 0.132 s (400 steps, idle 2-core AMD EPYC with AVX-512, TF_ENABLE_ONEDNN_OPTS=1; the
# U-Net 0.109 s, LA-Net 0.080 s), so 5,500 steps train in about 12 minutes, plus 1.5 for loading and
# evaluating test1. The same for every network and draw.
ITERATIONS = 5_500


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "data_dir", None, "ISBI 2015 folder (images/, annotations/).", required=True, flag_values=values
    )
    flags.DEFINE_integer(
        "iterations", ITERATIONS, "Training iterations of every run (fixed before the first run).", flag_values=values
    )
    flags.DEFINE_string(
        "output_dir", "runs/reduced", "Runs go to <output_dir>/<size>/<network>/draw_<d>.", flag_values=values
    )
    flags.DEFINE_list("sizes", ["10"], "Training set sizes (10, 25).", flag_values=values)
    flags.DEFINE_list("draws", ["1", "2", "3"], "Draws of each size.", flag_values=values)
    flags.DEFINE_list("networks", ["scn", "unet", "la"], "Networks.", flag_values=values)
    flags.DEFINE_enum("unet_variant", "paper", ["paper", "released"], "Localization U-Net variant.", flag_values=values)
    flags.DEFINE_list("radii", ["2", "2.5", "3", "4", "10"], "Outlier radii (mm).", flag_values=values)


def mean_sd(values: list[float], digits: int = 2) -> str:
    """'mean +- SD' over draws (population SD, as the paper's tables)."""
    return f"{np.mean(values):.{digits}f} +- {np.std(values):.{digits}f}"


def table_rows(results: dict[str, list[dict]], minutes: dict[str, list[float]], radii: list[str]) -> list[str]:
    """The Table 2 layout, one row per network, each cell the mean +- SD over its draws."""
    header = (
        ["method", "draws", "PE median (mm)", "PE mean (mm)", "PE SD (mm)"]
        + [f"#O >= {r} mm" for r in radii]
        + ["ID rate (%)", "wall min per run"]
    )
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, draws in results.items():
        cells = [
            name,
            str(len(draws)),
            mean_sd([m["pe_median"] for m in draws]),
            mean_sd([m["pe_mean"] for m in draws]),
            mean_sd([m["pe_std"] for m in draws]),
        ]
        cells += [mean_sd([m["outliers"][radius_key(r)]["count"] for m in draws], 1) for r in radii]
        cells += [
            mean_sd([m["id_rate"] for m in draws], 1),
            mean_sd(minutes[name], 1) if minutes[name] else "not timed",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main(values: flags.FlagValues, extra: list[str]) -> int:
    truth = read_landmarks_csv(Path(values.data_dir) / "annotations" / "senior_mm.csv", 19, 2)
    for size in values.sizes:
        root = Path(values.output_dir) / size
        results, minutes, curves = {}, {}, {}
        for network in values.networks:
            name = NETWORK_NAMES[network]
            results[name], minutes[name], pooled = [], [], []
            for draw in values.draws:
                arguments = [
                    "--cpu",
                    "--data_dir",
                    values.data_dir,
                    "--fold",
                    "test1",
                    "--annotations",
                    "senior",
                    "--train_subset",
                    size,
                    "--subset_draw",
                    draw,
                    "--network",
                    network,
                    "--unet_variant",
                    values.unet_variant,
                    "--iterations",
                    str(values.iterations),
                    *extra,
                ]
                folder = run_script(SKULL2D, arguments, root / network / f"draw_{draw}", f"{name} N={size} draw {draw}")
                predictions = read_landmarks_csv(folder / "predictions.csv", 19, 2)
                test_ids = sorted(predictions)  # test1, unless --test_ids was passed on after --
                metrics = evaluate(
                    test_ids,
                    np.stack([predictions[i] for i in test_ids]),
                    np.stack([truth[i] for i in test_ids]),
                    values.radii,
                )
                results[name].append(metrics)
                seconds = wall_seconds(folder)
                if seconds is not None:
                    minutes[name].append(seconds / 60)
                pooled.extend(metrics["ipe"].values())
            curves[name] = pooled
        header = (
            f"ISBI 2015 test1 ({len(test_ids)} images, senior), trained on {size} images of 001-150, draws "
            f"{', '.join(values.draws)}, {values.iterations} iterations, mean +- SD over draws\n\n"
        )
        write_text_atomic(root / "table.md", header + "\n".join(table_rows(results, minutes, values.radii)) + "\n")
        write_json_atomic(
            root / "metrics.json",
            {
                name: [{k: m[k] for k in ("pe_median", "pe_mean", "pe_std", "outliers", "id_rate")} for m in draws]
                for name, draws in results.items()
            },
        )
        plot_cumulative_ipe(root / "cumulative_ipe.png", curves)
        print((root / "table.md").read_text(), end="")
    return 0


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
