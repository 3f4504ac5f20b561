"""TensorFlow's CPU kernels for the network: oneDNN's or its own (Eigen), chosen per CPU and network size
before TensorFlow starts (it reads TF_ENABLE_ONEDNN_OPTS once, when it loads).

TensorFlow turns oneDNN on by itself only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX, whatever
their vendor; on the AMD EPYC CPUs measured here (docs/speed.md) that leaves the fast kernels off on AVX2
CPUs, where they would speed up the small networks, and on AVX-512 Zen 4 it does the right thing.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from scn_tf.configs import ExperimentConfig

log = logging.getLogger("scn_tf")

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
SLOW_AVX2_FILTERS = 128  # 2D networks from this width up: oneDNN's AVX2 kernels are far slower than Eigen's


def cpu_description(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> tuple[str, str, set[str]]:
    """(vendor, model name, instruction set flags) of the first CPU in `cpuinfo`; empty where unreadable."""
    fields: dict[str, str] = {}
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields.get("vendor_id", ""), fields.get("model name", ""), set(fields.get("flags", "").split())


def onednn_setting(ndim: int, filters: int, cpu_flags: set[str]) -> tuple[str | None, str]:
    """TF_ENABLE_ONEDNN_OPTS for a `ndim`-D network of `filters` filters on a CPU with `cpu_flags` ("1", "0",
    or None for TensorFlow's own default), and why.

    Measured with benchmarks/onednn.py on a 2-core AMD EPYC (Zen 4, AVX-512), oneDNN off against on
    (docs/speed.md, "CPU: which kernels"): with its AVX-512 kernels oneDNN is faster for every network
    measured (2D 256x256 with 64 filters: training step 0.86 against 1.63 s; 3D: 0.74 against 2.59 s; the
    512x512 128-filter forward pass 3.1 against 4.2 s). Limited to its AVX2 kernels (what an AVX2-only CPU
    runs) it is faster up to 64 filters (0.98 against 1.63 s) and in 3D (0.98 against 2.59 s), but slower
    for 2D networks of 128 filters (128x128 step 1.16 against 1.03 s; the 512x512 forward pass over 90
    against 4.2 s), as the earlier measurements on an AVX2 EPYC found. The kernels follow the instruction
    set, not the vendor; CPUs without AVX2 (other architectures, old x86) keep TensorFlow's default.
    """
    if "avx2" not in cpu_flags:
        return None, "no AVX2, unmeasured"
    if "avx512f" in cpu_flags:
        return "1", "AVX-512: faster for every network measured"
    if ndim == 2 and filters >= SLOW_AVX2_FILTERS:
        return "0", f"AVX2 without AVX-512, 2D network of {filters} filters: TensorFlow's own kernels are faster"
    return "1", f"AVX2 without AVX-512, {ndim}D network of {filters} filters: faster"


def choose_cpu_kernels(config: ExperimentConfig | None) -> str | None:
    """Sets TF_ENABLE_ONEDNN_OPTS for `config`'s network by `onednn_setting`, unless the user set it, TensorFlow
    already runs or there is no network to go by; logs the choice (at INFO) and returns the value in effect."""
    if ONEDNN_VARIABLE in os.environ or "tensorflow" in sys.modules or config is None:
        return os.environ.get(ONEDNN_VARIABLE)
    vendor, model, cpu_flags = cpu_description()
    network = config.network.resolved(config.data.ndim)
    value, reason = onednn_setting(config.data.ndim, network["filters"], cpu_flags)
    if value is not None:
        os.environ[ONEDNN_VARIABLE] = value
    log.info(
        "CPU kernels: %s=%s (%s; %s; docs/speed.md); set it to 0 or 1 to choose",
        ONEDNN_VARIABLE,
        value or "unset, TensorFlow's default",
        model or vendor or "unknown CPU",
        reason,
    )
    return value
