"""Keras models for heatmap-regression landmark localization."""

from scn_tf.models.scn import LocalAppearanceNet, SpatialConfigurationNet
from scn_tf.models.unet import LocalizationUNet

__all__ = ["SpatialConfigurationNet", "LocalizationUNet", "LocalAppearanceNet"]
