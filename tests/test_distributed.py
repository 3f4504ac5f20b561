"""tf.distribute: one step on two replicas with batch 1 each equals one step on one replica with batch 2.

Each configuration runs in its own process (tests/distributed_step.py), because logical devices and
multi-worker collectives must be set up before TensorFlow initialises.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_dataset
from scn_tf.configs import AugmentationConfig
from scn_tf.data.pipeline import LandmarkSource, make_dataset

# Every test here starts a process that imports TensorFlow.
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("distributed_step.py")


def run_step(mode: str, out: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), mode, str(out)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output.decode("utf-8", errors="replace")[-3000:]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def assert_same_step(single: dict, distributed: dict) -> None:
    assert int(distributed["replicas"]) == 2 and int(single["replicas"]) == 1
    assert float(single["gradient_norm"]) > 5.0  # clipping (at 5) is active
    assert float(single["moved"]) > 1e-4  # the step changed the weights
    assert float(distributed["loss"]) == pytest.approx(float(single["loss"]), rel=1e-5)
    assert float(distributed["gradient_norm"]) == pytest.approx(float(single["gradient_norm"]), rel=1e-5)
    np.testing.assert_allclose(distributed["sigmas"], single["sigmas"], rtol=0, atol=1e-6)
    for key in (k for k in single.files if k.startswith("w")):
        np.testing.assert_allclose(distributed[key], single[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert float(distributed["sigma_spread"]) == 0.0 and float(distributed["weight_spread"]) == 0.0


def test_mirrored_two_replicas_equal_one_replica_with_twice_the_batch(tmp_path):
    processes = [run_step("single", tmp_path / "single.npz"), run_step("mirrored", tmp_path / "mirrored.npz")]
    for process in processes:
        finish(process)
    assert_same_step(np.load(tmp_path / "single.npz"), np.load(tmp_path / "mirrored.npz"))


def test_two_workers_equal_one_replica_with_twice_the_batch(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes = [run_step("single", tmp_path / "single.npz")]
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(run_step("multi_worker", tmp_path / f"worker{index}.npz", {"TF_CONFIG": config}))
    for process in processes:
        finish(process)
    single = np.load(tmp_path / "single.npz")
    for index in range(2):
        assert_same_step(single, np.load(tmp_path / f"worker{index}.npz"))


def test_input_shards_interleave_the_sample_stream(tmp_path):
    data = write_dataset(tmp_path)
    source = LandmarkSource(data, tmp_path, ["a", "b", "c"], verbose=False)
    augmentation = AugmentationConfig(translation=2.0, rotation=0.1)
    whole = [b[0].numpy() for b in make_dataset(source, augmentation, seed=3, workers=1).take(6)]
    shards = [
        [
            b[0].numpy()
            for b in make_dataset(source, augmentation, seed=3, workers=1, shard=(i, 2), start_step=1).take(2)
        ]
        for i in range(2)
    ]
    np.testing.assert_array_equal(shards[0][0], whole[2])
    np.testing.assert_array_equal(shards[1][0], whole[3])
    np.testing.assert_array_equal(shards[0][1], whole[4])
    np.testing.assert_array_equal(shards[1][1], whole[5])
