"""Training-input throughput of the data pipeline (samples per second), source images already cached.

  python benchmarks/pipeline.py [--datasets skull2d,spine3d] [--workers 1,2] [--windows 20]

skull2d reads the real cephalograms in ../shared/data/isbi2015_ceph (skipped with a message where absent);
spine3d uses a generated CT-like 512x512x160 volume at 0.34x0.34x2.06 mm. The full preset augmentation is
used, SimpleITK limited to one thread per worker. The figure is the median over windows of consecutive
samples after warm-up.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from scn_tf.configs import preset  # noqa: E402
from scn_tf.data.pipeline import LandmarkSource, make_dataset  # noqa: E402

from ct_volume import ct_like_volume  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["skull2d", "spine3d"], "Presets to measure.")
flags.DEFINE_list("workers", ["1", "2"], "Parallel worker counts.")
flags.DEFINE_integer("windows", 20, "Windows measured after warm-up (the median is reported).")
flags.DEFINE_integer("window_size", 4, "Consecutive samples per window.")
flags.DEFINE_integer("warmup", 4, "Samples before measuring.")

CEPH = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2015_ceph"


def throughput(source, config, workers: int) -> float:
    dataset = make_dataset(source, config.augmentation, seed=0, workers=workers, sitk_threads=1)
    iterator = iter(dataset)
    for _ in range(FLAGS.warmup):
        next(iterator)
    rates = []
    for _ in range(FLAGS.windows):
        start = time.perf_counter()
        for _ in range(FLAGS.window_size):
            next(iterator)
        rates.append(FLAGS.window_size / (time.perf_counter() - start))
    return float(np.median(rates))


def main(argv):
    del argv
    print(f"machine: {os.cpu_count()} CPU cores; window {FLAGS.window_size} samples x {FLAGS.windows} windows")
    with tempfile.TemporaryDirectory() as scratch:
        for name in FLAGS.datasets:
            config = preset(name)
            if name == "skull2d":
                if not CEPH.exists():
                    print(f"skull2d: skipped, {CEPH} is absent")
                    continue
                data_dir, ids = CEPH, [f"{i:03d}" for i in range(1, 11)]
            elif name == "spine3d":
                data_dir, ids = Path(scratch) / "spine", ["ct"]
                ct_like_volume(data_dir)
            else:
                print(f"{name}: no benchmark data; skipped")
                continue
            start = time.perf_counter()
            source = LandmarkSource(config.data, data_dir, ids, verbose=False)
            print(f"{name}: cached {len(ids)} source image(s) in {time.perf_counter() - start:.1f} s")
            results = {}
            for workers in (int(w) for w in FLAGS.workers):
                results[workers] = throughput(source, config, workers)
                print(f"{name}: {workers} worker(s): {results[workers]:.2f} samples/s "
                      f"(input {'x'.join(map(str, config.data.image_size))})")
            if 1 in results and len(results) > 1:
                best = max(results)
                print(f"{name}: speed-up {best} vs 1 worker: {results[best] / results[1]:.2f}x")
            sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
