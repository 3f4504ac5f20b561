"""Training-input throughput of the data pipeline (samples per second), source images already cached.

  python benchmarks/pipeline.py [--datasets skull2d,spine3d] [--workers 1,2] [--windows 20]
      [--resampling exact,field] [--step_ms skull2d=5.5,spine3d=45.7]

skull2d reads the real cephalograms of `--ceph_dir` (benchmarks/common.py; skipped with a message
where absent); spine3d uses a generated CT-like 512x512x160 volume at 0.34x0.34x2.06 mm. The full preset
augmentation is used, SimpleITK limited to one thread per worker. Each window is a fresh pipeline started
at its own sample index (warm-up samples, then the window's samples timed); the resampling methods take
turns window by window on the same samples, so that a busy machine slows both alike, and the ratio is the
median of the paired windows' ratios. The rate and the process's CPU seconds per sample are medians over
windows. The cores needed to feed a training step of `--step_ms` milliseconds (batch 1; defaults: the
measured H200 bf16 steps of the paper-size networks) are given from the rate per worker and from the CPU
time per sample of the largest worker count (the latter holds on a machine shared with other work).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags

from common import ceph_dir, define_ceph_dir_flag
from ct_volume import ct_like_volume
from scn_tf.configs import preset
from scn_tf.data.pipeline import LandmarkSource, make_dataset
from scn_tf.data.resampling import METHODS

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["skull2d", "spine3d"], "Presets to measure.")
flags.DEFINE_list("workers", ["1", "2"], "Parallel worker counts.")
flags.DEFINE_integer("windows", 20, "Windows measured per method (the median is reported).")
flags.DEFINE_integer("window_size", 4, "Consecutive samples per window.")
flags.DEFINE_integer("warmup", 4, "Samples before measuring, in each window.")
flags.DEFINE_list("resampling", ["exact", "field"], "Resampling methods (data.resampling), alternating windows.")
flags.DEFINE_list(
    "step_ms",
    ["skull2d=5.5", "spine3d=45.7"],
    "Training step times to feed, preset=ms (a bare number applies to every preset).",
)
define_ceph_dir_flag()


def step_times() -> dict[str, float]:
    """--step_ms as {preset: ms}; a bare number under the key '*'."""
    result = {}
    for entry in FLAGS.step_ms:
        name, _, value = entry.rpartition("=")
        try:
            result[name or "*"] = float(value)
        except ValueError:
            raise app.UsageError(f"--step_ms: {entry!r} is not preset=milliseconds or milliseconds") from None
    return result


def window_rate(source: LandmarkSource, config, workers: int, window: int) -> tuple[float, float]:
    """Samples per second of one window (a fresh pipeline from this window's first sample, warmed up) and the
    process's CPU seconds per sample in it (what a sample costs, however busy the machine)."""
    start = window * (FLAGS.warmup + FLAGS.window_size)
    iterator = iter(
        make_dataset(source, config.augmentation, seed=0, start_step=start, workers=workers, sitk_threads=1)
    )
    for _ in range(FLAGS.warmup):
        next(iterator)
    begin, cpu = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.window_size):
        next(iterator)
    rate = FLAGS.window_size / (time.perf_counter() - begin)
    cpu = (time.process_time() - cpu) / FLAGS.window_size
    del iterator  # waits for the samples in flight, before the next window starts
    return rate, cpu


def measure(name: str, config, source: LandmarkSource, steps: dict[str, float]) -> None:
    methods = FLAGS.resampling
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise app.UsageError(f"--resampling: unknown method(s) {sorted(unknown)}; choose from {METHODS}")
    sources = {}
    for method in methods:
        sources[method] = copy.copy(source)
        sources[method].data = dataclasses.replace(source.data, resampling=method)
    size = "x".join(map(str, config.data.image_size))
    results, cpu = {}, {}
    for workers in (int(w) for w in FLAGS.workers):
        rates = {method: [] for method in methods}
        cpus = {method: [] for method in methods}
        for window in range(FLAGS.windows):
            for method in methods:
                rate, seconds = window_rate(sources[method], config, workers, window)
                rates[method].append(rate)
                cpus[method].append(seconds)
        for method in methods:
            results[method, workers] = float(np.median(rates[method]))
            cpu[method, workers] = float(np.median(cpus[method]))
            print(
                f"{name}: {workers} worker(s): {results[method, workers]:.2f} samples/s "
                f"(input {size}, {method} resampling; {cpu[method, workers]:.3f} CPU s per sample)"
            )
        if len(methods) > 1:
            ratio = np.median(np.array(rates[methods[-1]]) / np.array(rates[methods[0]]))
            cpu_ratio = np.median(np.array(cpus[methods[0]]) / np.array(cpus[methods[-1]]))
            print(
                f"{name}: {workers} worker(s): {methods[-1]}/{methods[0]} {ratio:.2f}x samples/s, "
                f"{cpu_ratio:.2f}x less CPU per sample (medians of {FLAGS.windows} paired windows)"
            )
        sys.stdout.flush()
    counts = sorted({workers for _, workers in results})
    step_ms = steps.get(name, steps.get("*"))
    for method in methods:
        if 1 in counts and len(counts) > 1:
            print(
                f"{name}: speed-up {counts[-1]} vs 1 worker: "
                f"{results[method, counts[-1]] / results[method, 1]:.2f}x ({method})"
            )
        if step_ms:
            needed = 1000 / step_ms
            per_core = results[method, counts[-1]] / counts[-1]
            print(
                f"{name}: a {step_ms:g} ms step needs {needed:.1f} samples/s: {needed / per_core:.1f} cores "
                f"at {per_core:.2f} samples/s per worker, {needed * cpu[method, counts[-1]]:.1f} cores by CPU "
                f"time per sample ({method}, {counts[-1]} worker(s))"
            )


def main(argv):
    del argv
    steps = step_times()
    print(
        f"machine: {os.cpu_count()} CPU cores; {FLAGS.windows} windows of {FLAGS.window_size} samples "
        f"after {FLAGS.warmup} warm-up samples"
    )
    with tempfile.TemporaryDirectory() as scratch:
        for name in FLAGS.datasets:
            config = preset(name)
            if name == "skull2d":
                ceph = ceph_dir()
                if not ceph.exists():
                    print(f"skull2d: skipped, {ceph} is absent")
                    continue
                data_dir, ids = ceph, [f"{i:03d}" for i in range(1, 11)]
            elif name == "spine3d":
                data_dir, ids = Path(scratch) / "spine", ["ct"]
                ct_like_volume(data_dir)
            else:
                print(f"{name}: no benchmark data; skipped")
                continue
            start = time.perf_counter()
            source = LandmarkSource(config.data, data_dir, ids, verbose=False)
            print(f"{name}: cached {len(ids)} source image(s) in {time.perf_counter() - start:.1f} s")
            measure(name, config, source, steps)
            sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
