"""Builds the configured network for a dataset."""

from __future__ import annotations

import keras
import numpy as np

from scn_tf.configs import DataConfig, NetworkConfig
from scn_tf.models.scn import LocalAppearanceNet, SpatialConfigurationNet
from scn_tf.models.unet import LocalizationUNet


def build_model(network: NetworkConfig, data: DataConfig) -> keras.Model:
    """SCN, U-Net or LA-Net with the configuration's sizes (None: the model's default for the dimension)."""
    common = dict(
        num_landmarks=data.num_landmarks,
        ndim=data.ndim,
        filters=network.filters,
        dropout_rate=network.dropout_rate,
        padding=network.padding,
    )
    if network.network == "scn":
        return SpatialConfigurationNet(
            levels=network.levels or 4,
            spatial_kernel_size=network.spatial_kernel_size,
            spatial_downsampling=network.spatial_downsampling,
            **common,
        )
    if network.network == "la":
        return LocalAppearanceNet(levels=network.levels or 4, **common)
    return LocalizationUNet(levels=network.levels or 5, variant=network.unet_variant, **common)


def count_trainable_weights(model: keras.Model, input_shape) -> int:
    """Builds the model on zeros of `input_shape` (batch first) and counts its trainable weights."""
    if not model.built:
        model(np.zeros(input_shape, np.float32))
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
