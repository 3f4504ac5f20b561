"""scn-plan against a hand configuration at the same CPU budget, on three data sets.

  python benchmarks/planning.py --work_dir W [--only png,synthetic3d,hand_xray] [--hand_data ../shared/data/hand_xray]
      [--seed S]

For each data set the hand configuration (a CPU preset with its "data" keys set by hand and its iterations
chosen by hand for about 8 minutes, 3 per hand radiograph fold, on a 2-core EPYC) is trained first with
`scn-train` and timed; its wall time is the budget: `scn-plan --minutes <that>` plans the same data and its
plan is trained the same way. Prints, per data set, both configurations' test errors (from the
runs' metrics.json), wall times and the planned run's wall time over the budget. Data sets: `png`, the
generated 8-bit PNGs of experiments/own_data_example.py with a header-row landmark CSV (30 training, 10
test images); `synthetic3d`, the demo's 3D look-alike chains (scn_tf.synthetic, 20 training, 20 test
volumes); `hand_xray`, the 10 Digital Hand Atlas radiographs, 5 folds of 2 test images. `--seed` sets both
configurations' training seed (the data sets stay the same), to measure how much a result owes to it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "experiments"))
from own_data_example import LANDMARK_NAMES, write_images  # noqa: E402

from scn_tf.configs import preset  # noqa: E402
from scn_tf.data.io import write_landmarks_csv  # noqa: E402
from scn_tf.synthetic import synthetic_config, write_dataset  # noqa: E402


def command(name: str, *arguments: str, stdout=None) -> float:
    """Runs `scn-<name>` as a module; its wall time in seconds (a failure ends the benchmark)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", f"scn_tf.cli.{name}", *arguments], stdout=stdout)
    if result.returncode:
        raise SystemExit(f"scn-{name} {' '.join(arguments)} failed ({result.returncode})")
    return time.perf_counter() - start


def train(config: Path, data_dir: Path, train_ids: Path, test_ids: Path, output_dir: Path) -> tuple[float, dict]:
    if (output_dir / "metrics.json").exists() and (output_dir / "wall.json").exists():  # done before: reuse
        return json.loads((output_dir / "wall.json").read_text())["seconds"], json.loads(
            (output_dir / "metrics.json").read_text()
        )
    seconds = command(
        "train",
        "--config",
        str(config),
        "--data_dir",
        str(data_dir),
        "--train_ids",
        str(train_ids),
        "--test_ids",
        str(test_ids),
        "--output_dir",
        str(output_dir),
        "--overwrite",
        stdout=subprocess.DEVNULL,
    )
    (output_dir / "wall.json").write_text(json.dumps({"seconds": seconds}))
    return seconds, json.loads((output_dir / "metrics.json").read_text())


def plan(data_dir: Path, minutes: float, output: Path, *extra: str) -> None:
    with output.open("w") as handle:
        command("plan", "--data_dir", str(data_dir), "--minutes", f"{minutes:.2f}", *extra, stdout=handle)


def png_set(work: Path) -> tuple[Path, dict, list, list[str]]:
    data = work / "data"
    rng = np.random.default_rng(0)
    train = [f"train{k:03d}" for k in range(30)]
    test = [f"test{k:03d}" for k in range(10)]
    if not (data / "landmarks.csv").exists():
        landmarks = write_images(data / "images", train + test, rng)
        write_landmarks_csv(data / "landmarks.csv", landmarks, header=LANDMARK_NAMES)
    hand = preset("cpu2d").updated(
        {"data": {"num_landmarks": 4, "landmark_names": LANDMARK_NAMES}, "training": {"iterations": 10_000}}
    )
    return data, hand.to_dict(), [(train, test)], []


def synthetic3d_set(work: Path) -> tuple[Path, dict, list, list[str]]:
    data = work / "data"
    if not (data / "landmarks.csv").exists():
        write_dataset(data, synthetic_config(3), num_train=20, num_test=20, seed=0)
    ids = (data / "train.txt").read_text().split(), (data / "test.txt").read_text().split()
    hand = preset("cpu3d").updated(
        {"data": {"num_landmarks": 6, "image_suffix": ".nii.gz"}, "training": {"iterations": 5_500}}
    )
    return data, hand.to_dict(), [ids], []


def hand_xray_set(source: Path) -> tuple[Path, dict, list, list[str]]:
    ids = sorted(path.name[: -len(".mha")] for path in (source / "images").glob("*.mha"))
    folds = [([i for i in ids if i not in ids[k : k + 2]], ids[k : k + 2]) for k in range(0, len(ids), 2)]
    hand = preset("cpu2d").updated(
        {
            "data": {
                "num_landmarks": 37,
                "image_suffix": ".mha",
                "landmarks_csv": "all.csv",
                "image_spacing": [1.0, 1.0],
            },
            "training": {"iterations": 3_000},
        }
    )
    return (
        source,
        hand.to_dict(),
        folds,
        ["--landmarks", "all.csv", "--landmark_units", "pixel", "--image_spacing", "1,1"],
    )


def run_set(
    name: str, work: Path, data: Path, hand: dict, folds: list, plan_flags: list[str], seed: int | None
) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    if seed is not None:
        hand["training"]["seed"] = seed
    (work / "hand.json").write_text(json.dumps(hand, indent=2))
    results = {"hand": [], "planned": []}
    for k, (train_ids, test_ids) in enumerate(folds):
        fold = work / f"fold{k}"
        fold.mkdir(exist_ok=True)
        (fold / "train.txt").write_text("\n".join(train_ids) + "\n")
        (fold / "test.txt").write_text("\n".join(test_ids) + "\n")
        seconds, metrics = train(work / "hand.json", data, fold / "train.txt", fold / "test.txt", fold / "hand")
        results["hand"].append((seconds, metrics))
        if not (fold / "plan.json").exists():
            plan(data, seconds / 60, fold / "plan.json", *plan_flags)
            if seed is not None:
                planned_config = json.loads((fold / "plan.json").read_text())
                planned_config["training"]["seed"] = seed
                (fold / "plan.json").write_text(json.dumps(planned_config, indent=2))
        planned = train(fold / "plan.json", data, fold / "train.txt", fold / "test.txt", fold / "planned")
        results["planned"].append(planned)
        print(f"{name} fold {k}: hand {seconds:.0f} s, planned {planned[0]:.0f} s", flush=True)
    return results


def summary(name: str, results: dict, units: str) -> None:
    for which in ("hand", "planned"):
        runs = results[which]
        median = np.mean([m["pe_median"] for _, m in runs])
        mean = np.mean([m["pe_mean"] for _, m in runs])
        identified = np.mean([m["id_rate"] for _, m in runs])
        seconds = [s for s, _ in runs]
        ratio = ""
        if which == "planned":
            ratio = " | " + ", ".join(f"{p / h:.2f}" for (p, _), (h, _) in zip(runs, results["hand"], strict=True))
        else:
            ratio = " | budget"
        print(
            f"| {name} | {which} | {median:.2f} {units} | {mean:.2f} {units} | {identified:.1f}% | "
            f"{np.mean(seconds) / 60:.1f} min{ratio} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", required=True)
    parser.add_argument("--only", default="png,synthetic3d,hand_xray")
    parser.add_argument("--hand_data", default=str(HERE.parent / "shared" / "data" / "hand_xray"))
    parser.add_argument("--seed", type=int, default=None, help="training seed of both (default: the presets')")
    args = parser.parse_args()
    work = Path(args.work_dir) / (f"seed{args.seed}" if args.seed is not None else "")  # runs are reused by folder
    sets = {
        "png": (lambda: png_set(work / "png"), "px"),
        "synthetic3d": (lambda: synthetic3d_set(work / "synthetic3d"), "mm"),
        "hand_xray": (lambda: hand_xray_set(Path(args.hand_data)), "px"),
    }
    rows = []
    for name in args.only.split(","):
        if name == "hand_xray" and not Path(args.hand_data, "all.csv").exists():
            print(f"hand_xray: skipped, {args.hand_data} is absent")
            continue
        make, units = sets[name]
        data, hand, folds, flags = make()
        rows.append((name, run_set(name, work / name, data, hand, folds, flags, args.seed), units))
    print("\n| data set | configuration | PE median | PE mean | ID rate | wall (mean) | planned / budget |")
    print("|---|---|---|---|---|---|---|")
    for name, results, units in rows:
        summary(name, results, units)


if __name__ == "__main__":
    main()
