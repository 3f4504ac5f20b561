"""TensorFlow's C++ log lines dropped from a command's stderr for its whole run (scn_tf.cli.quiet), everything
else forwarded in order, at exit too; exit codes and signals as before. Subprocesses without TensorFlow."""

import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from scn_tf.cli.quiet import is_cpp_log_line, without_tensorflow_info

WITHOUT_LEVEL = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # conftest sets it

# Written by TensorFlow 2.21 into a demo run's stderr before the filter.
TENSORFLOW_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796447521.794721   12098 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
    "I0000 00:00:1796447521.795778   12098 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
    "will not be used.",
    "I0000 00:00:1796447521.896114   12098 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796447525.071757   12098 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed "
    "call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1796447527.855367   12098 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: Mutation::Apply",
    "W0000 00:00:1796447530.636847   12098 util.cc:131] oneDNN supports DT_INT64 only on platforms with AVX-512.",
]
KEPT_LINES = [
    "I1205 05:12:04.901280 140538224597888 demo.py:157] generating 10 + 4 synthetic 2D images",  # absl, Python
    "INFO training SCN on 10 images",
    "WARNING: a user's own warning",
    "Traceback (most recent call last):",
    '  File "x.cc", line 3, in <module>',
    "To enable something else",
    "",
]


def test_tensorflow_lines_are_recognised_and_others_kept():
    assert all(is_cpp_log_line(line.encode()) for line in TENSORFLOW_LINES)
    assert not any(is_cpp_log_line(line.encode()) for line in KEPT_LINES)


def run_child(code: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        encoding="utf-8",
        env=WITHOUT_LEVEL if env is None else env,
        timeout=60,
    )


FILTERED_CHILD = """
    import os, sys
    from scn_tf.cli.quiet import cpp_logs_filtered
    tensorflow, kept = {tensorflow!r}, {kept!r}
    with cpp_logs_filtered():
        for k in range(2000):  # more than a pipe holds, interleaved, through fd 2 and sys.stderr
            os.write(2, (tensorflow[k % len(tensorflow)] + "\\n").encode())
            print(f"line {{k}}: {{kept[k % len(kept)]}}", file=sys.stderr)
        os.write(2, b"a partial line")
        raise RuntimeError("the end")
"""


def test_filter_drops_tensorflow_lines_keeps_the_rest_in_order_and_loses_nothing_at_an_exception():
    result = run_child(FILTERED_CHILD.format(tensorflow=TENSORFLOW_LINES, kept=KEPT_LINES))
    expected = "".join(f"line {k}: {KEPT_LINES[k % len(KEPT_LINES)]}\n" for k in range(2000))
    assert result.returncode == 1
    assert result.stderr.startswith(expected + "a partial lineTraceback (most recent call last):"), result.stderr[:500]
    assert result.stderr.rstrip().endswith("RuntimeError: the end")


def test_filter_is_off_where_the_user_set_the_level():
    result = run_child(
        FILTERED_CHILD.format(tensorflow=TENSORFLOW_LINES, kept=KEPT_LINES), {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    )
    assert result.returncode == 1 and result.stderr.count(TENSORFLOW_LINES[1]) == 2000 // len(TENSORFLOW_LINES)


COMMAND_CHILD = """
    import os, sys, time
    from absl import logging
    from scn_tf.cli.common import command

    def main(values, arguments):
        os.write(2, {line!r}.encode() + b"\\n")
        logging.info("started")
        print("started", flush=True)
        if values.wait:
            time.sleep(60)
        return 4

    def define_flags(values):
        from absl import flags
        flags.DEFINE_bool("wait", False, "Wait for a signal.", flag_values=values)

    sys.exit(command(main, define_flags, "a test command")())
"""


def test_a_command_keeps_its_exit_status_and_log_lines_without_tensorflow_lines():
    result = run_child(COMMAND_CHILD.format(line=TENSORFLOW_LINES[5]))
    assert result.returncode == 4 and result.stdout == "started\n"
    assert "] started" in result.stderr and "cuInit" not in result.stderr, result.stderr


@pytest.mark.parametrize("signal_number, status", [(signal.SIGINT, 130), (signal.SIGTERM, 1)])
def test_a_filtered_command_still_ends_on_signals_with_its_status_and_message(signal_number, status):
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(COMMAND_CHILD.format(line=TENSORFLOW_LINES[5])), "--wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        env=WITHOUT_LEVEL,
    )
    assert process.stdout.readline() == "started\n"
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    name = signal.Signals(signal_number).name
    assert process.returncode == status and f"interrupted ({name}); no partial output left" in stderr, stderr
    assert "cuInit" not in stderr


def record(name: str, level: int, pathname: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, pathname, 1, "message", None, None)


def test_tensorflows_python_info_records_are_dropped_its_warnings_and_ours_kept():
    saver = "/venv/lib/python3.12/site-packages/tensorflow/python/checkpoint/functional_saver.py"
    assert not without_tensorflow_info(record("absl", logging.INFO, saver))  # Sharding callback duration
    assert not without_tensorflow_info(record("tensorflow", logging.INFO, "/elsewhere/tf_logging.py"))
    assert without_tensorflow_info(record("absl", logging.WARNING, saver))
    assert without_tensorflow_info(record("absl", logging.INFO, "/work/scn_tf/cli/evaluate.py"))
    assert without_tensorflow_info(record("scn_tf", logging.INFO, "/work/scn_tf/training/trainer.py"))
