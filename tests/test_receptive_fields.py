"""The analytic receptive fields against the extent of the input gradient of output pixels."""

import numpy as np
import pytest
import tensorflow as tf

from scn_tf.models import receptive_fields
from scn_tf.models.scn import LocalAppearanceNet, SpatialConfigurationNet
from scn_tf.models.unet import LocalizationUNet


def gradient_extents(output_fn, size: int, phases: int) -> list[int]:
    """For `phases` output pixels from the centre along the first axis, how many input rows each one's
    value depends on (nonzero gradient); one backward pass, batch item p holding the pixel of phase p."""
    image = np.random.default_rng(0).normal(size=(1, size, size, 1)).astype(np.float32)
    x = tf.constant(np.repeat(image, phases, axis=0))
    with tf.GradientTape() as tape:
        tape.watch(x)
        output = output_fn(x)
        value = sum(tf.reduce_sum(output[p, size // 2 + p, size // 2]) for p in range(phases))
    gradients = np.abs(tape.gradient(value, x).numpy()[..., 0]) > 0
    extents = []
    for gradient in gradients:
        rows = np.nonzero(np.any(gradient, axis=1))[0]
        assert rows[0] > 0 and rows[-1] < size - 1, "the receptive field reaches the border: use a larger input"
        extents.append(int(rows[-1] - rows[0] + 1))
    return extents


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_local_appearance_is_exact_at_every_position(levels):
    model = LocalAppearanceNet(2, ndim=2, filters=2, levels=levels, dropout_rate=0.0)
    expected = receptive_fields.local_appearance(levels)
    assert gradient_extents(model, 160, 2 ** (levels - 1)) == [expected] * 2 ** (levels - 1)


def test_by_hand():
    # conv0 2, level 0 convs 4, pool 1, level 1 convs 8, parallel 4, linear upsampling 2, heatmap conv 2
    assert receptive_fields.local_appearance(2) == 1 + 2 + 4 + 1 + 8 + 4 + 2 + 2
    # + pool by 4: 3, four 5-tap convs at jump 4: 64, cubic upsampling: 3 coarse pixels = 12
    assert receptive_fields.spatial_configuration(2, 5, 4) == 24 + 3 + 64 + 12
    # released 2D, 2 levels: convs 4, pool 1, convs 8, deepest expanding 8, nearest 0, convs 4, 1x1 heatmap 0
    assert receptive_fields.unet(2, "released", 2) == 1 + 4 + 1 + 8 + 8 + 0 + 4
    assert receptive_fields.unet(2, "released", 3) == 1 + 2 + 4 + 1 + 8 + 8 + 0 + 4 + 2


@pytest.mark.parametrize("levels, kernel_size, downsampling", [(1, 3, 8), (2, 3, 4), (3, 5, 2)])
def test_spatial_configuration_within_the_pooling_factor(levels, kernel_size, downsampling):
    model = SpatialConfigurationNet(
        2, ndim=2, filters=2, levels=levels, spatial_kernel_size=kernel_size, spatial_downsampling=downsampling
    )
    expected = receptive_fields.spatial_configuration(levels, kernel_size, downsampling)
    extents = gradient_extents(lambda x: model.heatmap_components(x)[1], 192, downsampling)
    assert all(abs(extent - expected) <= 2 ** (levels - 1) for extent in extents), (extents, expected)


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_paper_unet_within_the_pooling_factor(levels):
    model = LocalizationUNet(2, ndim=2, filters=2, levels=levels, variant="paper", dropout_rate=0.0)
    expected = receptive_fields.unet(levels, "paper")
    extents = gradient_extents(model, 192, 2 ** (levels - 1))
    assert all(abs(extent - expected) <= 2 ** (levels - 1) for extent in extents), (extents, expected)


def test_receptive_fields_by_network():
    assert receptive_fields.receptive_fields("scn", 2, kernel_size=5, downsampling=4) == {
        "local appearance": 24,
        "spatial configuration": 103,
    }
    assert receptive_fields.receptive_fields("la", 3) == {"local appearance": 50}
    assert receptive_fields.receptive_fields("unet", 5) == {"U-Net": receptive_fields.unet(5)}
