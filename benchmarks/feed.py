"""Throughput of the process-pool feed (scn_tf.data.feed: the JAX backend's input) on the paper-size
cephalogram preset, and the workers it takes to keep a GPU training step fed.

  python benchmarks/feed.py [--workers 1,2] [--samples 40] [--step_ms 9.2] [--ids 20]

The real cephalograms of --ceph_dir (skipped with a message where absent), the skull2d preset (512x512,
full augmentation), batch 1. Printed: `make_sample` in this process (one SimpleITK thread) for reference,
then per worker count the feed's samples/s after a warm-up of two samples per worker (the workers' start and
first samples excluded), samples/s per worker, and the workers a step of --step_ms milliseconds needs
(default: the paper-size step on an H200 under JAX, benchmarks/model_step_jax.py).
"""

from __future__ import annotations

import math
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags

from common import ceph_dir, define_ceph_dir_flag
from scn_tf.configs import preset
from scn_tf.data.feed import ProcessFeed
from scn_tf.data.pipeline import LandmarkSource, make_sample, sample_order

FLAGS = flags.FLAGS
flags.DEFINE_list("workers", ["1", "2"], "Worker counts.")
flags.DEFINE_integer("samples", 40, "Timed samples per worker count.")
flags.DEFINE_float("step_ms", 9.2, "Training step to feed (ms per batch of one).")
flags.DEFINE_integer("ids", 20, "Training images cached (001...).")
define_ceph_dir_flag()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            names = [line.split(":", 1)[1].strip() for line in file if line.startswith("model name")]
        return names[0] if names else platform.processor()
    except OSError:
        return platform.processor()


def main(argv):
    del argv
    data_dir = ceph_dir()
    if not data_dir.exists():
        print(f"skipped: {data_dir} is absent")
        return 0
    config = preset("skull2d")
    ids = [f"{i:03d}" for i in range(1, FLAGS.ids + 1)]
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; skull2d preset, {len(ids)} images, batch 1")
    source = LandmarkSource(config.data, data_dir, ids, verbose=False)
    count = FLAGS.samples
    start = time.perf_counter()
    for index in range(count):
        position, rng = sample_order(len(ids), config.training.seed, index, True)
        make_sample(source, ids[position], config.augmentation, rng, sitk_threads=1)
    in_process = count / (time.perf_counter() - start)
    print(f"make_sample in this process: {in_process:.1f} samples/s")
    needed = 1000 / FLAGS.step_ms
    print(f"| workers | samples/s | per worker | workers for a {FLAGS.step_ms:g} ms step ({needed:.0f} samples/s) |")
    print("|---|---|---|---|")
    for workers in map(int, FLAGS.workers):
        with ProcessFeed(source, config.augmentation, config.training.seed, 1, workers=workers) as feed:
            stream = feed.batches()
            for _ in range(2 * workers):
                next(stream)
            start = time.perf_counter()
            shapes = {next(stream)[0].shape for _ in range(count)}
            rate = count / (time.perf_counter() - start)
        assert shapes == {(1, 512, 512, 1)}, shapes
        per_worker = rate / workers
        print(f"| {workers} | {rate:.1f} | {per_worker:.1f} | {math.ceil(needed / per_worker)} |", flush=True)
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    app.run(main)
