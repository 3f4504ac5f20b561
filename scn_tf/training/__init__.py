"""Training: the shared loop (`Trainer`), the optimizer and schedule, the step's arithmetic, and one engine
module per Keras backend (TensorFlow, JAX)."""

from scn_tf.training.optimization import LearningRate, make_optimizer
from scn_tf.training.trainer import Trainer, TrainingError

__all__ = ["LearningRate", "Trainer", "TrainingError", "make_optimizer"]
