"""SpatialConfiguration-Net (Payer et al. 2019, Fig. 2) and its local appearance component alone (LA-Net)."""

from __future__ import annotations

import keras

from scn_tf.models.layers import Conv, FixedUpsampling, average_pooling, check_ndim

# The original's settings by dimension: 2D from the cephalogram code, 3D from the spine code.
DEFAULTS = {
    2: dict(filters=128, spatial_kernel_size=11, spatial_downsampling=16, heatmap_init_std=1e-4, padding="same"),
    3: dict(filters=64, spatial_kernel_size=7, spatial_downsampling=8, heatmap_init_std=1e-3, padding="reflect"),
}


def resolve_defaults(ndim: int, **values) -> dict:
    """Fills the arguments left as None with the original's value for this dimension."""
    defaults = DEFAULTS[check_ndim(ndim)]
    return {key: defaults[key] if value is None else value for key, value in values.items()}


class LocalAppearance(keras.layers.Layer):
    """conv0, a U-Net-like path without expanding convs (average pooling, linear upsampling, additive skips),
    and the local heatmap conv: accurate but possibly ambiguous candidate heatmaps.

    `padding` applies to the level convs (contracting and parallel); conv0 and the local heatmap conv always
    use zero 'same' padding, as in the original (whose 3D spine network reflects only in the level convs).
    """

    def __init__(
        self,
        num_landmarks: int,
        ndim: int,
        filters: int,
        levels: int,
        dropout_rate: float,
        leaky_relu_slope: float,
        heatmap_init_std: float,
        padding: str,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.levels = levels
        conv = dict(
            ndim=ndim,
            filters=filters,
            kernel_size=3,
            padding=padding,
            activation="leaky_relu",
            leaky_relu_slope=leaky_relu_slope,
        )
        self.conv0 = Conv(**{**conv, "padding": "same"}, name="conv0")
        self.contracting = [
            [
                Conv(**conv, name=f"contracting{level}_0"),
                keras.layers.Dropout(dropout_rate, name=f"dropout{level}"),
                Conv(**conv, name=f"contracting{level}_1"),
            ]
            for level in range(levels)
        ]
        self.parallel = [Conv(**conv, name=f"parallel{level}") for level in range(levels)]
        self.downsample = average_pooling(ndim, 2, name="downsample")
        self.upsample = FixedUpsampling(ndim, 2, "linear", name="upsample")
        self.local_heatmaps = Conv(
            ndim, num_landmarks, 3, padding="same", activation=None, init_std=heatmap_init_std, name="local_heatmaps"
        )

    def call(self, x, training=None):
        node = self.conv0(x)
        skips = []
        for level, (conv_a, dropout, conv_b) in enumerate(self.contracting):
            node = conv_b(dropout(conv_a(node), training=training))
            skips.append(self.parallel[level](node))
            if level < self.levels - 1:
                node = self.downsample(node)
        node = skips[-1]
        for skip in reversed(skips[:-1]):
            node = skip + self.upsample(node)
        return self.local_heatmaps(node)


class SpatialConfiguration(keras.layers.Layer):
    """Downsampled local heatmaps -> large-kernel convs -> tanh -> cubic upsampling: coarse but unambiguous."""

    def __init__(
        self,
        num_landmarks: int,
        ndim: int,
        filters: int,
        kernel_size: int,
        downsampling: int,
        leaky_relu_slope: float,
        heatmap_init_std: float,
        padding: str,
        **kwargs,
    ):
        super().__init__(**kwargs)
        conv = dict(ndim=ndim, kernel_size=kernel_size, padding=padding, leaky_relu_slope=leaky_relu_slope)
        self.downsample = average_pooling(ndim, downsampling, name="downsample")
        self.convs = [Conv(filters=filters, activation="leaky_relu", **conv, name=f"sconv{i}") for i in range(3)]
        self.spatial_downsampled = Conv(
            filters=num_landmarks, activation="tanh", init_std=heatmap_init_std, **conv, name="spatial_downsampled"
        )
        self.upsample = FixedUpsampling(ndim, downsampling, "cubic", name="upsample")

    def call(self, local_heatmaps):
        node = self.downsample(local_heatmaps)
        for conv in self.convs:
            node = conv(node)
        return self.upsample(self.spatial_downsampled(node))


def local_appearance(hyperparameters: dict) -> LocalAppearance:
    """The local appearance component of the SCN and the LA-Net, from their resolved hyperparameters."""
    h = hyperparameters
    return LocalAppearance(
        h["num_landmarks"],
        h["ndim"],
        h["filters"],
        h["levels"],
        h["dropout_rate"],
        h["leaky_relu_slope"],
        h["heatmap_init_std"],
        h["padding"],
        name="local_appearance",
    )


class SpatialConfigurationNet(keras.Model):
    """SCN: heatmaps = local appearance heatmaps * spatial configuration heatmaps.

    Arguments left as None take the original's value for `ndim` (see `DEFAULTS`). Input spatial sizes must
    be divisible by 2**(levels-1) and by `spatial_downsampling`.
    """

    def __init__(
        self,
        num_landmarks: int,
        ndim: int = 2,
        filters: int | None = None,
        levels: int = 4,
        spatial_kernel_size: int | None = None,
        spatial_downsampling: int | None = None,
        dropout_rate: float = 0.5,
        leaky_relu_slope: float = 0.1,
        heatmap_init_std: float | None = None,
        padding: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        resolved = resolve_defaults(
            ndim,
            filters=filters,
            spatial_kernel_size=spatial_kernel_size,
            spatial_downsampling=spatial_downsampling,
            heatmap_init_std=heatmap_init_std,
            padding=padding,
        )
        self.hyperparameters = dict(
            num_landmarks=num_landmarks,
            ndim=ndim,
            levels=levels,
            dropout_rate=dropout_rate,
            leaky_relu_slope=leaky_relu_slope,
            **resolved,
        )
        self.local_appearance = local_appearance(self.hyperparameters)
        self.spatial_configuration = SpatialConfiguration(
            num_landmarks,
            ndim,
            resolved["filters"],
            resolved["spatial_kernel_size"],
            resolved["spatial_downsampling"],
            leaky_relu_slope,
            resolved["heatmap_init_std"],
            resolved["padding"],
            name="spatial_configuration",
        )

    def heatmap_components(self, x, training=None):
        """Returns (local_appearance, spatial_configuration) heatmaps, both at input resolution."""
        local = self.local_appearance(x, training=training)
        return local, self.spatial_configuration(local)

    def call(self, x, training=None):
        local, spatial = self.heatmap_components(x, training=training)
        return local * spatial

    def get_config(self):
        return {**super().get_config(), **self.hyperparameters}


class LocalAppearanceNet(keras.Model):
    """The paper's LA-Net: the SCN's local appearance component trained on its own."""

    def __init__(
        self,
        num_landmarks: int,
        ndim: int = 2,
        filters: int | None = None,
        levels: int = 4,
        dropout_rate: float = 0.5,
        leaky_relu_slope: float = 0.1,
        heatmap_init_std: float | None = None,
        padding: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        resolved = resolve_defaults(ndim, filters=filters, heatmap_init_std=heatmap_init_std, padding=padding)
        self.hyperparameters = dict(
            num_landmarks=num_landmarks,
            ndim=ndim,
            levels=levels,
            dropout_rate=dropout_rate,
            leaky_relu_slope=leaky_relu_slope,
            **resolved,
        )
        self.local_appearance = local_appearance(self.hyperparameters)

    def call(self, x, training=None):
        return self.local_appearance(x, training=training)

    def get_config(self):
        return {**super().get_config(), **self.hyperparameters}
