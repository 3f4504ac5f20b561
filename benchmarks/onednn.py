"""TensorFlow's CPU kernels, oneDNN's against its own (Eigen), per network size: the measurement behind
scn_tf.cpu_kernels.onednn_setting.

  python benchmarks/onednn.py [--configs 2d_32,2d_64,2d_128,2d_paper,3d_32] [--steps 5] [--timeout 90]

Each configuration runs once per setting in a process of its own (TensorFlow reads TF_ENABLE_ONEDNN_OPTS
once, when it loads): oneDNN off, oneDNN on, and, on an AVX-512 CPU, oneDNN on limited to its AVX2 kernels
(ONEDNN_MAX_CPU_ISA=AVX2, what an AVX2-only CPU runs; TensorFlow's own kernels do not use AVX-512 in the
released wheels, so "off" stands for both). Reported: the median forward pass of one image (inference) and,
where asked, the median training step on a cached batch, after warm-up; a run past --timeout reports "> T s".
The CPU's model and instruction sets are printed above the table, and the rule's choice beside each row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags

from common import median_seconds
from scn_tf.configs import preset
from scn_tf.cpu_kernels import cpu_description, onednn_setting

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["2d_32", "2d_64", "2d_128", "2d_paper", "3d_32"], "Configurations to measure.")
flags.DEFINE_integer("steps", 5, "Timed training steps (after 2 warm-up steps) where the configuration trains.")
flags.DEFINE_integer("repeats", 3, "Timed forward passes (after 1 warm-up).")
flags.DEFINE_integer("timeout", 90, "Seconds per configuration and setting.")
flags.DEFINE_string("one", None, "Internal: measure this configuration and print one JSON line.")

# name: (preset, overrides, description, whether the training step is timed too)
CONFIGS = {
    "2d_32": ("skull2d_cpu", {}, "2D 128x160, 32 filters (ISBI CPU preset)", True),
    "2d_64": (
        "skull2d",
        {"data": {"image_size": [256, 256], "spacing": None}, "network": {"filters": 64}},
        "2D 256x256, 64 filters",
        True,
    ),
    "2d_128": (
        "skull2d",
        {"data": {"image_size": [128, 128], "spacing": None}, "network": {"filters": 128}},
        "2D 128x128, 128 filters",
        True,
    ),
    "2d_paper": ("skull2d", {"data": {"spacing": None}}, "2D 512x512, 128 filters (paper size)", False),
    "3d_32": (
        "spine3d",
        {"data": {"image_size": [32, 32, 64], "spacing": None}, "network": {"filters": 32}},
        "3D 32x32x64, 32 filters",
        True,
    ),
}
SETTINGS = {"off": {"TF_ENABLE_ONEDNN_OPTS": "0"}, "on": {"TF_ENABLE_ONEDNN_OPTS": "1"}}
AVX2_ONLY = {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def measure(name: str) -> dict:
    import numpy as np
    import tensorflow as tf

    from scn_tf.models import build_model
    from scn_tf.training import Trainer

    preset_name, overrides, _, trains = CONFIGS[name]
    config = preset(preset_name).updated(overrides)
    data = config.data
    shape = (1, *reversed(data.image_size), 1)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=shape).astype(np.float32))
    model = build_model(config.network, data)
    forward = tf.function(lambda x: model(x, training=False))
    result = {"forward_s": median_seconds(lambda: forward(images).numpy(), FLAGS.repeats, warmup=1)}
    if trains:
        trainer = Trainer(model, data.num_landmarks, config.training, tempfile.mkdtemp(prefix="scn_onednn_"))
        trainer.build(shape)
        coords = tf.constant(
            rng.uniform(8, min(data.image_size) - 8, size=(1, data.num_landmarks, data.ndim)).astype(np.float32)
        )
        valid = tf.ones((1, data.num_landmarks), tf.bool)
        result["step_s"] = median_seconds(
            lambda: float(trainer.train_step(images, coords, valid)["loss"]), FLAGS.steps, warmup=2
        )
    return result


def run_one(name: str, environment: dict) -> dict | str:
    """The figures of one configuration under `environment`, or why there are none."""
    command = [sys.executable, __file__, f"--one={name}", f"--steps={FLAGS.steps}", f"--repeats={FLAGS.repeats}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **environment}
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=FLAGS.timeout, env=env)
    except subprocess.TimeoutExpired:
        return f"> {FLAGS.timeout} s"
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        return f"failed: {completed.stderr.strip().splitlines()[-1:]}"
    return json.loads(lines[-1])


def cell(result: dict | str, key: str, trains: bool) -> str:
    if key == "step_s" and not trains:
        return "-"
    return result if isinstance(result, str) else f"{result[key]:.3g} s"


def main(argv):
    del argv
    if FLAGS.one:
        print(json.dumps(measure(FLAGS.one)), flush=True)
        return 0
    unknown = [name for name in FLAGS.configs if name not in CONFIGS]
    if unknown:
        sys.exit(f"unknown configuration(s) {unknown}; known: {sorted(CONFIGS)}")
    vendor, model, cpu_flags = cpu_description()
    shown = sorted(cpu_flags & {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile"})
    print(f"{vendor} {model}; {os.cpu_count()} CPU cores; {' '.join(shown)}", flush=True)
    settings = dict(SETTINGS, **({"on, AVX2 kernels": AVX2_ONLY} if "avx512f" in cpu_flags else {}))
    columns = [f"{kind} ({setting})" for setting in settings for kind in ("forward", "step")]
    print("| configuration | " + " | ".join(columns) + " | rule here | rule on AVX2 |")
    print("|" + "---|" * (len(columns) + 3))
    for name in FLAGS.configs:
        preset_name, overrides, description, trains = CONFIGS[name]
        config = preset(preset_name).updated(overrides)
        filters = config.network.resolved(config.data.ndim)["filters"]
        results = [run_one(name, environment) for environment in settings.values()]
        cells = [cell(result, key, trains) for result in results for key in ("forward_s", "step_s")]
        here = onednn_setting(config.data.ndim, filters, cpu_flags)[0]
        avx2 = onednn_setting(config.data.ndim, filters, {"avx2"})[0]
        print(f"| {description} | " + " | ".join(cells) + f" | {here} | {avx2} |", flush=True)
    return 0


if __name__ == "__main__":
    app.run(main)
