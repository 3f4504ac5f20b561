"""The arithmetic of one training step, in `keras.ops`, shared by the TensorFlow and the JAX step.

`loss_terms` assembles the loss of eq. (2) from the network output; `clipped_gradients` clips the gradients
by their global norm and says whether the step may be applied (loss and gradients finite); a stateless
backend (JAX) keeps its old state for a step that may not, with `keep_if_finite`; `step_counters` updates
the dynamic loss scale and the count of non-finite steps. What differs between backends, taking the
gradients and summing them across replicas, happens between the first two.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from scn_tf.configs import TrainingConfig
from scn_tf.heatmaps import gaussian_heatmaps
from scn_tf.losses import heatmap_loss, weight_decay


def loss_terms(
    predicted, coords, valid, sigmas, kernels: Sequence, config: TrainingConfig, replicas: float = 1.0
) -> dict:
    """`heatmap`, `sigma` and `weight_decay` terms and their sum `loss`, each divided by `replicas` (so that
    the sum over replicas is the mean over the global batch). The targets are built from `sigmas`, so the
    loss's gradient reaches them."""
    target = gaussian_heatmaps(coords, valid, sigmas, predicted.shape[1:-1], config.gamma)
    terms = heatmap_loss(predicted, target, sigmas, valid, config.alpha)
    terms["weight_decay"] = weight_decay(kernels, config.weight_decay)
    terms = {name: value / replicas for name, value in terms.items()}
    terms["loss"] = terms["heatmap"] + terms["sigma"] + terms["weight_decay"]
    return terms


def clipped_gradients(gradients: Sequence, loss, clip_norm: float | None) -> tuple[list, object, object]:
    """(gradients scaled to a global norm of at most `clip_norm` (None or 0: unclipped), their global norm
    before clipping, whether the step may be applied: loss and norm finite)."""
    norm = ops.sqrt(sum(ops.sum(ops.square(ops.cast(gradient, "float32"))) for gradient in gradients))
    if clip_norm:
        factor = ops.minimum(1.0, clip_norm / norm)
        gradients = [gradient * ops.cast(factor, gradient.dtype) for gradient in gradients]
    return list(gradients), norm, ops.logical_and(ops.isfinite(loss), ops.isfinite(norm))


def keep_if_finite(finite, new, old):
    """`new` where the step is finite, else `old`, leaf by leaf of two equal structures (for stateless steps)."""
    return keras.tree.map_structure(lambda a, b: ops.where(finite, a, b), new, old)


LOSS_SCALE_GROWTH_STEPS = 2000  # clean steps after which the dynamic loss scale doubles


def step_counters(finite, loss_finite, counters: dict, mixed_precision: bool) -> dict:
    """The bookkeeping after one step, as new values of `counters` (loss_scale, clean_steps, nonfinite_steps,
    last_nonfinite_step; `step` is the step just taken).

    With mixed precision, a finite loss whose scaled gradients overflowed halves the loss scale (not below 1)
    and is not counted as non-finite; the scale doubles after LOSS_SCALE_GROWTH_STEPS applied steps in a row.
    Any other step that may not be applied counts as non-finite and records its step.
    """
    overflow = ops.logical_and(ops.logical_not(finite), loss_finite) if mixed_precision else ops.zeros_like(finite)
    counted = ops.logical_and(ops.logical_not(finite), ops.logical_not(overflow))
    loss_scale, clean_steps = counters["loss_scale"], counters["clean_steps"]
    if mixed_precision:
        clean_steps = ops.where(finite, clean_steps + 1, ops.where(overflow, ops.zeros_like(clean_steps), clean_steps))
        grow = ops.logical_and(finite, clean_steps >= LOSS_SCALE_GROWTH_STEPS)
        loss_scale = ops.where(grow, loss_scale * 2.0, loss_scale)
        loss_scale = ops.where(overflow, ops.maximum(loss_scale / 2.0, 1.0), loss_scale)
        clean_steps = ops.where(grow, ops.zeros_like(clean_steps), clean_steps)
    nonfinite = counters["nonfinite_steps"]
    return {
        "loss_scale": loss_scale,
        "clean_steps": clean_steps,
        "nonfinite_steps": nonfinite + ops.cast(counted, nonfinite.dtype),
        "last_nonfinite_step": ops.where(counted, counters["step"], counters["last_nonfinite_step"]),
    }
