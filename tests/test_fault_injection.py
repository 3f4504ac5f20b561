"""kill -9 at random points of a tiny training run (dropout and augmentation on, a checkpoint every step, so
that most kills land inside a checkpoint or model write), resumed each time with `scn-train --resume`
until it completes: the result equals an uninterrupted run's bit for bit."""

import json
import random
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import write_dataset
from scn_tf.configs import AugmentationConfig, ExperimentConfig, NetworkConfig, TrainingConfig

pytestmark = pytest.mark.slow

KILLS = 20
ITERATIONS = 100  # enough steps that 20 kills land before the run ends on a fast machine


def train_command(config, data, ids, run):
    return [
        sys.executable,
        "-m",
        "scn_tf.cli.train",
        "--config",
        str(config),
        "--data_dir",
        str(data),
        "--train_ids",
        str(ids),
        "--output_dir",
        str(run),
        "--resume",
        "--workers",
        "1",
    ]


def h5_arrays(path):
    arrays = {}
    with h5py.File(path, "r") as file:
        file.visititems(
            lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
        )
    return arrays


def checkpoint_tensors(prefix):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    data = tmp_path / "data"
    data_config = write_dataset(data)
    config = ExperimentConfig(
        data_config,
        AugmentationConfig(translation=2.0, rotation=0.1, scale=0.1, intensity_shift=0.1),
        NetworkConfig(filters=4, levels=2, spatial_kernel_size=3, spatial_downsampling=4, dropout_rate=0.3),
        TrainingConfig(
            iterations=ITERATIONS,
            optimizer="adam",
            learning_rate=1e-3,
            sigma_init=2.0,
            checkpoint_every=1,
            log_every=1,
            max_to_keep=2,
        ),
    )
    config_path, ids = tmp_path / "config.json", tmp_path / "train.txt"
    config_path.write_text(config.to_json())
    ids.write_text("a\nb\nc\n")

    straight = subprocess.run(
        train_command(config_path, data, ids, tmp_path / "straight"),
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert straight.returncode == 0, straight.stderr[-3000:]

    run, rng, kills, logs = tmp_path / "killed", random.Random(16), 0, []
    for attempt in range(KILLS * 4):  # noqa: B007 (reported in the assertion below)
        process = subprocess.Popen(
            train_command(config_path, data, ids, run),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
        )
        wanted, seen, lines = rng.randint(1, 3), 0, []
        for line in process.stderr:
            lines.append(line)
            seen += "checkpoint saved" in line or "restored" in line
            if seen >= wanted and kills < KILLS:
                time.sleep(rng.uniform(0.0, 0.3))
                process.send_signal(signal.SIGKILL)
                break
        lines += process.stderr.read().splitlines(keepends=True)
        code = process.wait()
        logs.append("".join(lines))
        if code == -signal.SIGKILL:
            kills += 1
            continue
        assert code == 0, logs[-1][-3000:]
        break
    assert kills >= KILLS, (kills, attempt)
    assert any("taking over the lock" in log for log in logs)  # the killed process's lock file was left

    for name, expected in h5_arrays(tmp_path / "straight" / "last.weights.h5").items():
        np.testing.assert_array_equal(h5_arrays(run / "last.weights.h5")[name], expected, err_msg=name)
    sigmas = [json.loads((folder / "sigmas.json").read_text())["sigmas"] for folder in (tmp_path / "straight", run)]
    assert sigmas[0] == sigmas[1]
    final = f"checkpoints/ckpt-{ITERATIONS}"
    reference, resumed = checkpoint_tensors(tmp_path / "straight" / final), checkpoint_tensors(run / final)
    assert sorted(reference) == sorted(resumed) and any("random_states" in name for name in reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
