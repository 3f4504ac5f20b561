"""One 3x3 convolution's forward pass and both gradients on this CPU, TensorFlow's kernels against ours.

  TF_ENABLE_ONEDNN_OPTS=1 python benchmarks/conv_gradients.py   # oneDNN kernels
  TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/conv_gradients.py   # TensorFlow's own (Eigen) kernels

For the shapes of the ISBI CPU preset's first level, the 256x256 64-filter SCN and the small 3D SCN: the
median time of the forward convolution, of the gradient with respect to the input (Conv*BackpropInput) and
with respect to the kernel, once by TensorFlow's Conv*BackpropFilter and once as scn_tf.models.layers
computes it for 2D 3x3 kernels (one matrix product per tap), and the largest relative difference between
the two kernel gradients. This is the measurement behind MATMUL_KERNEL_GRADIENT_MAX_TAPS.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from absl import app, flags

from common import median_seconds
from scn_tf.models.layers import convolution

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 10, "Timed calls per figure (median reported); 3D shapes use a third.")

SHAPES = {
    "ISBI CPU preset, level 1": (160, 128, 32),
    "2D SCN 256x256, level 1": (256, 256, 64),
    "3D SCN 64x64x128, level 1": (128, 64, 64, 32),
}


def candidates(x: tf.Tensor, upstream: tf.Tensor, kernel: tf.Tensor) -> tuple:
    """The forward convolution, TensorFlow's input and kernel gradients, and ours (matmul per tap)."""
    ndim = x.shape.rank - 2
    strides = [1] * (ndim + 2)
    conv = tf.nn.conv2d if ndim == 2 else tf.nn.conv3d
    input_gradient = tf.raw_ops.Conv2DBackpropInput if ndim == 2 else tf.raw_ops.Conv3DBackpropInputV2
    kernel_gradient = tf.raw_ops.Conv2DBackpropFilter if ndim == 2 else tf.raw_ops.Conv3DBackpropFilterV2

    @tf.function
    def forward():
        return conv(x, kernel, strides, "SAME")

    @tf.function
    def tf_input_gradient():
        return input_gradient(
            input_sizes=tf.shape(x), filter=kernel, out_backprop=upstream, strides=strides, padding="SAME"
        )

    @tf.function
    def tf_kernel_gradient():
        return kernel_gradient(
            input=x, filter_sizes=tf.shape(kernel), out_backprop=upstream, strides=strides, padding="SAME"
        )

    @tf.function
    def matmul_kernel_gradient():
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            y = convolution(x, kernel, "same")
        return tape.gradient(y, kernel, output_gradients=upstream)

    return forward, tf_input_gradient, tf_kernel_gradient, matmul_kernel_gradient


def main(argv):
    del argv
    print(f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(unset)')}; {os.cpu_count()} CPU cores")
    print(
        "| shape | forward | input gradient | kernel gradient (TensorFlow) | kernel gradient (matmul per tap) | "
        "max relative difference |"
    )
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for name, (*spatial, channels) in SHAPES.items():
        ndim = len(spatial)
        x = tf.constant(rng.normal(size=(1, *spatial, channels)), tf.float32)
        upstream = tf.constant(rng.normal(size=(1, *spatial, channels)), tf.float32)
        kernel = tf.constant(rng.normal(size=(3,) * ndim + (channels, channels)) * 0.1, tf.float32)
        forward, tf_input_gradient, tf_kernel_gradient, matmul_kernel_gradient = candidates(x, upstream, kernel)
        repeats = FLAGS.repeats if ndim == 2 else max(3, FLAGS.repeats // 3)
        reference = tf_kernel_gradient().numpy()
        difference = np.abs(matmul_kernel_gradient().numpy() - reference).max() / np.abs(reference).max()
        figures = [
            1e3 * median_seconds(f, repeats, warmup=1, wait=lambda result: result.numpy())
            for f in (forward, tf_input_gradient, tf_kernel_gradient, matmul_kernel_gradient)
        ]
        print(
            f"| {name} ({'x'.join(map(str, spatial))}x{channels}) | "
            + " | ".join(f"{ms:.1f} ms" for ms in figures)
            + f" | {difference:.1e} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    app.run(main)
