"""Localization U-Net baselines: the paper's tuned variant and the released code's classic U-Net."""

from __future__ import annotations

import keras
from keras import ops

from scn_tf.models.layers import Conv, FixedUpsampling, average_pooling, max_pooling, nearest_upsampling
from scn_tf.models.scn import resolve_defaults

VARIANTS = ("paper", "released")


class LocalizationUNet(keras.Model):
    """U-Net that regresses one heatmap per landmark; F filters on every level, concatenation skips.

    `variant="paper"`: average pooling, linear upsampling, LeakyReLU, dropout between the two convs of the
    two deepest contracting blocks, 3x3 linear heatmap conv.
    `variant="released"`: the released code's classic U-Net (max pooling, nearest upsampling, ReLU, no
    dropout); 1x1 heatmap conv in 2D, conv0 and a 3x3x3 heatmap conv in 3D as in the spine code. Its
    framework template runs the expanding block at every level, the deepest included (there on the deepest
    contracting output, without a skip), and its conv0 and heatmap conv use zero 'same' padding whatever
    `padding` the blocks use. `padding` defaults to zero 'same' in 2D and 3D: the original's U-Nets,
    the spine U-Net included, reflect nowhere (unlike the 3D SCN). The heatmap conv starts with truncated
    normal std `heatmap_init_std` (default 1e-4, as the original's U-Nets).
    """

    def __init__(
        self,
        num_landmarks: int,
        ndim: int = 2,
        filters: int | None = None,
        levels: int = 5,
        variant: str = "paper",
        dropout_rate: float = 0.5,
        leaky_relu_slope: float = 0.1,
        heatmap_init_std: float | None = None,
        padding: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        resolved = resolve_defaults(ndim, filters=filters)
        resolved["padding"] = padding or "same"
        resolved["heatmap_init_std"] = 1e-4 if heatmap_init_std is None else heatmap_init_std
        self.hyperparameters = dict(
            num_landmarks=num_landmarks,
            ndim=ndim,
            levels=levels,
            variant=variant,
            dropout_rate=dropout_rate,
            leaky_relu_slope=leaky_relu_slope,
            **resolved,
        )
        self.levels = levels
        paper = variant == "paper"
        conv = dict(
            ndim=ndim,
            filters=resolved["filters"],
            kernel_size=3,
            padding=resolved["padding"],
            activation="leaky_relu" if paper else "relu",
            leaky_relu_slope=leaky_relu_slope,
        )
        outer_padding = resolved["padding"] if paper else "same"
        self.conv0 = Conv(**{**conv, "padding": outer_padding}, name="conv0") if not paper and ndim == 3 else None
        self.contracting = [
            [Conv(**conv, name=f"contracting{level}_0"), Conv(**conv, name=f"contracting{level}_1")]
            for level in range(levels)
        ]
        self.expanding = [
            [Conv(**conv, name=f"expanding{level}_0"), Conv(**conv, name=f"expanding{level}_1")]
            for level in range(levels if not paper else levels - 1)
        ]
        self.dropouts = {
            level: keras.layers.Dropout(dropout_rate, name=f"dropout{level}")
            for level in range(max(levels - 2, 0), levels)
            if paper and dropout_rate > 0
        }
        if paper:
            self.downsample = average_pooling(ndim, 2, name="downsample")
            self.upsample = FixedUpsampling(ndim, 2, "linear", name="upsample")
        else:
            self.downsample = max_pooling(ndim, 2, name="downsample")
            self.upsample = nearest_upsampling(ndim, 2, name="upsample")
        heatmap_kernel = 3 if paper or ndim == 3 else 1
        self.heatmaps = Conv(
            ndim,
            num_landmarks,
            heatmap_kernel,
            padding=outer_padding,
            activation=None,
            init_std=resolved["heatmap_init_std"],
            name="heatmaps",
        )

    def call(self, x, training=None):
        node = x if self.conv0 is None else self.conv0(x)
        skips = []
        for level, (conv_a, conv_b) in enumerate(self.contracting):
            node = conv_a(node)
            if level in self.dropouts:
                node = self.dropouts[level](node, training=training)
            node = conv_b(node)
            if level < self.levels - 1:
                skips.append(node)
                node = self.downsample(node)
        if len(self.expanding) == self.levels:  # released: the expanding block at the deepest level too
            conv_a, conv_b = self.expanding[-1]
            node = conv_b(conv_a(node))
        for level in reversed(range(self.levels - 1)):
            node = ops.concatenate([skips[level], self.upsample(node)], axis=-1)
            conv_a, conv_b = self.expanding[level]
            node = conv_b(conv_a(node))
        return self.heatmaps(node)

    def get_config(self):
        return {**super().get_config(), **self.hyperparameters}
