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
    """Multiply-accumulates of all convolutions of `model` on one input of `input_shape` (batch first)."""
    counts = []
    original = Conv.call

    def recording(self, inputs, *args, **kwargs):
        outputs = original(self, inputs, *args, **kwargs)
        counts.append(math.prod(outputs.shape[:-1]) * math.prod(self.conv.kernel.shape))
        return outputs

    inputs = keras.KerasTensor(tuple(input_shape))
    if not model.built:
        model(inputs)  # building traces every layer more than once: count on a second pass
    try:
        Conv.call = recording
        model(inputs)
    finally:
        Conv.call = original
    return int(sum(counts))


def training_flops(model: keras.Model, input_shape: Sequence[int]) -> int:
    """Floating-point operations of one training step (forward + backward): 3 x 2 x MACs."""
    return 6 * conv_macs(model, input_shape)
