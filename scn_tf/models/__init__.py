"""Keras models for heatmap-regression landmark localization."""

from scn_tf.models.factory import build_model, count_trainable_weights
from scn_tf.models.scn import LocalAppearanceNet, SpatialConfigurationNet
from scn_tf.models.unet import LocalizationUNet

__all__ = [
    "SpatialConfigurationNet",
    "LocalizationUNet",
    "LocalAppearanceNet",
    "build_model",
    "count_trainable_weights",
]
