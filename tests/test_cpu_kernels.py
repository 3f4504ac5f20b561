"""TensorFlow's CPU kernels chosen per CPU and network (scn_tf.cpu_kernels), the user's choice kept."""

import logging
import os
import sys

import pytest

from scn_tf import cpu_kernels
from scn_tf.configs import preset

AVX2 = {"avx", "avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512_vnni"}


@pytest.mark.parametrize(
    "ndim, filters, cpu_flags, expected",
    [
        (2, 32, AVX2, "1"),
        (2, 64, AVX2, "1"),
        (2, 128, AVX2, "0"),  # its AVX2 kernels: 128x128 step 1.16 against 1.03 s
        (3, 64, AVX2, "1"),
        (2, 128, AVX512, "1"),  # AVX-512: 512x512 forward 3.1 against 4.2 s
        (3, 32, AVX512, "1"),
        (2, 32, {"neon", "asimd"}, None),  # not measured: TensorFlow's default
    ],
)
def test_onednn_setting_follows_the_measurements(ndim, filters, cpu_flags, expected):
    assert cpu_kernels.onednn_setting(ndim, filters, cpu_flags)[0] == expected


def test_cpu_description_reads_the_first_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx avx2 fma\n\n"
        "processor\t: 1\nvendor_id\t: Other\nmodel name\t: other\nflags\t\t: fpu\n"
    )
    assert cpu_kernels.cpu_description(cpuinfo) == ("AuthenticAMD", "AMD EPYC 7B13", {"fpu", "avx", "avx2", "fma"})
    assert cpu_kernels.cpu_description(tmp_path / "absent") == ("", "", set())


@pytest.fixture
def before_tensorflow(monkeypatch):
    """A process in which TensorFlow has not started yet and the user set no TF_ENABLE_ONEDNN_OPTS."""
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.delenv(cpu_kernels.ONEDNN_VARIABLE, raising=False)
    monkeypatch.setattr(cpu_kernels, "cpu_description", lambda: ("AuthenticAMD", "AMD EPYC", AVX2))


def test_the_choice_is_set_and_logged_once_before_tensorflow_starts(before_tensorflow, caplog):
    with caplog.at_level(logging.INFO, logger="scn_tf"):
        assert cpu_kernels.choose_cpu_kernels(preset("skull2d")) == "0"
        assert cpu_kernels.choose_cpu_kernels(preset("cpu2d")) == "0"  # set now: kept
    assert os.environ[cpu_kernels.ONEDNN_VARIABLE] == "0"
    assert caplog.text.count("CPU kernels:") == 1
    assert "TF_ENABLE_ONEDNN_OPTS=0 (AMD EPYC; AVX2 without AVX-512, 2D network of 128 filters" in caplog.text
    assert "oneDNN" not in caplog.text  # the word that marks TensorFlow's own start-up lines


def test_the_users_setting_and_a_running_tensorflow_are_left_alone(before_tensorflow, monkeypatch, caplog):
    monkeypatch.setenv(cpu_kernels.ONEDNN_VARIABLE, "1")
    assert cpu_kernels.choose_cpu_kernels(preset("skull2d")) == "1"
    monkeypatch.delenv(cpu_kernels.ONEDNN_VARIABLE)
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    assert cpu_kernels.choose_cpu_kernels(preset("skull2d")) is None
    assert cpu_kernels.ONEDNN_VARIABLE not in os.environ and "CPU kernels" not in caplog.text
