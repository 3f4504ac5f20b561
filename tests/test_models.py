"""SCN, LA-Net and U-Net: the original's weight counts, shapes in 2D and 3D, structure and configs."""

import keras
import numpy as np
import pytest

from scn_tf.models import LocalAppearanceNet, LocalizationUNet, SpatialConfigurationNet


def zeros(*shape):
    return np.zeros(shape, np.float32)


@pytest.mark.parametrize(
    "num_landmarks,ndim,extra,expected",
    [
        (19, 2, {}, 6_348_070),  # 2D cephalograms
        (37, 2, {}, 6_926_410),  # 2D hand
        (26, 3, {}, 5_326_196),  # 3D spine
        (28, 3, {"spatial_downsampling": 4}, 5_417_464),  # 3D hand MRI
    ],
)
@pytest.mark.slow
def test_original_weight_counts(num_landmarks, ndim, extra, expected):
    model = SpatialConfigurationNet(num_landmarks=num_landmarks, ndim=ndim, **extra)
    model(zeros(1, *(32,) * ndim, 1))
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    assert trainable == expected


def test_defaults_follow_dimension():
    config_2d = SpatialConfigurationNet(19, 2).get_config()
    config_3d = SpatialConfigurationNet(26, 3).get_config()
    assert (
        config_2d["filters"],
        config_2d["spatial_kernel_size"],
        config_2d["spatial_downsampling"],
        config_2d["heatmap_init_std"],
        config_2d["padding"],
    ) == (128, 11, 16, 1e-4, "same")
    assert (
        config_3d["filters"],
        config_3d["spatial_kernel_size"],
        config_3d["spatial_downsampling"],
        config_3d["heatmap_init_std"],
        config_3d["padding"],
    ) == (64, 7, 8, 1e-3, "reflect")


TINY = dict(filters=8, levels=3, spatial_kernel_size=3, spatial_downsampling=4)


@pytest.mark.parametrize("ndim,padding", [(2, "same"), (2, "reflect"), (3, "same"), (3, "reflect")])
def test_scn_output_is_product_of_components(ndim, padding):
    model = SpatialConfigurationNet(num_landmarks=3, ndim=ndim, padding=padding, heatmap_init_std=0.1, **TINY)
    x = np.random.default_rng(0).normal(size=(2,) + (16,) * ndim + (1,)).astype(np.float32)
    out = np.asarray(model(x))
    local, spatial = (np.asarray(t) for t in model.heatmap_components(x))
    assert out.shape == local.shape == spatial.shape == (2,) + (16,) * ndim + (3,)
    np.testing.assert_allclose(out, local * spatial, rtol=1e-5, atol=1e-8)
    assert np.abs(local).max() > 0 and np.abs(spatial).max() > 0


def test_reflect_and_same_padding_differ_only_near_borders():
    x = np.random.default_rng(1).normal(size=(1, 16, 16, 1)).astype(np.float32)
    same = SpatialConfigurationNet(2, 2, padding="same", **TINY)
    reflect = SpatialConfigurationNet(2, 2, padding="reflect", **TINY)
    same(x), reflect(x)
    reflect.set_weights(same.get_weights())
    features = np.random.default_rng(2).normal(size=(1, 16, 16, 8)).astype(np.float32)
    conv_same = same.local_appearance.contracting[0][0](features)
    conv_reflect = reflect.local_appearance.contracting[0][0](features)
    np.testing.assert_allclose(
        np.asarray(conv_same)[:, 1:-1, 1:-1], np.asarray(conv_reflect)[:, 1:-1, 1:-1], rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(np.asarray(conv_same)[:, 0], np.asarray(conv_reflect)[:, 0])


def test_dropout_only_in_training():
    model = SpatialConfigurationNet(2, 2, heatmap_init_std=0.1, **TINY)
    x = np.random.default_rng(2).normal(size=(1, 16, 16, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model(x)))
    assert not np.allclose(np.asarray(model(x, training=True)), np.asarray(model(x, training=True)))


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (
            SpatialConfigurationNet,
            dict(
                num_landmarks=4,
                ndim=2,
                dropout_rate=0.3,
                leaky_relu_slope=0.2,
                heatmap_init_std=0.01,
                padding="reflect",
                **TINY,
            ),
        ),
        (
            LocalizationUNet,
            dict(
                num_landmarks=4,
                ndim=3,
                filters=8,
                levels=3,
                variant="released",
                dropout_rate=0.1,
                leaky_relu_slope=0.2,
                heatmap_init_std=0.01,
                padding="same",
            ),
        ),
        (
            LocalAppearanceNet,
            dict(
                num_landmarks=4,
                ndim=2,
                filters=8,
                levels=3,
                dropout_rate=0.2,
                leaky_relu_slope=0.3,
                heatmap_init_std=0.02,
                padding="same",
            ),
        ),
    ],
)
def test_config_round_trip(cls, kwargs):
    model = cls(**kwargs)
    config = model.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    clone = cls.from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(3).normal(size=(1,) + (16,) * kwargs["ndim"] + (1,)).astype(np.float32)
    model(x), clone(x)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(clone(x)), rtol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("variant", ["paper", "released"])
def test_unet_variants(ndim, variant):
    model = LocalizationUNet(num_landmarks=3, ndim=ndim, filters=4, levels=3, variant=variant)
    out = model(zeros(2, *(16,) * ndim, 1))
    assert tuple(out.shape) == (2,) + (16,) * ndim + (3,)
    layers = {type(layer).__name__ for layer in model._flatten_layers()}
    if variant == "paper":
        assert {f"AveragePooling{ndim}D", "FixedUpsampling", "Dropout"} <= layers
        assert f"MaxPooling{ndim}D" not in layers
        assert sorted(model.dropouts) == [1, 2]  # the two deepest levels
    else:
        assert {f"MaxPooling{ndim}D", f"UpSampling{ndim}D"} <= layers
        assert "Dropout" not in layers and f"AveragePooling{ndim}D" not in layers
        assert (model.conv0 is not None) == (ndim == 3)
        assert model.heatmaps.kernel_size == (1 if ndim == 2 else 3)


def test_unet_rejects_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        LocalizationUNet(3, variant="classic")


@pytest.mark.slow
def test_la_net_equals_scn_local_component():
    scn = SpatialConfigurationNet(3, 2, **TINY)
    la = LocalAppearanceNet(3, 2, filters=8, levels=3)
    x = np.random.default_rng(4).normal(size=(1, 16, 16, 1)).astype(np.float32)
    scn(x), la(x)
    la.local_appearance.set_weights(scn.local_appearance.get_weights())
    np.testing.assert_allclose(np.asarray(la(x)), np.asarray(scn.heatmap_components(x)[0]), rtol=1e-6)


def test_heatmap_layers_use_small_init():
    model = SpatialConfigurationNet(19, 2, filters=16)
    model(zeros(1, 32, 32, 1))
    local_kernel = np.asarray(model.local_appearance.local_heatmaps.conv.kernel)
    conv_kernel = np.asarray(model.local_appearance.contracting[0][0].conv.kernel)
    assert local_kernel.std() < 2e-4
    assert conv_kernel.std() > 0.05
    assert np.all(np.asarray(model.local_appearance.conv0.conv.bias) == 0)
    assert keras.config.image_data_format() == "channels_last"


@pytest.mark.slow
def test_analytic_conv_cost_matches_a_hand_count():
    from scn_tf.models.flops import conv_macs, training_flops

    model = SpatialConfigurationNet(2, 2, filters=4, levels=2, spatial_kernel_size=3, spatial_downsampling=4)
    # conv0 1->4 at 16x16; per level 3 convs 4->4 (16x16, then 8x8); heatmaps 4->2; SC at 4x4: 2->4, 4->4 x2, 4->2
    expected = 256 * 9 * 4 + 3 * 256 * 9 * 16 + 3 * 64 * 9 * 16 + 256 * 9 * 8 + 16 * 9 * (8 + 16 + 16 + 8)
    assert conv_macs(model, (1, 16, 16, 1)) == expected == 172_800
    assert conv_macs(model, (2, 16, 16, 1)) == 2 * expected  # built now: counted once, per image
    assert training_flops(model, (1, 16, 16, 1)) == 6 * expected
    assert not any("call" in vars(layer) for layer in model._flatten_layers())  # the recording is removed


@pytest.mark.parametrize(
    "num_landmarks,ndim,expected",
    [
        (19, 2, 3_397_651),  # released cephalogram U-Net
        (26, 3, 2_702_234),  # released spine U-Net
    ],
)
@pytest.mark.slow
def test_released_unet_weight_counts(num_landmarks, ndim, expected):
    """The framework's U-Net runs its expanding block (two convs) at the deepest level too."""
    model = LocalizationUNet(num_landmarks=num_landmarks, ndim=ndim, variant="released")
    model(zeros(1, *(32,) * ndim, 1))
    assert sum(int(np.prod(weight.shape)) for weight in model.trainable_weights) == expected
    assert len(model.expanding) == model.levels


def test_spine_padding_per_layer():
    """3D SCN: reflection only in the level convs and the spatial-configuration convs; conv0 and the heatmap
    convs keep zero 'same' padding. The released (spine) U-Net pads every convolution with zeros."""
    scn = SpatialConfigurationNet(num_landmarks=3, ndim=3, filters=4, levels=2, spatial_downsampling=2)
    local, spatial = scn.local_appearance, scn.spatial_configuration
    assert scn.get_config()["padding"] == "reflect"
    assert local.conv0.padding == "same" and local.local_heatmaps.padding == "same"
    level_convs = [conv for block in local.contracting for conv in (block[0], block[2])] + local.parallel
    assert {conv.padding for conv in level_convs + spatial.convs + [spatial.spatial_downsampled]} == {"reflect"}
    unet = LocalizationUNet(num_landmarks=3, ndim=3, filters=4, levels=2, variant="released")
    assert unet.conv0.padding == "same" and unet.heatmaps.padding == "same"
    assert unet.get_config()["padding"] == "same"
    assert {conv.padding for block in unet.contracting + unet.expanding for conv in block} == {"same"}
    unet(zeros(1, 8, 8, 8, 1))
    assert 5e-5 < np.asarray(unet.heatmaps.conv.kernel).std() < 2e-4  # init std 1e-4
