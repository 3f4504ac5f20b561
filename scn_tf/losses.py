"""The learnable-sigma heatmap loss of eq. (2), as the original computes it."""

from __future__ import annotations

from collections.abc import Iterable

from keras import ops


def heatmap_loss(predicted, target, sigmas, valid, alpha: float) -> dict:
    """Per-batch terms: 0.5*sum((pred - target)^2)/B and alpha*0.5*sum(valid*sigma^2)/B.

    Missing or out-of-view landmarks (valid = 0) still have their (all-zero) target in the first term, as
    in the original, but do not pull their sigma down.
    """
    batch = ops.cast(ops.shape(predicted)[0], "float32")
    difference = ops.cast(predicted, "float32") - target
    valid = ops.cast(valid, "float32")
    return {
        "heatmap": 0.5 * ops.sum(ops.square(difference)) / batch,
        "sigma": alpha * 0.5 * ops.sum(valid * ops.square(sigmas)[None, :]) / batch,
    }


def weight_decay(kernels: Iterable, factor: float):
    """lambda * 0.5 * sum(w^2) over convolution kernels only (no biases, no sigmas)."""
    return factor * 0.5 * sum(ops.sum(ops.square(ops.cast(kernel, "float32"))) for kernel in kernels)


def conv_kernels(model) -> list:
    """The convolution kernels of a model: the only weights that take weight decay."""
    return [weight for weight in model.trainable_weights if weight.name == "kernel"]
