"""Training-step speed against the hardware and against the input pipeline, per configuration.

  python benchmarks/train_step.py [--configs skull2d_cpu,skull2d_256,skull2d_paper,spine3d_small,spine3d_paper]
                                  [--steps 20] [--paper_steps 5]

For each configuration, in a process of its own (so that its peak memory is its own): the median time of a
training step on a cached batch after warm-up, images per second, the analytic forward + backward FLOPs of
the network (scn_tf.models.flops: 3 x 2 x convolution MACs) and the FLOP/s achieved, the peak resident
memory of the process, the input pipeline's samples per second on its own, and, for configurations that
step in under a second, the steps per second when the real pipeline feeds the step (and their ratio to
the cached-batch figure). skull2d reads the real cephalograms of `--ceph_dir` (benchmarks/common.py; the pipeline
figures are skipped with a message where absent); spine3d uses a generated 512x512x160 CT-like volume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

from common import ceph_dir, define_ceph_dir_flag, median_seconds
from ct_volume import ct_like_volume, peak_rss_mb

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "configs",
    ["skull2d_cpu", "skull2d_256", "skull2d_paper", "spine3d_small", "spine3d_paper"],
    "Configurations to measure.",
)
flags.DEFINE_integer("steps", 20, "Timed steps for configurations under a second per step.")
flags.DEFINE_integer("paper_steps", 5, "Timed steps for slower configurations (at least 5).")
flags.DEFINE_integer("warmup", 3, "Untimed steps first (tracing, allocation).")
flags.DEFINE_integer("workers", 2, "Input pipeline workers.")
flags.DEFINE_string("one", None, "Internal: measure this configuration and print one JSON line.")
define_ceph_dir_flag()

# name: (preset, overrides, description)
CONFIGS = {
    "skull2d_cpu": ("skull2d_cpu", {}, "ISBI CPU configuration (128x160, 32 filters)"),
    "skull2d_256": (
        "skull2d",
        {"data": {"image_size": [256, 256], "spacing": [0.9375, 0.9375]}, "network": {"filters": 64}},
        "2D SCN 256x256, 64 filters",
    ),
    "skull2d_paper": ("skull2d", {}, "cephalogram paper size (512x512, 128 filters)"),
    "spine3d_small": (
        "spine3d",
        {"data": {"image_size": [64, 64, 128], "spacing": [3.0, 3.0, 3.0]}, "network": {"filters": 32}},
        "3D SCN 64x64x128, 32 filters",
    ),
    "spine3d_paper": ("spine3d", {}, "spine paper size (96x96x192, 64 filters)"),
}


def source_for(config, root: Path):
    """Cached training images for the pipeline figures, or (None, reason)."""
    from scn_tf.data.pipeline import LandmarkSource

    if config.data.name.startswith("skull2d"):
        if not ceph_dir().exists():
            return None, f"{ceph_dir()} absent"
        return LandmarkSource(
            config.data, ceph_dir(), [f"{i:03d}" for i in range(1, 21)], FLAGS.workers, verbose=False
        ), ""
    ct_like_volume(root)
    return LandmarkSource(config.data, root, ["ct"], FLAGS.workers, verbose=False), ""


def measure(name: str) -> dict:
    import numpy as np
    import tensorflow as tf

    from scn_tf.configs import preset
    from scn_tf.data.pipeline import make_dataset
    from scn_tf.models import build_model, count_trainable_weights
    from scn_tf.models.flops import training_flops
    from scn_tf.training import Trainer

    preset_name, overrides, description = CONFIGS[name]
    config = preset(preset_name).updated(overrides)
    data = config.data
    shape = (config.training.batch_size, *reversed(data.image_size), 1)
    baseline_mb = peak_rss_mb()
    root = Path(tempfile.mkdtemp(prefix="scn_step_"))
    model = build_model(config.network, data)
    trainer = Trainer(model, data.num_landmarks, config.training, root / "run")
    trainer.build(shape)
    flops = training_flops(model, shape)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=shape).astype(np.float32))
    coords = tf.constant(
        rng.uniform(8, min(data.image_size) - 8, size=(shape[0], data.num_landmarks, data.ndim)).astype(np.float32)
    )
    valid = tf.ones((shape[0], data.num_landmarks), tf.bool)

    def cached_step():
        float(trainer.train_step(images, coords, valid)["loss"])

    for _ in range(FLAGS.warmup):
        cached_step()
    slow = median_seconds(cached_step, 1) > 1.0
    result = dict(
        name=name,
        description=description,
        input="x".join(map(str, data.image_size)),
        filters=model.get_config()["filters"],
        weights=count_trainable_weights(model, shape),
        gflop_per_step=flops / 1e9,
    )
    source, reason = source_for(config, root)
    iterator = None

    def fed_step():
        float(trainer.train_step(*next(iterator))["loss"])

    if source is not None:
        dataset = make_dataset(
            source, config.augmentation, seed=0, batch_size=shape[0], workers=FLAGS.workers, sitk_threads=1
        )
        iterator = iter(dataset)
        for _ in range(FLAGS.warmup):
            next(iterator)
        samples = 4 if data.ndim == 3 else 40
        result["pipeline_samples_per_s"] = shape[0] / median_seconds(lambda: next(iterator), samples)
    else:
        result["pipeline"] = f"skipped: {reason}"
    if slow or iterator is None:
        cached = [median_seconds(cached_step, FLAGS.paper_steps if slow else FLAGS.steps)]
    else:  # alternate windows, so that both figures see the same machine state
        cached, fed = [], []
        for _ in range(4):
            cached.append(median_seconds(cached_step, FLAGS.steps // 2))
            fed.append(median_seconds(fed_step, FLAGS.steps // 2))
        result["fed_step_s"] = float(np.median(fed))
        result["fed_vs_cached"] = float(np.median(cached) / np.median(fed))
    step = float(np.median(cached))
    result.update(
        step_s=step,
        images_per_s=shape[0] / step,
        gflops_per_s=flops / step / 1e9,
        peak_rss_mb=peak_rss_mb(),
        baseline_rss_mb=baseline_mb,
        retraces=trainer.train_step.experimental_get_tracing_count(),
    )
    return result


def main(argv):
    del argv
    if FLAGS.one:
        print(json.dumps(measure(FLAGS.one)), flush=True)
        return 0
    unknown = [name for name in FLAGS.configs if name not in CONFIGS]
    if unknown:
        sys.exit(f"unknown configuration(s) {unknown}; known: {sorted(CONFIGS)}")
    print(f"{os.cpu_count()} CPU cores; medians after {FLAGS.warmup} warm-up steps", flush=True)
    header = (
        "| configuration | input | filters | weights | step | images/s | GFLOP/step | GFLOP/s | peak RSS | "
        "pipeline samples/s | pipeline-fed step (vs cached) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in FLAGS.configs:
        command = [
            sys.executable,
            __file__,
            f"--one={name}",
            f"--steps={FLAGS.steps}",
            f"--paper_steps={FLAGS.paper_steps}",
            f"--warmup={FLAGS.warmup}",
            f"--workers={FLAGS.workers}",
            f"--ceph_dir={FLAGS.ceph_dir}",
        ]
        completed = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
        if completed.returncode != 0 or not lines:
            print(f"| {name} | failed: {completed.stderr.strip().splitlines()[-1:]} |", flush=True)
            continue
        r = json.loads(lines[-1])
        pipeline = f"{r['pipeline_samples_per_s']:.1f}" if "pipeline_samples_per_s" in r else r["pipeline"]
        fed = f"{r['fed_step_s'] * 1e3:.0f} ms ({100 * r['fed_vs_cached']:.0f}%)" if "fed_step_s" in r else "-"
        print(
            f"| {r['description']} | {r['input']} | {r['filters']} | {r['weights']:,} | {r['step_s'] * 1e3:.0f} ms | "
            f"{r['images_per_s']:.2f} | {r['gflop_per_step']:.1f} | {r['gflops_per_s']:.1f} | "
            f"{r['peak_rss_mb']:.0f} MB | {pipeline} | {fed} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    app.run(main)
