"""The arithmetic of one training step, in `keras.ops`, shared by the TensorFlow loop and other backends.

`loss_terms` assembles the loss of eq. (2) from the network output; `clipped_gradients` clips the gradients
by their global norm and says whether the step may be applied (loss and gradients finite); a stateless
backend (JAX) keeps its old state for a step that may not, with `keep_if_finite`. What differs between
backends, taking the gradients and summing them across replicas, happens between the first two.
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
