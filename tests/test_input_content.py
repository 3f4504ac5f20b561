"""Inputs that are not what the model expects: image headers claiming sizes beyond memory, alpha channels, pixel
types other than the training images', images smaller than the network's downsampling, landmark CSVs and id
lists with infinite values, byte-order marks, other encodings and repeated ids, and training data that
overlaps the test ids, lacks annotations or changes between a run and its resume."""

import json
import logging
import resource
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from conftest import write_dataset
from scn_tf.configs import AugmentationConfig, DataConfig, ExperimentConfig, NetworkConfig, TrainingConfig
from scn_tf.data.ids import validate_ids
from scn_tf.data.io import (
    DataError,
    check_header,
    conform_pixel_type,
    read_header,
    read_id_list,
    read_image,
    read_image_typed,
    read_landmarks_csv,
)
from scn_tf.model_dir import (
    DATA_DIGEST_FILE,
    PIXEL_TYPES_FILE,
    check_resume,
    load_pixel_types,
    write_data_digest,
    write_model,
    write_model_files,
)
from scn_tf.preflight import (
    check_image_extent,
    check_inputs,
    check_training_data,
    network_downsampling,
    training_data_digest,
)


def tiny_config(data=None, **network):
    data = data or DataConfig(name="tiny", ndim=2, num_landmarks=3, image_suffix=".mha", image_size=[32, 32])
    values = dict(filters=4, levels=2, spatial_kernel_size=3, spatial_downsampling=4)
    values.update(network)
    return ExperimentConfig(data, AugmentationConfig(), NetworkConfig(**values), TrainingConfig(iterations=2))


def experiment_config(data: DataConfig, **network) -> ExperimentConfig:
    return ExperimentConfig(data, AugmentationConfig(), NetworkConfig(**network), TrainingConfig())


# image size from the header


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_header(path, width, height):
    """A valid PNG signature and IHDR (8-bit grey) claiming width x height, then a few bytes of pixel data."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"IDAT", zlib.compress(b"\0" * 100)))


def write_compressed_meta_header(path, side):
    data = zlib.compress(b"\0" * 1000)
    header = (
        f"ObjectType = Image\nNDims = 2\nDimSize = {side} {side}\nElementType = MET_UCHAR\nCompressedData = True\n"
        f"CompressedDataSize = {len(data)}\nElementSpacing = 1 1\nElementDataFile = LOCAL\n"
    )
    path.write_bytes(header.encode() + data)


def test_png_header_beyond_the_voxel_limit_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    write_png_header(path, 100_000, 100_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"huge\.png: image size \(100000, 100000\) in the header .* 93\.1 GiB"):
        read_image(path)
    assert time.perf_counter() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no big allocation


def test_compressed_meta_image_header_beyond_memory_is_refused(tmp_path):
    path = tmp_path / "huge.mha"
    write_compressed_meta_header(path, 60_000)
    header = read_header(path)  # the header only, whatever the machine's memory
    assert (header.size, header.components, header.pixel_type) == ((60_000, 60_000), 1, "uint8")
    with pytest.raises(DataError, match=r"huge\.mha: image size \(60000, 60000\).* 33\.5 GiB .* 8\.0 GiB is available"):
        check_header(path, header, available=8 * 2**30)
    # read_image itself, under a 3 GiB address space: refused from the header, quickly, whatever the machine
    script = (
        "import resource, sys, time\n"
        "from scn_tf.data.io import DataError, read_image\n"
        "start = time.perf_counter()\n"
        "try:\n"
        "    read_image(sys.argv[1])\n"
        "except DataError as error:\n"
        "    print(error)\n"
        "print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.RLIM_INFINITY))

    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, preexec_fn=limit, timeout=120
    )
    message, figures = result.stdout.splitlines()
    assert "huge.mha: image size (60000, 60000) in the header" in message and "33.5 GiB" in message, result.stderr
    seconds, peak_kib = figures.split()
    assert float(seconds) < 1.0 and int(peak_kib) < 1_000_000


def test_jpeg_header_is_checked_before_pil_decodes_it(tmp_path):
    path = tmp_path / "wide.jpg"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((8, 8), 100, np.uint8)), str(path))
    content = bytearray(path.read_bytes())
    position = 2
    while content[position + 1] not in (0xC0, 0xC1, 0xC2):  # walk the markers to the frame header
        position += 2 + struct.unpack(">H", content[position + 2 : position + 4])[0]
    content[position + 5 : position + 9] = struct.pack(">HH", 60_000, 60_000)
    path.write_bytes(bytes(content))
    assert read_header(path).size == (60_000, 60_000)
    with pytest.raises(DataError, match=r"wide\.jpg: image size \(60000, 60000\).* 4\.0 GiB is available"):
        check_header(path, read_header(path), available=4 * 2**30)


# alpha channels


def ramp(shape=(10, 12)):
    return (np.arange(np.prod(shape)) % 256).astype(np.uint8).reshape(shape)


def test_alpha_is_dropped_with_a_warning(tmp_path, caplog):
    grey = ramp()
    colour = np.stack([grey, grey // 2, 255 - grey], axis=-1)
    alpha = ((np.arange(grey.size) * 37) % 256).astype(np.uint8).reshape(grey.shape)
    Image.fromarray(colour, "RGB").save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([colour, alpha]), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(grey, "L").save(tmp_path / "l.png")
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(tmp_path / "la.png")  # SimpleITK cannot read it
    with caplog.at_level(logging.WARNING, logger="scn_tf"):
        rgba = sitk.GetArrayFromImage(read_image(tmp_path / "rgba.png"))
        la, pixel_type = read_image_typed(tmp_path / "la.png")
    np.testing.assert_array_equal(rgba, sitk.GetArrayFromImage(read_image(tmp_path / "rgb.png")))
    np.testing.assert_array_equal(rgba, np.mean([grey, grey // 2, 255 - grey], axis=0, dtype=np.float32))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(la), grey.astype(np.float32))
    assert pixel_type == "uint8" and la.GetSpacing() == read_image(tmp_path / "l.png").GetSpacing()
    assert "rgba.png: 4-component image, its last component taken as alpha (transparency) and dropped" in caplog.text
    assert "la.png: 2-component image" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scn_tf"):
        read_image(tmp_path / "rgb.png")
    assert "alpha" not in caplog.text


# pixel types


def write_png_pair(folder, names=("a", "b")):
    """8-bit PNGs and the same pictures as 16-bit PNGs (values x 257: the same grey levels)."""
    (folder / "images").mkdir(parents=True)
    (folder / "wide").mkdir()
    for offset, name in enumerate(names):
        picture = np.roll(ramp((40, 48)), offset * 5, axis=1)
        Image.fromarray(picture).save(folder / "images" / f"{name}.png")
        Image.fromarray(picture.astype(np.uint16) * 257).save(folder / "wide" / f"{name}.png")
    (folder / "landmarks.csv").write_text("".join(f"{name},10,12,20,22\n" for name in names))
    return DataConfig(name="png", ndim=2, num_landmarks=2, image_size=[32, 32], landmark_units="pixel")


@pytest.fixture(scope="module")
def png_model(tmp_path_factory):
    """A model folder whose pixel type record comes from a LandmarkSource over 8-bit PNGs."""
    from scn_tf.data.pipeline import LandmarkSource

    root = tmp_path_factory.mktemp("png")
    data = write_png_pair(root)
    record = LandmarkSource(data, root, ["a", "b"], verbose=False).pixel_type_record()
    config = tiny_config(data)
    write_model(root / "model", "last", lambda path: path.write_bytes(b"w"), 2, np.ones(2), {PIXEL_TYPES_FILE: record})
    return root, config


def test_training_records_the_pixel_types_and_prediction_checks_them(png_model, caplog):
    from scn_tf.inference import read_model_input

    root, config = png_model
    record = load_pixel_types(root / "model")
    assert record == {"pixel_types": ["uint8"], "value_range": [0.0, 255.0]}
    assert read_image_typed(root / "wide" / "a.png")[1] == "uint16"
    eight_bit = sitk.GetArrayFromImage(read_model_input(root / "images" / "a.png", config, record))
    with pytest.raises(DataError, match=r"a\.png: 16-bit \(uint16\) image, the model was trained on 8-bit \(uint8\)"):
        read_model_input(root / "wide" / "a.png", config, record)
    rescaling = config.updated({"data": {"pixel_type_policy": "rescale"}})
    rescaled = sitk.GetArrayFromImage(read_model_input(root / "wide" / "a.png", rescaling, record))
    np.testing.assert_allclose(rescaled, eight_bit, atol=1e-3)  # x 257 x 255 / 65535: the same grey levels
    overridden = read_model_input(root / "wide" / "a.png", config, record, policy="rescale")  # a flag's way
    np.testing.assert_array_equal(sitk.GetArrayFromImage(overridden), rescaled)
    percentile = config.updated({"data": {"normalization": "percentile"}})  # scale-invariant: no check
    read_model_input(root / "wide" / "a.png", percentile, record)
    with caplog.at_level(logging.WARNING, logger="scn_tf"):
        assert load_pixel_types(root) is None  # a folder without the record
        image = read_model_input(root / "wide" / "a.png", config, None)
    assert "pixel type cannot be checked" in caplog.text
    assert sitk.GetArrayFromImage(image).max() > 255


def test_pixel_type_policies():
    image = sitk.GetImageFromArray(np.array([[0.0, 100.0, 255.0]], np.float32))
    assert conform_pixel_type(image, "a.png", "uint8", ["uint8"]) is image
    assert conform_pixel_type(image, "a.mha", "float64", ["float32"]) is image  # floats keep their values
    assert conform_pixel_type(image, "a.png", "uint16", ["uint8", "uint16"]) is image  # any training type
    with pytest.raises(DataError, match=r"a\.png: 8-bit \(uint8\) image, .*trained on 32-bit float \(float32\)"):
        conform_pixel_type(image, "a.png", "uint8", ["float32"], value_range=[-1000.0, 3000.0])
    to_float = conform_pixel_type(image, "a.png", "uint8", ["float32"], "rescale", [-1000.0, 3000.0])
    np.testing.assert_allclose(sitk.GetArrayFromImage(to_float), [[-1000.0, 1000.0 * 400 / 255 - 1000, 3000.0]])
    to_uint8 = conform_pixel_type(image * 2 + 10, "a.mha", "float32", ["uint8"], "rescale")
    np.testing.assert_allclose(sitk.GetArrayFromImage(to_uint8), [[0.0, 100.0, 255.0]], atol=1e-4)
    signed = conform_pixel_type(image, "a.nii", "int16", ["uint8"], "rescale")  # full range onto full range
    np.testing.assert_allclose(sitk.GetArrayFromImage(signed), (np.array([[0, 100, 255]]) + 32768) * 255 / 65535)
    with pytest.raises(ValueError, match="data.pixel_type_policy"):
        tiny_config().updated({"data": {"pixel_type_policy": "clip"}})


# images smaller than the network's downsampling


def test_network_downsampling_by_network():
    def factor(**network):
        return network_downsampling(experiment_config(DataConfig(image_size=[384, 384]), **network))

    assert factor() == 16  # SCN 2D: 4 levels (8) and spatial downsampling 16
    assert factor(levels=5, spatial_downsampling=4) == 16 and factor(levels=3, spatial_downsampling=6) == 12
    assert factor(network="unet") == 16 and factor(network="la") == 8
    assert network_downsampling(experiment_config(DataConfig(ndim=3, image_size=[64, 64, 64]))) == 8


def test_images_smaller_than_the_network_can_use_are_refused(tmp_path):
    from scn_tf.inference import read_model_input

    config = experiment_config(DataConfig(image_size=[512, 512]))  # SCN 2D: at least 16 pixels per axis
    with pytest.raises(DataError, match=r"one\.png: image size \(1, 1\) .* the network needs at least 16 along"):
        check_image_extent("one.png", (1, 1), (1.0, 1.0), config)
    check_image_extent("ok.png", (16, 16), (1.0, 1.0), config)
    with pytest.raises(DataError, match=r"strip\.png: image size \(1024, 15\) .* has 15 pixel\(s\) along y"):
        check_image_extent("strip.png", (1024, 15), (1.0, 1.0), config)
    fixed = config.updated({"data": {"spacing": [1.0, 1.0]}})
    with pytest.raises(DataError, match=r"small\.mha: .* 20 pixel\(s\) and spans 2\.0 network pixels of 1 mm along x"):
        check_image_extent("small.mha", (20, 20), (0.1, 0.1), fixed)
    check_image_extent("fine.mha", (160, 160), (0.1, 0.1), fixed)
    check_image_extent("single_slice.mha", (32, 32, 1), (1.0, 1.0, 1.0), config)
    sitk.WriteImage(sitk.Image([1, 1], sitk.sitkUInt8), str(tmp_path / "dot.mha"))
    with pytest.raises(DataError, match=r"dot\.mha: image size \(1, 1\)"):
        read_model_input(tmp_path / "dot.mha", config, None)
    data = write_dataset(tmp_path / "data")
    sitk.WriteImage(sitk.Image([3, 40], sitk.sitkFloat32), str(tmp_path / "data" / "images" / "c.mha"))
    with pytest.raises(DataError, match=r"c\.mha: image size \(3, 40\) .* needs at least 4"):
        check_inputs(tiny_config(data), tmp_path / "data", {"training": ["a", "b"], "test": ["c"]})


# landmark CSVs and id lists


def test_infinite_and_unreadable_coordinates_name_row_and_column(tmp_path):
    path = tmp_path / "l.csv"
    for text in ("inf", "-inf", "Infinity"):
        path.write_text(f"a,1,2,3,4\nb,1,{text},3,4\n")
        with pytest.raises(DataError, match=rf"l\.csv, row 2 \(id 'b'\), column 3 \(landmark 1 y\): '{text}' is inf"):
            read_landmarks_csv(path, 2, 2)
    path.write_text("a,1,2,1.2.3,4\n")
    with pytest.raises(DataError, match=r"row 1 \(id 'a'\), column 4 \(landmark 2 x\): '1\.2\.3' is not a number"):
        read_landmarks_csv(path, 2, 2)
    path.write_text("a,1,,nan,NaN\n")
    assert np.isnan(read_landmarks_csv(path, 2, 2)["a"]).tolist() == [[False, True], [True, True]]


def test_byte_order_marks_and_encodings(tmp_path):
    path = tmp_path / "l.csv"
    text = "a,1,2,3,4\nb,5,6,7,8\n"
    path.write_text(text)
    expected = read_landmarks_csv(path, 2, 2)
    for encoding in ("utf-8-sig", "utf-16", "utf-32"):
        path.write_bytes(text.encode(encoding))
        table = read_landmarks_csv(path, 2, 2)
        assert list(table) == ["a", "b"] and all(np.array_equal(table[k], expected[k]) for k in table), encoding
    path.write_bytes(b"a,1,2,3,4\n" + "bé,1,2,3,4\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"l\.csv: landmark file is not UTF-8 text \(byte offset 11: e9\)"):
        read_landmarks_csv(path, 2, 2)
    listing = tmp_path / "ids.txt"
    listing.write_bytes("a\nb\n".encode("utf-8-sig"))
    assert read_id_list(listing) == ["a", "b"]
    listing.write_bytes("a\nb\n".encode("utf-16"))
    assert read_id_list(listing) == ["a", "b"]


def test_repeated_ids_are_refused(tmp_path):
    listing = tmp_path / "ids.txt"
    listing.write_text("a\nb\n# c\n\na\n")
    with pytest.raises(DataError, match=r"ids\.txt: id 'a' appears twice, on lines 1 and 5"):
        read_id_list(listing)
    with pytest.raises(DataError, match=r"--ids: id 'b' appears twice \(entries 2 and 3\)"):
        validate_ids(["a", "b", "b"], "--ids")


def test_evaluate_refuses_a_repeated_id_in_its_id_list(tmp_path, caplog):
    from scn_tf.cli import evaluate

    (tmp_path / "truth.csv").write_text("a,10,10\nb,30,30\n")
    (tmp_path / "pred.csv").write_text("a,11,10\nb,30,32\n")
    (tmp_path / "ids.txt").write_text("a\nb\na\n")
    arguments = ["--predictions", tmp_path / "pred.csv", "--ground_truth", tmp_path / "truth.csv", "--ndim", "2"]
    arguments += ["--output_dir", tmp_path / "report", "--ids", tmp_path / "ids.txt"]
    with caplog.at_level(logging.ERROR):
        assert evaluate.run(["scn-evaluate", *map(str, arguments)]) == 1
    assert "ids.txt: id 'a' appears twice, on lines 1 and 3" in caplog.text
    assert not (tmp_path / "report" / "metrics.json").exists()


# training data


def test_training_data_warnings_and_digest(tmp_path, caplog):
    data = write_dataset(tmp_path / "data", ids=("a", "b", "c", "d"))
    csv = tmp_path / "data" / "landmarks.csv"
    rows = csv.read_text().splitlines()
    csv.write_text("\n".join(rows[:3] + ["d," + ",".join(["NaN"] * 6)]) + "\n")
    config = tiny_config(data)
    with caplog.at_level(logging.WARNING, logger="scn_tf"):
        digest = check_training_data(config, tmp_path / "data", ["a", "b", "d"], ["a", "c"])
    assert "1 of 2 test id(s) are training ids too (a)" in caplog.text
    assert "1 training id(s) without any annotated landmark, which teach the network nothing: d" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scn_tf"):
        same = check_training_data(config, tmp_path / "data", ["d", "b", "a"], ["c"])
    assert same == digest and "test id" not in caplog.text  # the order does not count; c is no training id
    annotations = read_landmarks_csv(csv, 3, 2)
    assert training_data_digest(annotations, ["a", "b"]) != training_data_digest(annotations, ["a", "b", "d"])
    annotations["a"] = annotations["a"] + 0.5
    assert training_data_digest(annotations, ["a", "b", "d"]) != digest


def test_resume_with_changed_training_data_warns(tmp_path, caplog):
    config = tiny_config()
    write_model_files(tmp_path, config)
    write_data_digest(tmp_path, "1" * 64)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt-2.index").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="scn_tf"):
        check_resume(tmp_path, config, "1" * 64)
    assert not caplog.text
    with caplog.at_level(logging.WARNING, logger="scn_tf"):
        check_resume(tmp_path, config, "2" * 64)
    assert "--resume with other training data than the run started with" in caplog.text


@pytest.mark.slow
def test_training_records_pixel_types_and_data_digest_and_warns_on_changed_data(tmp_path, caplog):
    from scn_tf.experiment import Experiment

    data = write_dataset(tmp_path / "data")
    config = tiny_config(data)
    Experiment(config, tmp_path / "data", ["a", "b"], [], tmp_path / "run", workers=1).run()
    run = tmp_path / "run"
    assert json.loads((run / PIXEL_TYPES_FILE).read_text())["pixel_types"] == ["float32"]
    assert PIXEL_TYPES_FILE in json.loads((run / "sigmas.json").read_text())["digests"]
    recorded = json.loads((run / DATA_DIGEST_FILE).read_text())["sha256"]
    annotations = read_landmarks_csv(tmp_path / "data" / "landmarks.csv", 3, 2)
    assert recorded == training_data_digest(annotations, ["a", "b"])
    longer = config.updated({"training": {"iterations": 3}})
    with caplog.at_level(logging.WARNING, logger="scn_tf"):
        Experiment(longer, tmp_path / "data", ["a", "b", "c"], [], run, resume=True, workers=1).run()
    assert "--resume with other training data than the run started with" in caplog.text
    assert json.loads((run / DATA_DIGEST_FILE).read_text())["sha256"] == recorded  # the first start's, kept


@pytest.mark.slow
def test_predict_refuses_another_pixel_type_and_too_small_images_and_rescales_on_request(tmp_path):
    from conftest import write_untrained_model

    run = write_untrained_model(tmp_path)  # trained, as its record says, on float32 images with values 0..200
    (run / PIXEL_TYPES_FILE).write_text(json.dumps({"pixel_types": ["float32"], "value_range": [0.0, 200.0]}))
    blobs = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "data" / "images" / "a.mha")))
    Image.fromarray(np.round(blobs / blobs.max() * 255).astype(np.uint8)).save(tmp_path / "a.png")
    sitk.WriteImage(sitk.Image([3, 40], sitk.sitkFloat32), str(tmp_path / "thin.mha"))

    def predict(*arguments):
        output = tmp_path / "out" / "p.csv"
        command = [sys.executable, "-m", "scn_tf.cli.predict", "--model_dir", str(run), "--output", str(output)]
        result = subprocess.run(
            [*command, *map(str, arguments)], capture_output=True, encoding="utf-8", errors="replace"
        )
        return result, output

    result, output = predict(tmp_path / "a.png")
    assert result.returncode == 1, result.stderr
    assert "a.png: 8-bit (uint8) image, the model was trained on 32-bit float (float32) images" in result.stderr
    assert "--pixel_type_policy rescale" in result.stderr and not output.parent.exists()
    result, output = predict(tmp_path / "thin.mha")
    assert result.returncode == 1 and "thin.mha: image size (3, 40)" in result.stderr, result.stderr
    assert "needs at least 4 along every axis" in result.stderr and not output.parent.exists()
    result, output = predict("--pixel_type_policy", "rescale", tmp_path / "a.png")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("values rescaled onto the float32 range [0, 200]") == 1
    assert output.read_text().startswith("a,")
