"""The main job on built-in synthetic data: SCN vs Localization U-Net vs LA-Net from 10 training images.

  python experiments/demo.py                  # 2D, 5 to 8 minutes on 2 CPU cores
  python experiments/demo.py --ndim 3         # a small 3D variant

Generates a data set of look-alike landmark chains (scn_tf.synthetic) if absent, trains the three networks
in small CPU configurations, evaluates each on the test images, prints a table in the layout of the paper's
Table 2 and writes under --output_dir: the data, one run folder per network (metrics, predictions, overlays,
TensorBoard logs), table.md, cumulative_ipe.png and heatmap_components.png (the SCN's local appearance,
spatial configuration and final heatmaps for one test image). The SCN's two factors are also decoded on
their own (the paper's Fig. 9 analysis): local appearance alone is accurate but ambiguous, spatial
configuration alone robust but coarse.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

from scn_tf.cli.common import command, import_backend_quietly
from scn_tf.configs import (
    NETWORK_NAMES,
    AugmentationConfig,
    DataConfig,
    ExperimentConfig,
    NetworkConfig,
    TrainingConfig,
)
from scn_tf.data.io import read_id_list
from scn_tf.evaluation import evaluate
from scn_tf.files import write_json_atomic, write_text_atomic
from scn_tf.model_dir import load_model_dir
from scn_tf.reports import plot_cumulative_ipe, summary_table
from scn_tf.synthetic import synthetic_config, write_dataset


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string("output_dir", "demo_output", "Where data, runs, table and plots go.", flag_values=values)
    flags.DEFINE_enum("ndim", "2", ["2", "3"], "2D or 3D synthetic data.", flag_values=values)
    flags.DEFINE_list("networks", ["scn", "unet", "la"], "Networks to compare.", flag_values=values)
    flags.DEFINE_integer(
        "iterations", None, "Training iterations per network (default: 2D 1500, 3D 600).", flag_values=values
    )
    flags.DEFINE_integer("num_train", 10, "Training images.", flag_values=values)
    flags.DEFINE_integer("num_test", 100, "Test images.", flag_values=values)
    flags.DEFINE_integer("seed", 0, "Seed of the data and the training.", flag_values=values)
    flags.DEFINE_integer("workers", 2, "Parallel data-pipeline workers.", flag_values=values)


# In 2D every network sees the share of the image width it sees at the paper's 512x512: the local
# appearance (SCN and LA-Net) a fifth (4 levels there: 102 of 512 pixels; 2 levels here: 24 of 128), the
# U-Net under half (5 levels there: 232 of 512, 45%; 3 levels here: 52 of 128, 41%), the spatial
# configuration the whole image. 3D: 4 levels for all.
LEVELS_2D = {"scn": 2, "la": 2, "unet": 3}
ITERATIONS_2D = 1500


def demo_config(ndim: int, network: str, iterations: int, seed: int) -> ExperimentConfig:
    """Small CPU configurations: 128x128 (2D) or 32x32x48 (3D) inputs, 16 filters, Adam.

    In 2D the local appearance has 2 levels (a 24-pixel receptive field: one blob, not its neighbours 16 mm
    away), so that only the spatial configuration (at 1/4, 7x7 kernels, seeing the whole image) tells the
    look-alikes apart, as in the paper's regime; the U-Net has 3 levels (52 pixels, 41% of the width, as
    its 5 levels see 45% of the paper's 512-pixel input).
    """
    synthetic = synthetic_config(ndim)
    data = DataConfig(
        name=f"synthetic{ndim}d",
        ndim=ndim,
        num_landmarks=synthetic.num_landmarks,
        image_suffix=".mha" if ndim == 2 else ".nii.gz",
        landmarks_csv="landmarks.csv",
        landmark_units="mm",
        image_size=[128, 128] if ndim == 2 else [32, 32, 48],
        spacing=None,
        intensity_clamp=[-1.0, 2.0],
        outlier_radii=[2, 4, 10],
    )
    augmentation = AugmentationConfig(
        translation=8.0 if ndim == 2 else 4.0,
        rotation=0.15,
        scale=0.1,
        scale_axis=0.05,
        intensity_shift=0.1,
        intensity_scale=0.1,
    )
    network_config = NetworkConfig(
        network=network,
        filters=16,
        levels=LEVELS_2D[network] if ndim == 2 else 4,
        spatial_kernel_size=7 if ndim == 2 else 5,
        spatial_downsampling=4 if ndim == 2 else 2,
        dropout_rate=0.3,
        padding="same",
    )
    training = TrainingConfig(
        iterations=iterations,
        optimizer="adam",
        learning_rate=3e-4,
        clip_norm=None,
        alpha=20.0,
        weight_decay=5e-4,
        gamma=100.0 if ndim == 2 else 1000.0,
        sigma_init=2.0,
        seed=seed,
        log_every=100,
        checkpoint_every=max(iterations // 2, 1),
    )
    return ExperimentConfig(data, augmentation, network_config, training)


def geometry_line(ndim: int, networks: list[str]) -> str:
    """The input size and every network's receptive fields, in pixels and as a share of the input width."""
    from scn_tf.models.receptive_fields import receptive_fields  # scn_tf.models loads the backend

    image_size = demo_config(ndim, "scn", 1, 0).data.image_size
    parts = []
    for network in networks:
        n = demo_config(ndim, network, 1, 0).network
        fields = receptive_fields(n.network, n.levels, n.spatial_kernel_size, n.spatial_downsampling, ndim=ndim)
        for name, pixels in fields.items():
            label = name if name == "U-Net" else f"{NETWORK_NAMES[network]} {name}"
            parts.append(f"{label} {pixels} px ({100 * pixels / image_size[0]:.0f}%)")
    size = "x".join(str(s) for s in image_size)
    return f"input {size} px; receptive fields per axis (share of the input width): " + ", ".join(parts)


def component_analysis(run_dir: Path, source, figure_path: Path) -> dict:
    """The SCN's local appearance and spatial configuration decoded separately on every test image of
    `source` (a LandmarkSource)."""
    from scn_tf.components import component_points

    config, model, _, _ = load_model_dir(run_dir)
    truth = np.stack([source.annotations[image_id] for image_id in source.ids])
    return {
        name: evaluate(source.ids, points, truth, config.data.outlier_radii)
        for name, points in component_points(model, source, figure_path=figure_path).items()
    }


def main(values: flags.FlagValues, arguments: list[str]) -> int:
    if arguments:
        raise app.UsageError(f"unexpected arguments: {' '.join(arguments)}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    ndim = int(values.ndim)
    iterations = values.iterations or (ITERATIONS_2D if ndim == 2 else 600)
    import_backend_quietly(demo_config(ndim, "scn", iterations, values.seed))  # every network has 16 filters
    from scn_tf.data.pipeline import LandmarkSource
    from scn_tf.experiment import Experiment

    geometry = geometry_line(ndim, values.networks)
    print(geometry, flush=True)
    output = Path(values.output_dir).resolve()
    data_dir = output / f"data{ndim}d_seed{values.seed}"
    if not (data_dir / "test.txt").exists():
        logging.info("generating %d + %d synthetic %dD images in %s", values.num_train, values.num_test, ndim, data_dir)
        write_dataset(data_dir, synthetic_config(ndim), values.num_train, values.num_test, values.seed)
    train_ids, test_ids = read_id_list(data_dir / "train.txt"), read_id_list(data_dir / "test.txt")
    rows, curves, all_metrics = [], {}, {}
    for network in values.networks:
        run_dir = output / f"{ndim}d_seed{values.seed}" / network
        config = demo_config(ndim, network, iterations, values.seed)
        if (run_dir / "metrics.json").exists():
            metrics = json.loads((run_dir / "metrics.json").read_text())
        else:
            logging.info(
                "training %s on %d images for %d iterations", NETWORK_NAMES[network], len(train_ids), iterations
            )
            metrics = Experiment(
                config, data_dir, train_ids, test_ids, run_dir, resume=True, workers=values.workers
            ).run()
        all_metrics[NETWORK_NAMES[network]] = metrics
        curves[NETWORK_NAMES[network]] = list(metrics["ipe"].values())
    if "scn" in values.networks:
        run_dir = output / f"{ndim}d_seed{values.seed}" / "scn"
        source = LandmarkSource(
            demo_config(ndim, "scn", iterations, values.seed).data, data_dir, test_ids, values.workers, verbose=False
        )
        for name, metrics in component_analysis(run_dir, source, output / "heatmap_components.png").items():
            all_metrics[f"SCN {name} only"] = metrics
    for name, metrics in all_metrics.items():
        lines = summary_table(metrics, name).splitlines()
        rows.extend(lines if not rows else lines[2:])
    header = (
        f"Synthetic {ndim}D look-alike chains: {len(train_ids)} training, {len(test_ids)} test images, "
        f"{iterations} iterations, seed {values.seed}\n{geometry}\n\n"
    )
    write_text_atomic(output / "table.md", header + "\n".join(rows) + "\n")
    write_json_atomic(
        output / "metrics.json",
        {
            name: {k: m[k] for k in ("pe_median", "pe_mean", "pe_std", "outliers", "id_rate")}
            for name, m in all_metrics.items()
        },
    )
    plot_cumulative_ipe(output / "cumulative_ipe.png", curves)
    print(header + "\n".join(rows))
    print(f"\nplots: {output / 'cumulative_ipe.png'}, {output / 'heatmap_components.png'}; runs in {output}")
    return 0


run = command(main, define_flags, __doc__)

if __name__ == "__main__":
    sys.exit(run())
