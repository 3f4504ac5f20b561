"""Bad inputs and interrupted runs: ids and output paths, image files, configuration values, resumed and
corrupted run folders, the run lock, non-finite training and scn-predict's all-or-nothing output."""

import fcntl
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import write_dataset
from scn_tf.configs import AugmentationConfig, ExperimentConfig, NetworkConfig, TrainingConfig
from scn_tf.data.ids import unique_ids, validate_ids
from scn_tf.data.io import DataError, read_id_list, read_image
from scn_tf.files import OutputError, RunLock, atomic_path, check_output_file, check_writable_dir, inside
from scn_tf.model_dir import ModelDirError, check_consistent, check_resume, write_model, write_model_files
from scn_tf.preflight import ResourceError, check_inputs, check_memory, training_memory


def command(module, *args):
    return subprocess.run(
        [sys.executable, "-m", f"scn_tf.cli.{module}", *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )


def tiny_config(data=None, **network):
    from scn_tf.configs import DataConfig

    data = data or DataConfig(name="tiny", ndim=2, num_landmarks=3, image_suffix=".mha", image_size=[32, 32])
    values = dict(filters=4, levels=2, spatial_kernel_size=3, spatial_downsampling=4)
    values.update(network)
    return ExperimentConfig(data, AugmentationConfig(), NetworkConfig(**values), TrainingConfig(iterations=4))


# ids and output paths


@pytest.mark.parametrize("bad", ["../../escape", "/etc/passwd", "a/b", "a\\b", "..", "", " "])
def test_ids_that_are_not_plain_file_names_are_refused(bad, tmp_path):
    with pytest.raises(DataError, match="train.txt: id") as error:
        validate_ids(["ok", bad], "train.txt")
    assert repr(bad) in str(error.value)
    listing = tmp_path / "ids.txt"
    listing.write_text(f"ok\n{bad}\n" if bad.strip() else "ok\n")
    if bad.strip():
        with pytest.raises(DataError, match="ids.txt"):
            read_id_list(listing)
    assert validate_ids(["001", "a.b", "x_y-1"], "list") == ["001", "a.b", "x_y-1"]


def test_writes_stay_inside_the_output_folder(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    assert inside(root, "a.png") == root.resolve() / "a.png"
    for bad in ("../a.png", "/tmp/a.png", "sub/../../a.png", ".."):
        with pytest.raises(OutputError, match="outside the output folder"):
            inside(root, bad)
    (root / "link").symlink_to(tmp_path)  # a folder link pointing out is followed, and refused
    with pytest.raises(OutputError):
        inside(root, "link/a.png")


def test_output_files_are_not_replaced_without_overwrite(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("old")
    with pytest.raises(OutputError, match="--overwrite"):
        check_output_file(path)
    assert check_output_file(path, overwrite=True) == path
    with pytest.raises(OutputError, match="--overwrite"):
        with atomic_path(path, overwrite=False) as temporary:
            temporary.write_text("new")
    assert path.read_text() == "old" and not list(tmp_path.glob(".tmp-*"))
    with pytest.raises(OutputError, match="not a folder"):
        check_writable_dir(path)
    with pytest.raises(OutputError, match="is a file"):
        check_writable_dir(path / "sub")
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tmp_path)


def test_unique_ids_for_same_named_inputs(tmp_path):
    paths = [tmp_path / "scans" / "a.png", tmp_path / "old" / "a.png", tmp_path / "b.nii.gz", tmp_path / "b.nii.gz"]
    assert unique_ids(paths) == ["scans__a", "old__a", "b", "b#2"]
    assert unique_ids([tmp_path / "x" / "s" / "a.mha", tmp_path / "y" / "s" / "a.mha"]) == ["x__s__a", "y__s__a"]


def test_convert_matches_exact_names():
    from scn_tf.cli.convert import matching_image

    images = {"31": Path("31.mha"), "310": Path("310.mha"), "42_hand": Path("42_hand.png"), "7a": Path("7a.png")}
    assert matching_image(images, "31") == Path("31.mha") and matching_image(images, "310") == Path("310.mha")
    assert matching_image(images, "42") == Path("42_hand.png")
    assert matching_image(images, "3") is None and matching_image(images, "7") is None
    assert matching_image({"310": Path("310.mha")}, "31") is None
    with pytest.raises(DataError, match="several images match"):
        matching_image({"5_a": Path("5_a.png"), "5-b": Path("5-b.png")}, "5")


@pytest.mark.slow
def test_augment_refuses_an_escaping_id(tmp_path):
    data_config = write_dataset(tmp_path / "data")
    config = tmp_path / "c.json"
    config.write_text(tiny_config(data_config).to_json())
    result = command(
        "augment",
        "--config",
        config,
        "--data_dir",
        tmp_path / "data",
        "--ids",
        "a,../../escape",
        "--samples",
        "1",
        "--output_dir",
        tmp_path / "deep" / "out",
    )
    assert result.returncode == 1 and "'../../escape'" in result.stderr and "--ids" in result.stderr
    assert not (tmp_path / "deep").exists() and not list(tmp_path.glob("escape*"))


# images


def write_truncated(path, array):
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".mha", ".nii.gz"])
def test_truncated_image_files_are_errors(suffix, tmp_path):
    array = (np.random.default_rng(0).random((60, 80)) * 255).astype(np.uint8)
    path = tmp_path / f"cut{suffix}"
    write_truncated(path, array if suffix in (".jpg", ".png") else array.astype(np.float32))
    with pytest.raises(DataError, match="cut"):
        read_image(path)


def test_header_size_disagreeing_with_the_data_is_an_error(tmp_path):
    path = tmp_path / "a.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((10, 12), np.float32)), str(path))
    path.write_bytes(path.read_bytes().replace(b"DimSize = 12 10", b"DimSize = 12 11"))
    with pytest.raises(DataError, match="DimSize 12 11.*528 bytes.*480"):
        read_image(path)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_pixels_are_errors(value, tmp_path):
    array = np.ones((5, 6), np.float32)
    array[2, 3] = value
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "n.mha"))
    with pytest.raises(DataError, match=r"n.mha: 1 non-finite pixel.*index \(3, 2\)"):
        read_image(tmp_path / "n.mha")


# configuration values and resources


@pytest.mark.parametrize(
    "section,values,message",
    [
        ("training", {"iterations": -5}, "training.iterations must be at least 1"),
        ("training", {"learning_rate": -1e-3}, "training.learning_rate must be greater than 0"),
        ("training", {"learning_rate": float("nan")}, "finite"),
        ("training", {"sigma_init": 0}, "training.sigma_init must be greater than 0"),
        ("training", {"batch_size": 0}, "training.batch_size"),
        ("data", {"image_size": [100000, 100000]}, "data.image_size must be at most 8192"),
        ("data", {"image_size": [0, 32]}, "data.image_size must be at least 1"),
        ("data", {"outlier_radii": ["-2"]}, "data.outlier_radii must be greater than 0"),
        ("data", {"spacing": [0.0, 1.0]}, "data.spacing"),
    ],
)
def test_bad_configuration_values_are_refused(section, values, message):
    with pytest.raises(ValueError, match=message):
        tiny_config().updated({section: values})


def test_negative_radii_are_refused_by_the_evaluation():
    from scn_tf.evaluation import evaluate

    with pytest.raises(ValueError, match="'-2' is not a positive number"):
        evaluate(["a"], np.zeros((1, 1, 2)), np.zeros((1, 1, 2)), ["2", "-2"])


def test_memory_estimate_by_hand_and_refusal():
    config = tiny_config(filters=4, levels=2)  # 32 x 32 input, 3 landmarks, batch 1
    activations = 32 * 32 * 4 * 8 * 4 * (1 + 1 / 4)
    heatmaps = 32 * 32 * 3 * 8 * 4
    assert training_memory(config, source_voxels=100) == int(activations + heatmaps + 100 * 2 * 4)
    huge = config.updated({"data": {"image_size": [8192, 8192]}, "network": {"filters": 128}})  # 320 + 6 GiB
    with pytest.raises(ResourceError, match=r"needs about 326\.0 GiB of memory, the machine has 4\.0 GiB"):
        check_memory(huge, available=4 * 2**30)
    assert check_memory(config, available=4 * 2**30) < 2**30


def test_preflight_names_a_missing_test_image_and_a_missing_row(tmp_path):
    data_config = write_dataset(tmp_path / "data")
    config = tiny_config(data_config)
    assert check_inputs(config, tmp_path / "data", {"training": ["a", "b"], "test": ["c"]}) == 3 * 60 * 50
    (tmp_path / "data" / "images" / "c.mha").unlink()
    with pytest.raises(DataError, match="c.mha: image file does not exist"):
        check_inputs(config, tmp_path / "data", {"training": ["a", "b"], "test": ["c"]})
    with pytest.raises(DataError, match="no annotation row for test id"):
        check_inputs(config, tmp_path / "data", {"training": ["a"], "test": ["zz"]})


# run folders


def test_resume_with_another_architecture_is_refused_naming_the_keys(tmp_path):
    config = tiny_config()
    write_model_files(tmp_path, config)
    before = (tmp_path / "config.json").read_text()
    check_resume(tmp_path, config.updated({"training": {"iterations": 99, "learning_rate": 1e-2}}))
    other = config.updated({"network": {"filters": 8}, "data": {"image_size": [64, 64]}})
    with pytest.raises(
        ModelDirError,
        match=r"network.filters: saved 4, requested 8; data.image_size: saved "
        r"\[32, 32\], requested \[64, 64\]",
    ):
        check_resume(tmp_path, other)
    assert (tmp_path / "config.json").read_text() == before


def test_model_files_from_different_steps_are_refused(tmp_path):
    def weights(content):
        return lambda path: path.write_bytes(content)

    write_model(tmp_path, "last", weights(b"step 1000"), 1000, np.ones(3), {"config.json": {"iterations": 1000}})
    check_consistent(tmp_path, "last")
    assert json.loads((tmp_path / "sigmas.json").read_text())["step"] == 1000
    (tmp_path / "last.weights.h5").write_bytes(b"step 300")  # a run stopped between the renames
    with pytest.raises(ModelDirError, match="last.weights.h5 is not the one sigmas.json was written with"):
        check_consistent(tmp_path, "last")
    write_model(tmp_path, "last", weights(b"step 2000"), 2000, np.ones(3), {"config.json": {"iterations": 2000}})
    (tmp_path / "config.json").write_text(json.dumps({"iterations": 1000}))
    with pytest.raises(ModelDirError, match="config.json is not the one"):
        check_consistent(tmp_path, "last")
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "sigmas.json").write_text(json.dumps({"step": 3, "sigmas": [1.0]}))  # written before digests
    check_consistent(legacy, "last")


def test_run_lock_refuses_a_second_writer_and_takes_over_a_dead_ones(tmp_path, caplog):
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
        with pytest.raises(OutputError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / ".lock").exists()  # released at the end
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / ".lock").write_text(str(dead.pid))
    with caplog.at_level(logging.WARNING, logger="scn_tf"):
        with RunLock(tmp_path):
            pass
    assert f"taking over the lock of process {dead.pid}, which is no longer running" in caplog.text
    assert not (tmp_path / ".lock").exists()


def test_run_lock_of_a_killed_process_stays_and_is_taken_over(tmp_path, caplog):
    code = f"import time\nfrom scn_tf.files import RunLock\nlock = RunLock({str(tmp_path)!r}).acquire()\n"
    holder = subprocess.Popen(
        [sys.executable, "-c", code + "print('locked', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline() == "locked\n"
    with pytest.raises(OutputError, match=f"pid {holder.pid}"):
        RunLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    assert (tmp_path / ".lock").read_text() == str(holder.pid)  # a crash leaves it
    with caplog.at_level(logging.WARNING, logger="scn_tf"), RunLock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert f"taking over the lock of process {holder.pid}" in caplog.text and not (tmp_path / ".lock").exists()


def test_run_lock_taken_on_a_file_removed_meanwhile_is_taken_again(tmp_path, monkeypatch):
    """Between opening .lock and locking it, its owner released and removed it and a third process created a
    new one: the lock must be on the file now at the path, or two processes would hold the folder."""
    flock = fcntl.flock
    replaced = []

    def replacing_flock(file, operation):
        if not replaced:
            (tmp_path / ".lock").unlink()
            (tmp_path / ".lock").write_text("")
            replaced.append(True)
        return flock(file, operation)

    monkeypatch.setattr(fcntl, "flock", replacing_flock)
    lock = RunLock(tmp_path).acquire()
    assert replaced and os.path.samestat(os.fstat(lock._file.fileno()), os.stat(tmp_path / ".lock"))
    lock.release()


# training


def tiny_trainer(path, **settings):
    import keras

    from scn_tf.models import SpatialConfigurationNet
    from scn_tf.training import Trainer

    keras.utils.set_random_seed(0)
    model = SpatialConfigurationNet(
        num_landmarks=2, ndim=2, dropout_rate=0.3, filters=4, levels=2, spatial_kernel_size=3, spatial_downsampling=4
    )
    values = dict(iterations=4, learning_rate=1e-4, sigma_init=2.0, log_every=2, checkpoint_every=2, max_to_keep=3)
    values.update(settings)
    return Trainer(model, 2, TrainingConfig(**values), path)


def blob_stream(poison=lambda step: False):
    import tensorflow as tf

    from conftest import blob_sample

    def batches(start=0):
        step = start
        while True:
            image, coords, valid = blob_sample(np.random.default_rng(step % 5))
            if poison(step):
                image = image.copy()
                image[0, 0, 0, 0] = np.nan
            yield tf.constant(image), tf.constant(coords), tf.constant(valid)
            step += 1

    return batches


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_and_garbage_index_is_ignored(tmp_path, caplog):
    tiny_trainer(tmp_path).fit(blob_stream())
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "checkpoint").write_text("garbage {{{")
    resumed = tiny_trainer(tmp_path, iterations=6)
    with caplog.at_level(logging.INFO, logger="scn_tf"):
        resumed.fit(blob_stream())
    assert "(step 4)" in caplog.text and resumed.current_step == 6
    data = next(checkpoints.glob("ckpt-6.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    caplog.clear()
    again = tiny_trainer(tmp_path, iterations=6)
    with caplog.at_level(logging.INFO, logger="scn_tf"):
        again.fit(blob_stream())
    assert "ckpt-6 is corrupt" in caplog.text and "falling back" in caplog.text and "(step 4)" in caplog.text
    assert again.current_step == 6


@pytest.mark.slow
def test_nonfinite_limit_counts_consecutive_failures_and_names_the_batch(tmp_path):
    from scn_tf.training import TrainingError

    # a non-finite step in every other logging interval: 3 recoveries in all, never 2 in a row
    sporadic = tiny_trainer(tmp_path / "sporadic", iterations=16, log_every=2, checkpoint_every=2, max_recoveries=1)
    sporadic.fit(blob_stream(lambda step: step in (1, 5, 9)))
    assert sporadic.current_step == 16 and sporadic.nonfinite_steps == 3
    always = tiny_trainer(tmp_path / "always", iterations=16, log_every=2, checkpoint_every=2, max_recoveries=2)
    with pytest.raises(TrainingError) as error:
        always.fit(blob_stream(lambda step: True), batch_ids=lambda step: [f"id{step}"])
    message = str(error.value)
    assert "\n" not in message and "after 2 consecutive restarts" in message
    assert "at step 2" in message and "learning rate 2.5e-05" in message and "batch samples id1" in message


@pytest.mark.slow
def test_learned_sigma_is_clamped(tmp_path):
    trainer = tiny_trainer(
        tmp_path,
        iterations=6,
        optimizer="adam",
        learning_rate=0.5,
        sigma_min=1.5,
        alpha=1e4,
        log_every=3,
        checkpoint_every=3,
    )
    trainer.fit(blob_stream())
    sigmas = trainer.sigma_values()
    assert np.all(sigmas >= np.float32(1.5)) and np.any(sigmas == np.float32(1.5))


# scn-predict


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    import keras

    from scn_tf.models import build_model

    root = tmp_path_factory.mktemp("rel")
    config = tiny_config(write_dataset(root / "data"))
    keras.utils.set_random_seed(0)
    model = build_model(config.network, config.data)
    model(np.zeros((1, 32, 32, 1), np.float32))
    write_model(root / "run", "last", model.save_weights, 0, np.full(3, 2.0), {"config.json": config.to_dict()})
    return root


@pytest.mark.slow
def test_predict_checks_every_input_before_writing(model_run, tmp_path):
    images = model_run / "data" / "images"
    broken = tmp_path / "broken.mha"
    array = np.ones((50, 60), np.float32)
    array[4, 4] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(broken))
    out = tmp_path / "out" / "p.csv"
    result = command("predict", "--model_dir", model_run / "run", "--output", out, images / "a.mha", broken)
    assert result.returncode == 1 and "broken.mha: 1 non-finite pixel" in result.stderr
    assert not (tmp_path / "out").exists()
    result = command(
        "predict", "--model_dir", model_run / "run", "--output", out, "--skip_bad", images / "a.mha", broken
    )
    assert result.returncode == 0, result.stderr
    assert [row.split(",")[0] for row in out.read_text().splitlines()] == ["a"]
    assert json.loads(out.with_suffix(".json").read_text())["skipped"] == [str(broken)]
    result = command("predict", "--model_dir", model_run / "run", "--output", out, images / "a.mha")
    assert result.returncode == 1 and "--overwrite" in result.stderr


@pytest.mark.slow
def test_predict_keeps_same_named_inputs_apart(model_run, tmp_path):
    images = model_run / "data" / "images"
    for folder in ("scans", "old"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.mha").symlink_to(images / ("a.mha" if folder == "scans" else "b.mha"))
    out = tmp_path / "p.csv"
    result = command(
        "predict",
        "--model_dir",
        model_run / "run",
        "--output",
        out,
        "--overwrite",
        tmp_path / "scans" / "a.mha",
        tmp_path / "old" / "a.mha",
    )
    assert result.returncode == 0, result.stderr
    rows = out.read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["scans__a", "old__a"] and rows[0] != rows[1]
    files = json.loads(out.with_suffix(".json").read_text())["images"]
    assert files["old__a"]["file"] == str(tmp_path / "old" / "a.mha")


@pytest.mark.slow
def test_train_refuses_a_missing_test_image_before_writing(tmp_path):
    data_config = write_dataset(tmp_path / "data")
    config = tmp_path / "c.json"
    config.write_text(tiny_config(data_config).to_json())
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "test.txt").write_text("missing\n")
    (tmp_path / "abs.txt").write_text(f"{tmp_path / 'data' / 'images' / 'c'}\n")
    common = ["--config", config, "--data_dir", tmp_path / "data", "--train_ids", tmp_path / "train.txt"]
    result = command("train", *common, "--test_ids", tmp_path / "test.txt", "--output_dir", tmp_path / "run")
    assert result.returncode == 1 and "no annotation row for test id(s) missing" in result.stderr
    assert not (tmp_path / "run").exists()
    result = command("train", *common, "--test_ids", tmp_path / "abs.txt", "--output_dir", tmp_path / "run")
    assert result.returncode == 1 and "abs.txt: id" in result.stderr and "path separator" in result.stderr
    assert not (tmp_path / "run").exists()
