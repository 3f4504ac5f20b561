"""The exported ONNX model's inference time beside scn-predict's, at the ISBI CPU preset's size.

  python benchmarks/export.py [--repeats 10] [--ceph_dir DIR]

An untrained skull2d_cpu model (128x160 input, 32 filters; the time does not depend on the weights) is written
as a model folder and exported by scn-export. Timed, as medians over `--repeats` runs after two warm-up runs:
the network alone on one input (Keras' predict_on_batch against onnxruntime), and one whole 1935x2400
cephalogram of `--ceph_dir` (benchmarks/common.py; else a generated image of that size) read, smoothed,
resampled, run and decoded (scn_tf.inference.Predictor, what scn-predict runs per image, against
examples/onnx_predict.py's load and predict: onnxruntime's threads do not spin-wait, which on 2 cores would
take the smoothing's time); then both commands once on that image, start-up included. Printed
beside them: the export's duration and the parity of heatmaps and landmarks.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags

from common import ceph_dir, define_ceph_dir_flag, median_seconds

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 10, "Timed runs per figure (median reported).")
define_ceph_dir_flag()

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "onnx_predict.py"


def load_example():
    spec = importlib.util.spec_from_file_location("onnx_predict", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cephalogram(folder: Path) -> Path:
    """The first ISBI cephalogram, or a generated 1935x2400 8-bit image where the data is absent."""
    images = sorted((ceph_dir() / "images").glob("*.jpg"))
    if images:
        return images[0]
    import SimpleITK as sitk

    print(f"no cephalograms in {ceph_dir()}: a generated 1935x2400 image instead")
    array = np.random.default_rng(0).integers(0, 256, (2400, 1935), np.uint8)
    path = folder / "generated.png"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def wall_seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - start


def main(argv):
    del argv
    import keras

    from scn_tf.cli import export
    from scn_tf.configs import preset
    from scn_tf.data.io import read_image
    from scn_tf.files import write_json_atomic
    from scn_tf.inference import Predictor
    from scn_tf.model_dir import load_model_dir, write_model_files
    from scn_tf.models import build_model

    example = load_example()
    config = preset("skull2d_cpu")
    data = config.data
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        run, out = folder / "run", folder / "onnx"
        keras.utils.set_random_seed(0)
        model = build_model(config.network, data)
        model(np.zeros((1, *reversed(data.image_size), 1), np.float32))
        write_model_files(run, config)
        model.save_weights(run / "last.weights.h5")
        write_json_atomic(run / "sigmas.json", {"step": 0, "sigmas": [2.0] * data.num_landmarks})
        start = time.perf_counter()
        assert export.run(["scn-export", "--model_dir", str(run), "--output_dir", str(out)]) == 0
        export_seconds = time.perf_counter() - start

        _, model, sigmas, _ = load_model_dir(run)
        predictor = Predictor(model, data, sigmas)
        session, settings = example.load(str(out))
        network_input = np.random.default_rng(0).normal(size=(1, *reversed(data.image_size), 1)).astype(np.float32)
        path = cephalogram(folder)
        repeats = FLAGS.repeats

        keras_network = median_seconds(lambda: model.predict_on_batch(network_input), repeats, warmup=2)
        onnx_network = median_seconds(lambda: session.run(["heatmaps"], {"image": network_input}), repeats, warmup=2)
        keras_image = median_seconds(
            lambda: predictor.predict_image(read_image(path, 2, data.image_spacing)), repeats, warmup=2
        )
        onnx_image = median_seconds(lambda: example.predict(str(path), session, settings), repeats, warmup=2)

        expected = np.asarray(model.predict_on_batch(network_input))
        (heatmaps,) = session.run(["heatmaps"], {"image": network_input})
        heatmap_difference = np.abs(heatmaps - expected).max() / np.abs(expected).max()
        prediction = predictor.predict_image(read_image(path, 2, data.image_spacing))
        landmarks = example.predict(str(path), session, settings)
        spacing = np.asarray(data.image_spacing or [1.0, 1.0]) if data.landmark_units == "mm" else 1.0
        pixel_difference = np.abs(landmarks - prediction.in_units(data.landmark_units)) / spacing

        keras_command = wall_seconds(
            [sys.executable, "-m", "scn_tf.cli.predict", "--model_dir", str(run), "--output", str(folder / "p.csv")]
            + [str(path)]
        )
        onnx_command = wall_seconds([sys.executable, str(EXAMPLE), str(out), str(path)])

    print(f"{os.cpu_count()} CPU cores; median of {repeats} runs after 2 warm-up runs; {path.name}")
    print(f"export: {export_seconds:.1f} s")
    print(f"network, one 160x128 input: Keras {1000 * keras_network:.1f} ms, onnxruntime {1000 * onnx_network:.1f} ms")
    print(f"whole image: scn_tf Predictor {1000 * keras_image:.0f} ms, onnx_predict.py {1000 * onnx_image:.0f} ms")
    print(f"command, start-up included: scn-predict {keras_command:.1f} s, onnx_predict.py {onnx_command:.1f} s")
    print(f"parity: heatmaps max |difference| {heatmap_difference:.1e} of the maximum; ", end="")
    print(f"landmarks max {pixel_difference.max():.2e} px, mean {pixel_difference.mean():.2e} px")


if __name__ == "__main__":
    app.run(main)
