"""Receptive fields of the networks, in input pixels per axis, from their hyperparameters.

A chain of layers with `taps` kernel taps each, applied on a grid `jump` input pixels apart, sees
1 + sum((taps - 1) * jump) input pixels; pooling by f multiplies the jump by f, upsampling by f divides it
(its interpolation reads 2 coarse pixels per output when linear, 4 when cubic, 1 when nearest). Skips and
parallel branches see less than the deepest path, so the deepest path gives the receptive field. The
figure is exact for the local appearance component; after pooling that follows upsampling (the spatial
configuration) or concatenation skips (the U-Net), the exact extent varies with the output pixel's position
by up to the deepest pooling factor, 2**(levels - 1) pixels.
"""

from __future__ import annotations

UPSAMPLING_TAPS = {"nearest": 1, "linear": 2, "cubic": 4}


class _Span:
    """The input extent of one output pixel, grown layer by layer along a path."""

    def __init__(self):
        self.pixels, self.jump = 1.0, 1.0

    def conv(self, taps: int, count: int = 1) -> None:
        self.pixels += count * (taps - 1) * self.jump

    def pool(self, factor: int) -> None:
        self.conv(factor)
        self.jump *= factor

    def upsample(self, factor: int, interpolation: str) -> None:
        self.conv(UPSAMPLING_TAPS[interpolation])
        self.jump /= factor

    def contract(self, levels: int) -> None:
        """Two 3-tap convs per level, pooling by 2 between levels."""
        for level in range(levels):
            self.conv(3, 2)
            if level < levels - 1:
                self.pool(2)


def local_appearance(levels: int) -> int:
    """The SCN's local appearance component (and the LA-Net): conv0, two 3-tap convs per level, average
    pooling, the deepest parallel conv, linear upsampling back and the 3-tap local heatmap conv."""
    span = _Span()
    span.conv(3)
    span.contract(levels)
    span.conv(3)
    for _ in range(levels - 1):
        span.upsample(2, "linear")
    span.conv(3)
    return int(span.pixels)


def spatial_configuration(levels: int, kernel_size: int, downsampling: int) -> int:
    """The SCN's spatial configuration heatmaps: the local appearance's field, then average pooling by
    `downsampling`, four `kernel_size` convs and cubic upsampling."""
    span = _Span()
    span.pixels = float(local_appearance(levels))
    span.pool(downsampling)
    span.conv(kernel_size, 4)
    span.upsample(downsampling, "cubic")
    return int(span.pixels)


def unet(levels: int, variant: str = "paper", ndim: int = 2) -> int:
    """The Localization U-Net: two 3-tap convs per level down and up (the released variant also at the
    deepest level, and its conv0 in 3D), pooling by 2, upsampling back, the heatmap conv (1 tap for the
    released 2D variant, 3 otherwise)."""
    paper = variant == "paper"
    span = _Span()
    if not paper and ndim == 3:
        span.conv(3)
    span.contract(levels)
    if not paper:
        span.conv(3, 2)
    for _ in range(levels - 1):
        span.upsample(2, "linear" if paper else "nearest")
        span.conv(3, 2)
    span.conv(3 if paper or ndim == 3 else 1)
    return int(span.pixels)


def receptive_fields(network: str, levels: int, kernel_size: int = 0, downsampling: int = 0, **unet_options) -> dict:
    """{component: pixels} of a network ("scn", "unet", "la")."""
    if network == "scn":
        return {
            "local appearance": local_appearance(levels),
            "spatial configuration": spatial_configuration(levels, kernel_size, downsampling),
        }
    if network == "la":
        return {"local appearance": local_appearance(levels)}
    if network == "unet":
        return {"U-Net": unet(levels, **unet_options)}
    raise ValueError(f"network must be 'scn', 'unet' or 'la', got {network!r}")
