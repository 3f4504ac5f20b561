"""No data loss and all-or-nothing outputs: existing files replaced only with --overwrite, inputs never
written, and after an error, SIGINT, SIGTERM or a full disk the output folders hold what they held before."""

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import write_dataset, write_untrained_model
from scn_tf.files import STAGING_PREFIX, OutputError, StagedOutputs, Terminated, interrupts_raised, signals_deferred


def command(module, *args, **popen):
    return subprocess.run(
        [sys.executable, "-m", f"scn_tf.cli.{module}", *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        **popen,
    )


def snapshot(folder):
    """{relative path: bytes, or the link's target} of everything under `folder`, hidden files included."""
    state = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        state[relative] = (
            f"-> {os.readlink(path)}" if path.is_symlink() else path.read_bytes() if path.is_file() else "/"
        )
    return state


# StagedOutputs itself


def test_staged_outputs_appear_together_and_only_at_the_end(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with StagedOutputs() as staged:
        first, nested = staged.claim(tmp_path / "a.txt"), staged.claim(tmp_path / "new" / "deeper" / "b.txt")
        staged.path(first).write_text("a")
        staged.path(nested).write_text("b")
        assert not first.exists() and not (tmp_path / "new").exists()  # nothing in place before the end
    assert first.read_text() == "a" and nested.read_text() == "b" and (tmp_path / "keep.txt").read_text() == "mine"
    assert not list(tmp_path.glob(f"{STAGING_PREFIX}*"))


def test_staged_outputs_leave_nothing_after_an_error(tmp_path):
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError, match="boom"), StagedOutputs() as staged:
        staged.path(staged.claim(tmp_path / "a.txt")).write_text("a")
        staged.path(staged.claim(tmp_path / "sub" / "b.txt")).write_text("b")
        raise RuntimeError("boom")
    assert snapshot(tmp_path) == before


def test_claim_refuses_existing_files_without_overwrite_and_inputs_always(tmp_path):
    existing = tmp_path / "out.csv"
    existing.write_text("old")
    with pytest.raises(OutputError, match="out.csv: exists; pass --overwrite"):
        StagedOutputs().claim(existing)
    source = tmp_path / "image.mha"
    source.write_text("pixels")
    link = tmp_path / "link.mha"
    link.symlink_to(source)
    for overwrite in (False, True):
        for target in (source, link, tmp_path / "." / "image.mha"):
            with pytest.raises(OutputError, match="is one of this command's inputs"):
                StagedOutputs(overwrite, inputs=[source]).claim(target)
    with StagedOutputs(overwrite=True) as staged:
        staged.path(staged.claim(existing)).write_text("new")
    assert existing.read_text() == "new" and source.read_text() == "pixels"


def test_a_full_disk_names_the_file_and_leaves_nothing(tmp_path):
    with pytest.raises(OutputError, match=r"disk full while writing .*b\.txt"), StagedOutputs() as staged:
        staged.path(staged.claim(tmp_path / "a.txt")).write_text("a")
        staged.path(staged.claim(tmp_path / "b.txt"))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_signals_are_deferred_while_outputs_move_into_place():
    with interrupts_raised():
        with pytest.raises(Terminated):
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                moved = True  # reached: the signal waited for the end of the block
        assert moved
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)


# The commands


def test_convert_never_deletes_or_replaces_its_sources(tmp_path):
    """Converting a download into its own folder used to replace each image by a link to itself."""
    data = tmp_path / "DATA"
    write_dataset(data, ids=("1", "2"))
    (data / "all.csv").write_text((data / "landmarks.csv").read_text())
    before = snapshot(data)
    for extra in ((), ("--overwrite",)):
        result = command(
            "convert", "--dataset", "hand", "--images", data / "images", "--landmarks", data / "all.csv",
            "--output_dir", data, *extra,
        )  # fmt: skip
        assert result.returncode == 1 and "is one of this command's inputs" in result.stderr, result.stderr
        assert snapshot(data) == before
    converted = tmp_path / "converted"
    (converted / "images").mkdir(parents=True)
    (converted / "images" / "1.mha").write_text("the user's own file")
    result = command(
        "convert", "--dataset", "hand", "--images", data / "images", "--landmarks", data / "all.csv",
        "--output_dir", converted,
    )  # fmt: skip
    assert result.returncode == 1 and "1.mha: exists; pass --overwrite" in result.stderr
    assert snapshot(converted) == {"images": "/", "images/1.mha": b"the user's own file"}
    result = command(
        "convert", "--dataset", "hand", "--images", data / "images", "--landmarks", data / "all.csv",
        "--output_dir", converted, "--overwrite",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (converted / "images" / "1.mha").resolve() == (data / "images" / "1.mha").resolve()
    assert snapshot(data) == before


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    write_untrained_model(root)
    return root


@pytest.mark.slow
def test_predict_replaces_overlays_only_with_overwrite(model_root, tmp_path):
    image = model_root / "data" / "images" / "a.mha"
    overlays = tmp_path / "overlays"
    overlays.mkdir()
    (overlays / "a.png").write_text("the user's picture")
    arguments = ("--model_dir", model_root / "run", "--output", tmp_path / "p.csv", "--overlay_dir", overlays, image)
    result = command("predict", *arguments)
    assert result.returncode == 1 and "a.png: exists; pass --overwrite" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlays"]
    assert (overlays / "a.png").read_text() == "the user's picture"
    result = command("predict", *arguments, "--output", image)  # the last --output wins: the image itself
    assert result.returncode == 1 and "is one of this command's inputs" in result.stderr
    result = command("predict", *arguments, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert (overlays / "a.png").read_bytes().startswith(b"\x89PNG") and (tmp_path / "p.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signal_number, status", [(signal.SIGTERM, 1), (signal.SIGINT, 130)])
def test_predict_interrupted_leaves_nothing(model_root, tmp_path, signal_number, status):
    """SIGTERM or SIGINT while predictions are written: exit 1 (130), 'interrupted', no output and no staging
    folder left, the folders that existed unchanged; through the filter of TensorFlow's C++ lines (no
    TF_CPP_MIN_LOG_LEVEL set), which drops them and lets the message through."""
    images = tmp_path / "images"
    images.mkdir()
    for k in range(40):
        shutil.copy(model_root / "data" / "images" / "a.mha", images / f"i{k:02d}.mha")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "scn_tf.cli.predict", "--model_dir", str(model_root / "run"), "--output",
         str(out / "p.csv"), "--overlay_dir", str(out / "overlays"), "--save_heatmaps", str(out / "heatmaps"),
         *sorted(map(str, images.iterdir()))],
        stderr=subprocess.PIPE, encoding="utf-8", errors="replace",
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob(f"{STAGING_PREFIX}*/overlays/*.png")) and process.poll() is None:
        assert time.monotonic() < deadline, "no staged output appeared"
        time.sleep(0.01)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status and "interrupted" in stderr, stderr
    assert ".cc:" not in stderr and "InitializeLog" not in stderr, stderr
    assert snapshot(tmp_path) == before


def limited_file_size(limit: int):
    """For a child process: files above `limit` bytes fail with EFBIG (SIGXFSZ ignored), as on a full disk."""

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_evaluate_on_a_full_disk_and_with_a_missing_comparison_writes_nothing(tmp_path):
    rng = np.random.default_rng(0)
    truth = tmp_path / "truth.csv"
    truth.write_text("".join(f"i{k}," + ",".join(f"{v:.3f}" for v in rng.uniform(0, 50, 6)) + "\n" for k in range(8)))
    report = tmp_path / "report"
    arguments = ("--predictions", truth, "--ground_truth", truth, "--output_dir", report, "--ndim", "2")
    result = command("evaluate", *arguments, "--compare", tmp_path / "missing" / "metrics.json")
    assert result.returncode == 1 and "missing/metrics.json (--compare)" in result.stderr
    assert not report.exists()
    result = command("evaluate", *arguments, preexec_fn=limited_file_size(8000))
    assert result.returncode == 1 and "disk full while writing" in result.stderr, result.stderr
    assert not report.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["truth.csv"]
    result = command("evaluate", *arguments)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in report.iterdir()) == sorted(
        ["metrics.json", "per_landmark.csv", "summary.txt", "cumulative_ipe.png"]
    )


def test_augment_replaces_its_samples_only_with_overwrite(tmp_path):
    data = write_dataset(tmp_path / "data")
    config = tmp_path / "config.json"
    config.write_text(
        '{"data": {"ndim": 2, "num_landmarks": 3, "image_suffix": ".mha", "image_size": [32, 32], '
        '"intensity_scale": 0.01, "spacing": null}}'
    )
    assert data.num_landmarks == 3
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_0.png").write_text("the user's picture")
    arguments = ("--config", config, "--data_dir", tmp_path / "data", "--ids", "a", "--samples", 2, "--output_dir", out)
    result = command("augment", *arguments)
    assert result.returncode == 1 and "a_0.png: exists; pass --overwrite" in result.stderr
    assert snapshot(out) == {"a_0.png": b"the user's picture"}
    result = command("augment", *arguments, "--overwrite")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"a_{k}{suffix}" for k in (0, 1) for suffix in (".nii.gz", ".csv", ".png"))
    assert sitk.ReadImage(str(out / "a_1.nii.gz")).GetSize() == (32, 32)


def tiny_training(tmp_path, iterations: int, checkpoint_every: int) -> list:
    """scn-train arguments for a 4-filter SCN on the tiny data set, test images included."""
    config = tmp_path / "config.json"
    config.write_text(
        '{"data": {"name": "tiny", "ndim": 2, "num_landmarks": 3, "image_suffix": ".mha", "image_size": [32, 32],'
        ' "intensity_scale": 0.01, "spacing": null}, "network": {"filters": 4, "levels": 2, "spatial_kernel_size": 3,'
        ' "spatial_downsampling": 4}, "training": {"optimizer": "adam", "learning_rate": 0.001, "log_every": 1,'
        f' "iterations": {iterations}, "checkpoint_every": {checkpoint_every}}}}}'
    )
    write_dataset(tmp_path / "data")
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "test.txt").write_text("c\n")
    return ["--config", config, "--data_dir", tmp_path / "data", "--train_ids", tmp_path / "train.txt",
            "--test_ids", tmp_path / "test.txt", "--workers", 1]  # fmt: skip


def temporary_files(folder) -> list:
    return [p for p in folder.rglob("*") if p.name.startswith((".tmp-", STAGING_PREFIX)) or "_temp" in p.name]


@pytest.mark.slow
def test_train_writes_only_into_a_new_or_empty_folder_its_run_or_with_overwrite(tmp_path):
    arguments = tiny_training(tmp_path, iterations=2, checkpoint_every=1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    for extra in ((), ("--resume",)):
        result = command("train", *arguments, "--output_dir", run, *extra)
        assert result.returncode == 1 and "holds notes.txt, not a run" in result.stderr, result.stderr
        assert snapshot(run) == {"notes.txt": b"mine"}
    (run / "notes.txt").unlink()
    result = command("train", *arguments, "--output_dir", run)  # an empty folder is fine
    assert result.returncode == 0, result.stderr
    before = snapshot(run)
    result = command("train", *arguments, "--output_dir", run)
    assert result.returncode == 1 and "already holds a run: pass --resume to continue it, --overwrite" in result.stderr
    assert snapshot(run) == before
    (run / "best.weights.h5").write_bytes(b"an earlier run's")
    result = command("train", *arguments, "--output_dir", run, "--overwrite", "--filters", 6)  # another network
    assert result.returncode == 0, result.stderr
    assert "removed the earlier run's" in result.stderr and not (run / "best.weights.h5").exists()
    assert (run / "last.weights.h5").read_bytes() != before["last.weights.h5"] and not temporary_files(run)


@pytest.mark.slow
def test_train_interrupted_keeps_its_checkpoints_and_no_temporary_file(tmp_path):
    arguments = tiny_training(tmp_path, iterations=400, checkpoint_every=5)
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "scn_tf.cli.train", *map(str, arguments), "--output_dir", str(run)],
        stderr=subprocess.PIPE, encoding="utf-8", errors="replace",
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not list(run.glob("checkpoints/ckpt-*.index")) and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 1 and "interrupted (SIGTERM)" in stderr and "--resume continues" in stderr, stderr
    assert list(run.glob("checkpoints/ckpt-*.index")) and not temporary_files(run)
    assert not (run / "metrics.json").exists() and not (run / "last.weights.h5").exists()


@pytest.mark.slow
def test_train_on_a_full_disk_says_so_and_leaves_no_temporary_file(tmp_path):
    arguments = tiny_training(tmp_path, iterations=20, checkpoint_every=5)
    run = tmp_path / "run"
    result = command("train", *arguments, "--output_dir", run, preexec_fn=limited_file_size(30_000))
    assert result.returncode == 1 and "disk full while training into" in result.stderr, result.stderr
    assert "File too large" in result.stderr and not temporary_files(run)
