"""Data-parallel training through tf.distribute: the strategy, the chief's role, the per-replica input.

`mirrored` copies the model onto every GPU of one machine; `multi_worker` onto every GPU of every machine
named in the TF_CONFIG environment variable (each machine runs the same command with its own task index).
The global batch is replicas x the configured per-replica batch; each input pipeline draws its own shard
of the seeded sample stream, so that no two replicas see the same sample in a step. TensorFlow is imported
by the functions that need it only: the chief's role is read from TF_CONFIG alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

STRATEGIES = ("none", "mirrored", "multi_worker")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The named strategy; "none" is TensorFlow's default (one device, no synchronisation)."""
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def _tf_config() -> dict:
    return json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")


def task() -> tuple[str, int]:
    """(task type, task index) of this process from TF_CONFIG; ("chief", 0) without one."""
    current = _tf_config().get("task", {})
    return current.get("type", "chief"), int(current.get("index", 0))


def is_chief() -> bool:
    """The process that writes the run folder: the chief, or worker 0 where no chief is named."""
    kind, index = task()
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in _tf_config().get("cluster", {}))


def worker_dir(output_dir: Path) -> Path:
    """Where this process writes: the run folder on the chief, a scratch folder inside it elsewhere.

    Every worker must take part in saving checkpoints (a collective operation), so the others write theirs
    to a folder of their own, which they remove at the end.
    """
    if is_chief():
        return output_dir
    kind, index = task()
    return output_dir / f".{kind}{index}"


def distribute_batches(
    strategy: tf.distribute.Strategy, make: Callable[..., tf.data.Dataset], batch_size: int, start_step: int
):
    """Per-replica batches of `batch_size` for every replica of `strategy`, from step `start_step` on.

    `make(batch_size=, start_step=, shard=)` builds one input pipeline's dataset; `shard` is (index, count)
    and `start_step` is counted in that pipeline's batches.
    """
    if strategy.num_replicas_in_sync == 1:
        return make(batch_size=batch_size, start_step=start_step, shard=(0, 1))

    def pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local_replicas = context.num_replicas_in_sync // context.num_input_pipelines
        return make(
            batch_size=batch_size,
            start_step=start_step * local_replicas,
            shard=(context.input_pipeline_id, context.num_input_pipelines),
        )

    return strategy.distribute_datasets_from_function(pipeline)
