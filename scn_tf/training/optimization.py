"""The optimizer and its learning-rate schedule, in Keras for every backend.

SGD with Nesterov momentum (the original's) or Adam; the rate is the configured schedule (constant, or
cosine with linear warm-up) times `scale`, a variable that recovery from non-finite steps lowers and that
checkpoints keep.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from scn_tf.configs import TrainingConfig


class LearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The configured schedule times `scale`."""

    def __init__(self, config: TrainingConfig):
        self.config = config
        self.scale = keras.Variable(1.0, dtype="float32", trainable=False, name="learning_rate_scale")

    def base(self, step):
        """The configured rate at optimizer step `step`, before `scale`."""
        config = self.config
        step = ops.cast(step, "float32")
        rate = ops.cast(config.learning_rate, "float32")
        if config.lr_schedule == "cosine":
            length = float(max(config.iterations - config.lr_warmup, 1))
            progress = ops.clip((step - config.lr_warmup) / length, 0.0, 1.0)
            final = config.lr_final_factor
            rate = rate * (final + (1.0 - final) * 0.5 * (1.0 + ops.cos(np.pi * progress)))
        if config.lr_warmup:
            rate = rate * ops.minimum(1.0, (step + 1.0) / config.lr_warmup)
        return rate

    def __call__(self, step):
        return self.base(step) * self.scale

    def get_config(self) -> dict:
        return self.config.to_dict()


def make_optimizer(config: TrainingConfig, schedule: LearningRate) -> keras.optimizers.Optimizer:
    if config.optimizer == "adam":
        return keras.optimizers.Adam(schedule)
    return keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True)
