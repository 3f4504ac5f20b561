"""TensorFlow's log lines kept off a command's stderr for its whole run, the command's own lines kept.

TensorFlow and XLA log through absl's C++ logging straight to file descriptor 2: some lines before
TF_CPP_MIN_LOG_LEVEL is read, and all of them where TensorFlow was loaded before the level was set, so no
Python-level setting holds them all back. While `cpp_logs_filtered()` is active, fd 2 is a pipe; a thread
reads it, drops the lines in those formats and forwards everything else unchanged (tracebacks, warnings,
the project's own log lines, output of child processes) to the real stderr. TensorFlow's Python modules
log INFO records through absl too; `without_tensorflow_info` is the logging filter for them. A user who
sets TF_CPP_MIN_LOG_LEVEL gets TensorFlow's lines as that level says, unfiltered.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import select
import sys
import threading
from collections.abc import Iterator

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# absl C++ log lines (`I0000 00:00:1796447521.794721   12098 port.cc:153] ...`: severity, date, time (epoch
# seconds before absl is initialised), thread, a C/C++ source file; absl's Python lines name a .py file and
# pass), absl's notice before its initialisation, and the second line of cpu_feature_guard's message.
CPP_LOG_LINE = re.compile(
    rb"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./+-]+\.(?:cc|cpp|cxx|c|h|hpp):\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .*rebuild TensorFlow"
)
PARTIAL_LINE_SECONDS = 0.2  # a line without its newline (a prompt) is forwarded after this pause
DRAIN_SECONDS = 2.0  # at the end, how long to wait for a child process that still holds the pipe
PIPE_BYTES = 1 << 20
TENSORFLOW_SOURCES = f"{os.sep}tensorflow{os.sep}"


def without_tensorflow_info(record: logging.LogRecord) -> bool:
    """A logging filter: False for TensorFlow's own INFO and DEBUG records (its Python modules log through
    absl, `Sharding callback duration: ...` at every checkpoint), which the commands' INFO verbosity would
    show; warnings and errors pass."""
    return record.levelno >= logging.WARNING or not (
        record.name == "tensorflow" or TENSORFLOW_SOURCES in record.pathname
    )


def is_cpp_log_line(line: bytes) -> bool:
    """Whether `line` (without its newline) is one of TensorFlow's C++ log lines."""
    return CPP_LOG_LINE.match(line) is not None


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _forward(source: int, target: int) -> None:
    """Copies `source` to `target` line by line until end of file, without TensorFlow's C++ log lines."""
    pending = b""
    writable = True
    while True:
        ready, _, _ = select.select([source], [], [], PARTIAL_LINE_SECONDS if pending else None)
        chunk = os.read(source, 65536) if ready else None
        if chunk == b"":
            break
        if chunk is None:  # a partial line waited long enough
            lines, pending = [pending], b""
        else:
            *lines, pending = (pending + chunk).split(b"\n")
            lines = [line + b"\n" for line in lines]
        kept = b"".join(line for line in lines if not is_cpp_log_line(line))
        if kept and writable:
            try:
                _write_all(target, kept)
            except OSError:  # the real stderr is gone (a closed pipe): keep draining, write nothing
                writable = False
    if pending and writable and not is_cpp_log_line(pending):
        with contextlib.suppress(OSError):
            _write_all(target, pending)
    os.close(source)


def filtering_wanted() -> bool:
    """Whether to filter: not where the user chose TensorFlow's level, and only from the main thread."""
    return LEVEL_VARIABLE not in os.environ and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def cpp_logs_filtered() -> Iterator[None]:
    """While the block runs, fd 2 passes through a filter that drops TensorFlow's C++ log lines.

    Nothing is filtered where the user set TF_CPP_MIN_LOG_LEVEL, or off the main thread. On leaving the block
    (normally or by an exception, whose traceback Python prints afterwards) Python's stderr is flushed, fd 2
    is the real stderr again and everything read from the pipe has been written out.
    """
    try:
        real = os.dup(2) if filtering_wanted() else None
    except OSError:  # no stderr at all (2>&-): nothing to filter
        real = None
    if real is None:
        yield
        return
    sys.stderr.flush()
    source, sink = os.pipe()
    with contextlib.suppress(OSError):  # a larger pipe: fewer stalls of a burst of writes
        fcntl.fcntl(sink, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    os.dup2(sink, 2)
    os.close(sink)
    forwarder = threading.Thread(target=_forward, args=(source, real), name="stderr-filter", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(real, 2)  # closes this process's end of the pipe: the forwarder reads to its end and stops
        forwarder.join(DRAIN_SECONDS)
        if not forwarder.is_alive():  # else a child process still writes into the pipe through `real`
            os.close(real)
