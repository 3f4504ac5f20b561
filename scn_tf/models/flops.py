"""Analytic arithmetic cost of a network: multiply-accumulates of its convolutions for an input shape.

Counted on a symbolic pass (no computation), from each convolution's output size and kernel shape; the
fixed upsampling, pooling and activations are a few per cent on top and are left out. Training costs about
3x the forward pass (the forward, the gradient with respect to the inputs and to the weights).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

from scn_tf.models.layers import Conv


def conv_macs(model: keras.Model, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of all convolutions of `model` on one input of `input_shape` (batch first).

    The model's own Conv layers record their output sizes on one symbolic pass, through a `call` set on
    each instance for that pass and removed after it: the Conv class itself is never changed.
    """
    inputs = keras.KerasTensor(tuple(input_shape))
    if not model.built:
        model(inputs)  # building traces every layer more than once: count on a second pass
    counts = []

    def recording(layer: Conv):
        def call(x):
            outputs = Conv.call(layer, x)
            counts.append(math.prod(outputs.shape[:-1]) * math.prod(layer.conv.kernel.shape))
            return outputs

        return call

    convs = [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, Conv)]
    try:
        for layer in convs:
            object.__setattr__(layer, "call", recording(layer))
        model(inputs)
    finally:
        for layer in convs:
            object.__delattr__(layer, "call")
    return int(sum(counts))


def training_flops(model: keras.Model, input_shape: Sequence[int]) -> int:
    """Floating-point operations of one training step (forward + backward): 3 x 2 x MACs."""
    return 6 * conv_macs(model, input_shape)
