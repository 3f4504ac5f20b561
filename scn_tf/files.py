"""Writing files safely: never outside the output folder, never half-written (temporary name, then rename), and
one writer per run folder (a lock holding the writer's process id)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("scn_tf")

LOCK_NAME = ".lock"


class OutputError(ValueError):
    """An output path that cannot or must not be written; the message names it."""


def inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """`path` (relative to `root` or absolute), after checking that its folder resolves to a place inside `root`
    (the last component is not followed: an existing link there is replaced, not written through)."""
    root = Path(root).resolve()
    joined = root / path
    resolved = joined.parent.resolve() / joined.name
    if joined.name in ("", ".", "..") or (resolved != root and root not in resolved.parents):
        raise OutputError(f"{path}: would be written outside the output folder {root}")
    return resolved


def check_writable_dir(folder: str | os.PathLike) -> Path:
    """An OutputError naming `folder` where it is a file or it (or, if absent, the closest existing folder
    above it, in which it would be created) cannot be written; nothing is created."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder")
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{folder}: cannot be created, {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: {'folder' if existing == folder.absolute() else existing} is not writable")
    return folder


def check_output_file(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """An output file that may be written: its folder writable, and no existing file unless `overwrite`."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: exists; pass --overwrite to replace it")
    check_writable_dir(path.parent)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yields a temporary path beside `path` with the same extensions; renames it to `path` on success.

    Without `overwrite` the rename is a hard link that fails where `path` exists, even one another process
    created meanwhile (an OutputError naming it), so that two writers never silently replace each other.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield temporary
        if overwrite:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise OutputError(
                    f"{path}: exists (written by another process meanwhile?); pass --overwrite to replace it"
                ) from None
    finally:
        if temporary.exists():
            temporary.unlink()


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = True) -> None:
    with atomic_path(path, overwrite) as temporary:
        with open(temporary, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())


def write_json_atomic(path: str | os.PathLike, data, overwrite: bool = True) -> None:
    write_text_atomic(path, json.dumps(data, indent=2), overwrite)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True


class RunLock:
    """An exclusive lock on a run folder (`<folder>/.lock`, flock-ed, holding the owner's pid).

    A second process asking for it is refused with the owner's pid. The kernel drops the lock when its owner
    dies, so a lock file left by a dead process is taken over, with a warning naming that process.
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK_NAME
        self._file = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            owner = file.read().strip() or "unknown"
            file.close()
            raise OutputError(
                f"{self.path.parent}: another process (pid {owner}) is training into this run "
                "folder; wait for it to end or choose another --output_dir"
            ) from None
        file.seek(0)
        previous = file.read().strip()
        if previous.isdigit() and int(previous) != os.getpid():
            log.warning(
                "%s: taking over the lock of process %s, which %s",
                self.path,
                previous,
                "is no longer running" if not _alive(int(previous)) else "no longer holds it",
            )
        file.seek(0)
        file.truncate()
        file.write(str(os.getpid()))
        file.flush()
        self._file = file
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
