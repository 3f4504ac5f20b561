"""Forward + backward + SGD step of the paper-size networks under Keras' JAX backend (GPU machines without
TensorFlow), timed against the analytic FLOPs.

  python benchmarks/model_step_jax.py [--configs skull2d_paper,spine3d_paper] [--steps 50] [--precision float32]

The models use only Keras layers and keras.ops, so the very classes trained by scn_tf's TensorFlow loop
run here unchanged, and so does the training step's arithmetic (scn_tf/training/step.py: the Gaussian targets from
learnable sigmas, the loss of eq. (2) with weight decay, clipping by global norm, the non-finite skip): the
network with dropout, gradients for weights and sigmas, SGD with Nesterov momentum; compiled once with
jax.jit. Printed: median step time after warm-up, images per second, analytic GFLOP per step (3 x 2 x
convolution MACs) and the achieved TFLOP/s, peak device memory, and the extrapolated time of the paper's
iterations (30,000 cephalogram, 40,000 spine).
"""

from __future__ import annotations

import os
import subprocess
import sys

os.environ["KERAS_BACKEND"] = "jax"

import jax
import keras
import numpy as np
from absl import app, flags

from common import median_seconds
from scn_tf.configs import preset
from scn_tf.models import build_model
from scn_tf.models.flops import training_flops
from scn_tf.training.step import clipped_gradients, keep_if_finite, loss_terms

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["skull2d_paper", "spine3d_paper"], "Configurations to time ('tiny': a smoke test).")
flags.DEFINE_integer("steps", 50, "Timed steps.")
flags.DEFINE_integer("warmup", 5, "Untimed steps first (compilation).")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"], "Keras dtype policy.")
flags.DEFINE_integer("batch_size", 1, "Images per step.")
flags.DEFINE_bool("one", False, "Internal: measure the single configuration given, in this process.")

CONFIGS = {
    "skull2d_paper": ("skull2d", {}),
    "skull2d_cpu": ("skull2d_cpu", {}),
    "spine3d_paper": ("spine3d", {}),
    "tiny": ("skull2d", {"data": {"image_size": [64, 64]}, "network": {"filters": 8, "spatial_downsampling": 8}}),
}


def make_step(model, config):
    """A jitted (state, batch) -> (state, loss) training step over Keras' stateless API."""
    training = config.training
    if training.optimizer == "adam":
        optimizer = keras.optimizers.Adam(training.learning_rate)
    else:
        optimizer = keras.optimizers.SGD(training.learning_rate, momentum=training.momentum, nesterov=True)
    sigmas = keras.Variable(np.full(config.data.num_landmarks, training.sigma_init, np.float32), name="sigmas")
    variables = list(model.trainable_variables) + [sigmas]
    optimizer.build(variables)
    kernels = [index for index, variable in enumerate(model.trainable_variables) if variable.name == "kernel"]

    def loss_fn(trainable, non_trainable, images, coords, valid):
        weights, sigma = trainable[:-1], trainable[-1]
        predicted, non_trainable = model.stateless_call(weights, non_trainable, images, training=True)
        terms = loss_terms(predicted, coords, valid, sigma, [weights[k] for k in kernels], training)
        return terms["loss"], non_trainable

    def step(state, images, coords, valid):
        trainable, non_trainable, optimizer_state = state
        (loss, non_trainable), gradients = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, images, coords, valid
        )
        gradients, _, finite = clipped_gradients(gradients, loss, training.clip_norm)
        new_trainable, new_optimizer_state = optimizer.stateless_apply(optimizer_state, gradients, trainable)
        # as the TensorFlow loop: a non-finite step is skipped, not applied
        new_trainable, new_optimizer_state = keep_if_finite(
            finite, (new_trainable, new_optimizer_state), (trainable, optimizer_state)
        )
        return (new_trainable, non_trainable, new_optimizer_state), loss

    state = (
        [v.value for v in variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    return jax.jit(step, donate_argnums=0), state


def peak_memory_gb() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**30


def measure(name: str) -> None:
    """Times configuration `name` in this process and prints its table row."""
    config = preset(CONFIGS[name][0]).updated(CONFIGS[name][1])
    data = config.data
    shape = (FLAGS.batch_size, *reversed(data.image_size), 1)
    model = build_model(config.network, data)
    flops = training_flops(model, shape)
    step, state = make_step(model, config)
    rng = np.random.default_rng(0)
    images = jax.device_put(rng.normal(size=shape).astype(np.float32))
    coords = jax.device_put(
        rng.uniform(8, min(data.image_size) - 8, (shape[0], data.num_landmarks, data.ndim)).astype(np.float32)
    )
    valid = jax.device_put(np.ones((shape[0], data.num_landmarks), bool))
    run = {"state": state}

    def timed_step():
        run["state"], run["loss"] = step(run["state"], images, coords, valid)
        return run["loss"]

    for _ in range(FLAGS.warmup):
        timed_step()
    first_loss = float(run["loss"])
    seconds = median_seconds(timed_step, FLAGS.steps, wait=lambda loss: loss.block_until_ready())
    loss = run["loss"]
    iterations = config.training.iterations
    memory = peak_memory_gb()
    print(
        f"| {name} | {'x'.join(map(str, data.image_size))} | {seconds * 1e3:.1f} ms | "
        f"{shape[0] / seconds:.1f} | {flops / 1e9:.1f} | {flops / seconds / 1e12:.2f} | "
        f"{'n/a' if memory is None else f'{memory:.1f} GiB'} | "
        f"{iterations:,} in {iterations * seconds / 60:.0f} min | {first_loss:.4g} -> {float(loss):.4g} |",
        flush=True,
    )


def main(argv):
    del argv
    unknown = [name for name in FLAGS.configs if name not in CONFIGS]
    if unknown:
        sys.exit(f"unknown configuration(s) {unknown}; known: {sorted(CONFIGS)}")
    if not FLAGS.one:
        device = jax.devices()[0]
        print(
            f"JAX {jax.__version__} on {device.platform}: {device.device_kind}; Keras {keras.__version__}; "
            f"policy {FLAGS.precision}; batch {FLAGS.batch_size}; median of {FLAGS.steps} steps after "
            f"{FLAGS.warmup}; one process per configuration",
            flush=True,
        )
        print(
            "| configuration | input | step | images/s | GFLOP/step | achieved TFLOP/s | peak memory | "
            "paper iterations | loss after warm-up -> end |"
        )
        print("|---|---|---|---|---|---|---|---|---|", flush=True)
        for name in FLAGS.configs:
            command = [
                sys.executable,
                __file__,
                "--one",
                f"--configs={name}",
                f"--steps={FLAGS.steps}",
                f"--warmup={FLAGS.warmup}",
                f"--precision={FLAGS.precision}",
                f"--batch_size={FLAGS.batch_size}",
            ]
            completed = subprocess.run(command, capture_output=True, text=True)
            rows = [line for line in completed.stdout.splitlines() if line.startswith(f"| {name} |")]
            print(
                rows[-1] if rows else f"| {name} | failed: {completed.stderr.strip().splitlines()[-1:]} |", flush=True
            )
        return 0
    keras.mixed_precision.set_global_policy(FLAGS.precision)
    for name in FLAGS.configs:
        measure(name)
    return 0


if __name__ == "__main__":
    app.run(main)
