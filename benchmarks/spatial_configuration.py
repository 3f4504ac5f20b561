"""How the SCN's spatial configuration learns on the demo's look-alike chains: training curves of each
component's own ID rate, for the demo's SCN and variants of it, one seed each.

  python benchmarks/spatial_configuration.py --variant baseline --output_dir /tmp/sc      # one run
  python benchmarks/spatial_configuration.py --plot /tmp/sc --figure docs/demo/sc_curves.png

Every `--eval_every` steps the test images are predicted and the local appearance, the spatial
configuration (each decoded alone, sign-aware: scn_tf.components) and their product are scored with the
paper's ID rate. Each run writes `<output_dir>/<variant>.json` ({"variant", "config", "curve": [{step,
...}], "seconds"}); `--plot` draws every JSON of a folder. Variants change one thing of the demo's SCN
(experiments/demo.py, `demo_config`): see VARIANTS.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "experiments"))

# name: (what it tests, configuration changes, model keyword changes, training images)
VARIANTS = {
    "baseline": ("the demo's SCN", {}, {}, 10),
    "long": ("4x the iterations", {"training": {"iterations": 6000}}, {}, 10),
    "init": ("spatial heatmap conv init std 1e-2 (original 1e-4)", {}, {"heatmap_init_std": 1e-2}, 10),
    "kernel11": ("11x11 spatial kernels (the original's 2D size)", {"network": {"spatial_kernel_size": 11}}, {}, 10),
    "down8": ("spatial configuration at 1/8 (16x16)", {"network": {"spatial_downsampling": 8}}, {}, 10),
    "detached": ("no gradient from the spatial path into the local appearance", {}, {"detach": True}, 10),
    "lr1e-3": ("Adam learning rate 1e-3 (the demo's 3e-4)", {"training": {"learning_rate": 1e-3}}, {}, 10),
    "data40": ("40 training images instead of 10", {}, {}, 40),
}


def build(config, detach: bool = False, heatmap_init_std: float | None = None):
    """The SCN of `config`; with `detach`, the spatial configuration reads the local heatmaps without passing
    gradients back into the local appearance (the product still trains both)."""
    from keras import ops

    from scn_tf.models.scn import SpatialConfigurationNet

    class DetachedSCN(SpatialConfigurationNet):
        def heatmap_components(self, x, training=None):
            local = self.local_appearance(x, training=training)
            return local, self.spatial_configuration(ops.stop_gradient(local))

    network, data = config.network, config.data
    model_class = DetachedSCN if detach else SpatialConfigurationNet
    return model_class(
        num_landmarks=data.num_landmarks,
        ndim=data.ndim,
        filters=network.filters,
        levels=network.levels,
        spatial_kernel_size=network.spatial_kernel_size,
        spatial_downsampling=network.spatial_downsampling,
        dropout_rate=network.dropout_rate,
        padding=network.padding,
        heatmap_init_std=heatmap_init_std,
    )


def train(variant: str, output_dir: Path, iterations: int, eval_every: int, seed: int, workers: int) -> dict:
    from demo import demo_config

    from scn_tf.cli.common import import_backend_quietly

    import_backend_quietly()
    from scn_tf.components import component_points
    from scn_tf.data.io import read_id_list
    from scn_tf.data.pipeline import LandmarkSource, make_dataset
    from scn_tf.evaluation import evaluate
    from scn_tf.inference import Predictor
    from scn_tf.synthetic import synthetic_config, write_dataset
    from scn_tf.training import Trainer

    description, changes, model_changes, num_train = VARIANTS[variant]
    config = demo_config(2, "scn", iterations, seed).updated(changes)
    data_dir = output_dir / f"data_train{num_train}_seed{seed}"
    if not (data_dir / "test.txt").exists():
        write_dataset(data_dir, synthetic_config(2), num_train, 100, seed)
    train_ids, test_ids = read_id_list(data_dir / "train.txt"), read_id_list(data_dir / "test.txt")
    source = LandmarkSource(config.data, data_dir, train_ids, workers, verbose=False)
    test = LandmarkSource(config.data, data_dir, test_ids, workers, verbose=False)
    truth = np.stack([test.annotations[i] for i in test_ids])
    model = build(config, **model_changes)
    run_dir = output_dir / variant
    trainer = Trainer(model, config.data.num_landmarks, config.training, run_dir)
    curve = []

    def score(step: int) -> dict:
        predictor = Predictor(model, config.data, trainer.sigma_values(), None)
        product = np.stack([predictor.predict_prepared(test.images[i], i).points for i in test_ids])
        scores = {"step": step, "SCN": evaluate(test_ids, product, truth, config.data.outlier_radii)}
        for name, points in component_points(model, test).items():
            scores[name] = evaluate(test_ids, points, truth, config.data.outlier_radii)
        curve.append({"step": step, **{k: v["id_rate"] for k, v in scores.items() if k != "step"}})
        curve[-1]["SCN pe_median"] = scores["SCN"]["pe_median"]
        print(json.dumps(curve[-1]), flush=True)
        return {}

    start = time.perf_counter()
    trainer.fit(
        lambda step: make_dataset(
            source, config.augmentation, config.training.seed, config.training.batch_size, step, workers=workers
        ),
        evaluate=score,
        eval_every=eval_every,
    )
    result = {
        "variant": variant,
        "description": description,
        "num_train": num_train,
        "seed": seed,
        "config": config.to_dict(),
        "model_changes": model_changes,
        "curve": curve,
        "seconds": time.perf_counter() - start,
    }
    (output_dir / f"{variant}.json").write_text(json.dumps(result, indent=1))
    return result


def plot(folder: Path, figure_path: Path) -> None:
    """One panel per component (spatial configuration, local appearance, SCN): ID rate against the step,
    a line per variant; and a table of the last point of every run on stdout."""
    from matplotlib.figure import Figure

    runs = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    components = ["spatial configuration", "local appearance", "SCN"]
    figure = Figure(figsize=(15, 4.6))
    axes = figure.subplots(1, len(components), sharey=True)
    for axis, component in zip(axes, components, strict=True):
        for run in runs:
            steps = [point["step"] for point in run["curve"]]
            axis.plot(steps, [point[component] for point in run["curve"]], marker=".", label=run["variant"])
        axis.set_title(f"{component}{' alone' if component != 'SCN' else ''}")
        axis.set_xlabel("training step")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("ID rate on 100 test images (%)")
    axes[-1].legend(fontsize=8)
    figure.suptitle("SCN components on the demo's look-alike chains (seed 0; one run per variant)")
    figure.tight_layout()
    figure.savefig(figure_path, dpi=90)
    print(
        "| variant | what changes | steps | spatial configuration alone | local appearance alone | SCN "
        "| SCN median (mm) | time |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        last = run["curve"][-1]
        print(
            f"| {run['variant']} | {run['description']} | {last['step']} | {last['spatial configuration']:.1f}% | "
            f"{last['local appearance']:.1f}% | {last['SCN']:.1f}% | {last['SCN pe_median']:.2f} | "
            f"{run['seconds'] / 60:.1f} min |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS))
    parser.add_argument("--output_dir", default="/tmp/sc_runs")
    parser.add_argument("--iterations", type=int, default=None, help="default: the variant's (demo: 1500)")
    parser.add_argument("--eval_every", type=int, default=None, help="default: a tenth of the iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plot", help="folder of run JSONs to draw instead of training")
    parser.add_argument("--figure", default="sc_curves.png")
    arguments = parser.parse_args()
    if arguments.plot:
        plot(Path(arguments.plot), Path(arguments.figure))
        return
    if not arguments.variant:
        parser.error("give --variant or --plot")
    iterations = arguments.iterations or VARIANTS[arguments.variant][1].get("training", {}).get("iterations", 1500)
    output_dir = Path(arguments.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    eval_every = arguments.eval_every or max(iterations // 10, 1)
    train(arguments.variant, output_dir, iterations, eval_every, arguments.seed, arguments.workers)


if __name__ == "__main__":
    main()
