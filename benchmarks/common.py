"""Shared by the benchmarks: where the real cephalograms are, and one timing loop.

The ISBI 2015 folder is `--ceph_dir`, else the environment variable SCN_CEPH_DIR, else
../shared/data/isbi2015_ceph beside the repository.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from absl import flags

DEFAULT_CEPH_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2015_ceph"


def define_ceph_dir_flag() -> None:
    """--ceph_dir, defaulting to SCN_CEPH_DIR or the shared data folder."""
    flags.DEFINE_string(
        "ceph_dir",
        os.environ.get("SCN_CEPH_DIR", str(DEFAULT_CEPH_DIR)),
        "The ISBI 2015 cephalograms (images/<id>.jpg); default: $SCN_CEPH_DIR or ../shared/data/isbi2015_ceph.",
    )


def ceph_dir() -> Path:
    """The cephalogram folder given by --ceph_dir."""
    return Path(flags.FLAGS.ceph_dir)


def median_seconds(
    run: Callable[[], object], repeats: int, warmup: int = 0, wait: Callable[[object], object] | None = None
) -> float:
    """Median wall time of `run()` over `repeats` calls after `warmup` untimed ones; `wait(result)`, inside the
    timed window, blocks until asynchronous work behind the result (a device array) is done."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        if wait is not None:
            wait(result)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
