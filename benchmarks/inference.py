"""Whole-image inference time: a real cephalogram and a generated long CT volume, preprocessing included.

  python benchmarks/inference.py [--cases ceph_cpu,ceph_paper,ct_paper] [--repeats 3]

ceph_*: one real 1935x2400 JPEG of `--ceph_dir` (benchmarks/common.py; skipped with a message where absent),
read, smoothed, resampled into network space, run through the network and decoded. ct_paper: a generated
512x512x300 volume at 0.34x0.34x2 mm (benchmarks/ct_volume.py, written as .nii.gz first), covered by sliding
windows of the spine network's 192 slices, 64 apart, `--window_batch` windows per call. The network is
untrained: the time does not depend on the weights. Each figure is the median over `--repeats` runs after
one warm-up run, split into reading, preprocessing (smoothing), and prediction (resampling, network,
decoding); with the peak resident memory of the process.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags

from common import ceph_dir, define_ceph_dir_flag
from ct_volume import ct_like_volume, peak_rss_mb

FLAGS = flags.FLAGS
flags.DEFINE_list("cases", ["ceph_cpu", "ceph_paper", "ct_paper"], "Cases to measure.")
flags.DEFINE_integer("repeats", 3, "Timed runs per case (median reported).")
flags.DEFINE_integer("window_batch", 2, "Sliding windows per network call.")
define_ceph_dir_flag()

CASES = {"ceph_cpu": "skull2d_cpu", "ceph_paper": "skull2d", "ct_paper": "spine3d"}


def main(argv):
    del argv
    import keras

    from scn_tf.configs import preset
    from scn_tf.data.io import read_image
    from scn_tf.data.preprocessing import prepare_source
    from scn_tf.experiment import probe_input_shape
    from scn_tf.inference import Predictor, window_starts
    from scn_tf.models import build_model

    print(f"{os.cpu_count()} CPU cores; median of {FLAGS.repeats} runs after a warm-up run", flush=True)
    print("| case | image | network input | windows | read | preprocess | predict | total | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    scratch = Path(tempfile.mkdtemp(prefix="scn_inference_"))
    for case in FLAGS.cases:
        if case not in CASES:
            sys.exit(f"unknown case {case!r}; known: {sorted(CASES)}")
        config = preset(CASES[case])
        data = config.data
        if case.startswith("ceph"):
            path = ceph_dir() / "images" / "151.jpg"
            if not path.exists():
                print(f"| {case} | skipped: {path} absent |", flush=True)
                continue
        else:
            path = scratch / "images" / "ct.nii.gz"
            if not path.exists():
                ct_like_volume(scratch, size=(512, 512, 300), spacing=(0.34, 0.34, 2.0))
        model = build_model(config.network, data)
        model(np.zeros(probe_input_shape(model), np.float32))
        predictor = Predictor(model, data, np.full(data.num_landmarks, 2.0), batch_size=FLAGS.window_batch)
        keras.utils.disable_interactive_logging()
        times = []
        for run in range(FLAGS.repeats + 1):
            start = time.perf_counter()
            image = read_image(path, data.ndim, data.image_spacing)
            read = time.perf_counter()
            prepared = prepare_source(image, data.smoothing_sigma)
            prepare = time.perf_counter()
            predictor.predict_prepared(prepared)
            end = time.perf_counter()
            if run:
                times.append((read - start, prepare - read, end - prepare, end - start))
        read, prepare, predict, total = np.median(np.array(times), axis=0)
        geometry = predictor.transform(prepared).geometry
        windows = (
            len(window_starts(int(geometry.size[2]), data.image_size[2], data.window_step)) if data.ndim == 3 else 1
        )
        peak = peak_rss_mb()
        print(
            f"| {case} | {'x'.join(map(str, image.GetSize()))} | {'x'.join(map(str, geometry.size))} | {windows} | "
            f"{read:.2f} s | {prepare:.2f} s | {predict:.2f} s | {total:.2f} s | {peak:.0f} MB |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    app.run(main)
