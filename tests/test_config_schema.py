"""Configuration validation: every value's type by its field's annotation, ranges, choices and whether the network
runs on inputs of data.image_size; errors name the key, the value and what is allowed, and scn-train refuses a
bad configuration before it writes anything."""

import json
import re

import numpy as np
import pytest

from scn_tf.configs import (
    DEFAULT_LEVELS,
    DIMENSION_DEFAULTS,
    PADDINGS,
    UNET_VARIANTS,
    DataConfig,
    NetworkConfig,
    check_network_fits,
    load_config,
    preset,
)


def tiny(overrides: dict | None = None):
    """cpu2d at 32x32 with 2 levels and the spatial configuration at 1/4: a valid base to break."""
    small = {"data": {"image_size": [32, 32]}, "network": {"levels": 2, "spatial_downsampling": 4}}
    return preset("cpu2d").updated(small).updated(overrides or {})


def refused(overrides: dict, *fragments: str) -> str:
    """The ValueError message for `overrides` on the tiny configuration, which must hold every fragment."""
    with pytest.raises(ValueError) as error:
        tiny(overrides)
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        ({"network": {"filters": "8"}}, ["network.filters must be an integer or null, got '8' (a string)"]),
        ({"network": {"filters": 8.0}}, ["network.filters must be an integer or null, got 8.0 (a number)"]),
        ({"data": {"image_size": [32.5, 32]}}, ["data.image_size must be a list of integers, got [32.5, 32]"]),
        ({"data": {"name": 5}}, ["data.name must be a string, got 5 (an integer)"]),
        ({"data": {"landmark_names": ["a", 2]}}, ["data.landmark_names must be a list of strings or null", "['a', 2]"]),
        ({"data": {"histogram_reference": 3147}}, ["data.histogram_reference must be a string or null, got 3147"]),
        (
            {"data": {"outlier_radii": [2, True]}},
            ["data.outlier_radii must be a list of strings or integers or finite numbers, got [2, True]"],
        ),
        ({"data": {"spacing": "1,1"}}, ["data.spacing must be a list of finite numbers or null, got '1,1' (a string)"]),
        ({"training": {"xla": "yes"}}, ["training.xla must be true or false, got 'yes' (a string)"]),
        ({"augmentation": {"crop_z": 1}}, ["augmentation.crop_z must be true or false, got 1 (an integer)"]),
        ({"training": {"learning_rate": float("nan")}}, ["training.learning_rate must be a finite number, got nan"]),
        ({"network": {"dropout_rate": [0.5]}}, ["network.dropout_rate must be a finite number, got [0.5]"]),
    ],
)
def test_values_of_the_wrong_type_are_refused_naming_key_value_and_type(overrides, fragments):
    refused(overrides, *fragments)


@pytest.mark.parametrize(
    "section,key",
    [("network", "filters"), ("network", "levels"), ("data", "ndim"), ("data", "num_landmarks"), ("training", "seed")],
)
def test_a_boolean_is_not_an_integer(section, key):
    refused({section: {key: True}}, f"{section}.{key} must be an integer", "got True (a boolean)")


@pytest.mark.parametrize(
    "section,key,expected",
    [
        ("data", "image_size", "a list of integers"),
        ("data", "name", "a string"),
        ("data", "intensity_scale", "a finite number"),
        ("network", "dropout_rate", "a finite number"),
        ("training", "xla", "true or false"),
        ("augmentation", "translation", "a finite number"),
    ],
)
def test_null_where_a_value_is_required_is_refused(section, key, expected):
    refused({section: {key: None}}, f"{section}.{key} must be {expected}, got null")


@pytest.mark.parametrize(
    "data,fragment",
    [
        ({"image_size": [32]}, "data.image_size must have 2 values (data.ndim is 2), got [32]"),
        ({"spacing": [1.0, 1.0, 1.0]}, "data.spacing must have 2 values (data.ndim is 2)"),
        ({"image_spacing": [0.1]}, "data.image_spacing must have 2 values (data.ndim is 2)"),
        ({"intensity_clamp": [1.0]}, "data.intensity_clamp must have 2 values, got [1.0]"),
        ({"percentiles": [1.0, 50.0, 99.0]}, "data.percentiles must have 2 values"),
    ],
)
def test_lists_of_the_wrong_length_are_refused(data, fragment):
    refused({"data": data}, fragment)


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        ({"network": {"dropout_rate": 1.5}}, "network.dropout_rate must be below 1, got 1.5"),
        ({"network": {"dropout_rate": -0.1}}, "network.dropout_rate must be at least 0, got -0.1"),
        ({"network": {"filters": 0}}, "network.filters must be at least 1, got 0"),
        ({"network": {"spatial_kernel_size": 0}}, "network.spatial_kernel_size must be at least 1, got 0"),
        ({"network": {"levels": 0}}, "network.levels must be at least 1, got 0"),
        ({"data": {"intensity_scale": 0}}, "data.intensity_scale must not be 0"),
        ({"data": {"percentiles": [99, 1]}}, "data.percentiles must be [low, high], 0 <= low < high <= 100"),
        ({"data": {"percentiles": [1, 101]}}, "got [1.0, 101.0]"),
        ({"data": {"intensity_clamp": [1, -1]}}, "data.intensity_clamp must be [low, high] with low < high"),
        ({"data": {"window_step": 0}}, "data.window_step must be at least 1"),
        ({"data": {"pe_normalization": "wrist:1,5,50"}}, "below data.num_landmarks (2)"),
        ({"augmentation": {"elastic_grid": -1}}, "augmentation.elastic_grid must be at least 0, got -1"),
        ({"augmentation": {"translation": -2.0}}, "augmentation.translation must be at least 0"),
        ({"augmentation": {"scale": 1.0}}, "augmentation.scale must be below 1, got 1.0"),
        ({"training": {"seed": -1}}, "training.seed must be at least 0, got -1"),
        ({"training": {"momentum": 1.5}}, "training.momentum must be at most 1, got 1.5"),
    ],
)
def test_values_out_of_range_are_refused(overrides, fragment):
    refused(overrides, fragment)


@pytest.mark.parametrize(
    "section,key,value,allowed",
    [
        ("network", "padding", "valid", "null, 'same', 'reflect'"),
        ("network", "unet_variant", "classic", "'paper', 'released'"),
        ("network", "network", "resnet", "'scn', 'unet', 'la'"),
        ("training", "optimizer", "rmsprop", "'sgd', 'adam'"),
        ("data", "normalization", "zscore", "'fixed', 'percentile', 'histogram_matching'"),
    ],
)
def test_values_outside_an_enumeration_are_refused(section, key, value, allowed):
    refused({section: {key: value}}, f"{section}.{key} must be one of {allowed}, got {value!r}")


def test_levels_and_spatial_downsampling_must_fit_the_image_size():
    refused(
        {"network": {"levels": 10}},
        "network.levels 10 needs every side of data.image_size [32, 32] divisible by 512",
        "(the largest: 6)",
    )
    refused(
        {"network": {"spatial_downsampling": 16, "spatial_kernel_size": 7, "padding": "reflect"}},
        "network.spatial_downsampling 16 needs every side of data.image_size [32, 32] divisible by 16, "
        "with at least 4 pixels per side after pooling ('reflect' padding)",
        "the values that fit are 1, 2, 4, 8 (the largest: 8)",
    )
    refused(
        {"network": {"network": "unet", "levels": None}, "data": {"image_size": [40, 40]}},
        "network.levels null (5 by default) needs every side of data.image_size [40, 40] divisible by 16",
        "(the largest: 4)",
    )
    refused(
        {"network": {"spatial_downsampling": None}, "data": {"image_size": [24, 24]}},
        "network.spatial_downsampling null (16 by default)",
        "the values that fit are 1, 2, 3, 4, 6, 8, 12, 24",
    )
    assert tiny({"network": {"levels": 6}}).network.levels == 6
    assert tiny({"network": {"network": "unet", "levels": 14}, "data": {"image_size": [8192, 8192]}})


# (network, padding, image_size, levels, spatial_downsampling, spatial_kernel_size): on both sides of each bound
FIT_CASES = [
    ("scn", "same", [32, 32], 6, 4, 3),
    ("scn", "same", [32, 32], 7, 4, 3),
    ("scn", "same", [36, 36], 3, 4, 3),
    ("scn", "same", [36, 36], 4, 4, 3),
    ("scn", "same", [24, 24], 2, 16, 3),
    ("scn", "reflect", [16, 16], 4, 4, 3),
    ("scn", "reflect", [16, 16], 5, 4, 3),
    ("scn", "reflect", [32, 32], 2, 8, 7),
    ("scn", "reflect", [32, 32], 2, 8, 8),
    ("la", "same", [32, 32], 7, None, None),
    ("unet", "same", [40, 40], 4, None, None),
    ("unet", "same", [40, 40], 5, None, None),
    ("unet", "reflect", [32, 32], 6, None, None),
]


@pytest.mark.parametrize("network,padding,size,levels,downsampling,kernel", FIT_CASES)
def test_the_size_check_accepts_exactly_what_keras_runs(network, padding, size, levels, downsampling, kernel):
    from scn_tf.models import build_model

    data = DataConfig(num_landmarks=2, image_size=size)
    config = NetworkConfig(
        network=network,
        filters=2,
        levels=levels,
        spatial_kernel_size=kernel,
        spatial_downsampling=downsampling,
        dropout_rate=0.0,
        padding=padding,
    )
    try:
        check_network_fits(config, data)
        accepted = True
    except ValueError:
        accepted = False
    try:
        build_model(config, data)(np.zeros((1, *size[::-1], 1), np.float32))
        runs = True
    except Exception:  # TensorFlow's shape errors are not ValueErrors
        runs = False
    assert accepted == runs


def test_the_defaults_and_choices_are_the_models():
    from scn_tf.models import build_model, layers, scn, unet

    assert UNET_VARIANTS == unet.VARIANTS
    for ndim, defaults in DIMENSION_DEFAULTS.items():
        assert defaults == {key: scn.DEFAULTS[ndim][key] for key in defaults}
        for network, levels in DEFAULT_LEVELS.items():
            model = build_model(NetworkConfig(network=network), DataConfig(ndim=ndim, image_size=[32] * ndim))
            assert model.hyperparameters["levels"] == levels
    for padding in PADDINGS:
        layers.Conv(2, 1, 3, padding=padding)
    with pytest.raises(ValueError, match="padding"):
        layers.Conv(2, 1, 3, padding="valid")


def test_an_integer_given_for_a_float_is_stored_as_a_float():
    config = tiny({"training": {"momentum": 0, "learning_rate": 1}, "data": {"spacing": [1, 2]}})
    assert type(config.training.momentum) is float and type(config.training.learning_rate) is float
    assert [type(value) for value in config.data.spacing] == [float, float]
    assert json.loads(config.to_json())["training"]["momentum"] == 0.0


def test_outlier_radii_are_written_as_numbers_whether_given_as_strings_or_numbers(tmp_path):
    assert DataConfig().outlier_radii == [2, 4, 10] and preset("skull2d").data.outlier_radii == [2, 2.5, 3, 4]
    config = tiny({"data": {"outlier_radii": ["2", "2.50", 3.0, 10]}})
    assert config.data.outlier_radii == [2, 2.5, 3, 10]
    assert [type(radius) for radius in config.data.outlier_radii] == [int, float, int, int]
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    assert json.loads(path.read_text())["data"]["outlier_radii"] == [2, 2.5, 3, 10]
    assert load_config(path).data.outlier_radii == [2, 2.5, 3, 10]
    refused({"data": {"outlier_radii": ["two"]}}, "data.outlier_radii must be a number, got 'two'")


def test_sections_that_are_not_objects_and_file_errors_name_the_place(tmp_path):
    refused({"network": "scn"}, "network must be a JSON object of keys and values, got 'scn'")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(["data"]))
    with pytest.raises(ValueError, match=re.escape(f"{path}: a configuration must be a JSON object")):
        load_config(path)
    path.write_text(json.dumps({"network": {"filters": True}}))
    with pytest.raises(ValueError, match=re.escape(f"{path}: network.filters must be an integer or null, got True")):
        load_config(path, preset("cpu2d"))


@pytest.mark.parametrize(
    "values,arguments,fragment",
    [
        ({"network": {"filters": "8"}}, [], "network.filters must be an integer or null, got '8'"),
        ({"network": {"levels": 10}}, [], "network.levels 10 needs every side of data.image_size [128, 128]"),
        ({"data": {"intensity_scale": 0}}, [], "data.intensity_scale must not be 0"),
        ({"data": {"image_size": None}}, [], "data.image_size must be a list of integers, got null"),
        ({}, ["--image_size", "30,30"], "network.levels 4 needs every side of data.image_size [30, 30]"),
    ],
)
def test_scn_train_refuses_a_bad_configuration_before_writing(values, arguments, fragment, tmp_path, caplog):
    from scn_tf.cli import train

    config = tmp_path / "bad.json"
    config.write_text(json.dumps(values))
    (tmp_path / "train.txt").write_text("a\n")
    output = tmp_path / "run"
    status = train.run(
        [
            "scn-train",
            "--preset",
            "cpu2d",
            "--config",
            str(config),
            "--data_dir",
            str(tmp_path),
            "--train_ids",
            str(tmp_path / "train.txt"),
            "--output_dir",
            str(output),
            *arguments,
        ]
    )
    assert status == 1
    assert fragment in caplog.text
    assert not output.exists()
