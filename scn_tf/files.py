"""Writing files safely: never outside the output folder, never half-written (temporary name, then rename), a
command's outputs all or nothing (staged beside their targets, moved into place at the end), SIGINT and
SIGTERM as exceptions so that cleanup runs, and one writer per run folder (a lock holding the writer's
process id)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger("scn_tf")

LOCK_NAME = ".lock"
STAGING_PREFIX = ".scn-staging-"
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


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


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt for SIGINT, so that cleanup code runs."""


_deferred: list[int] | None = None  # the signals received while outputs are moved into place


def _raise_interrupt(signum: int, frame) -> None:
    if _deferred is not None:
        _deferred.append(signum)
    elif signum == signal.SIGINT:
        raise KeyboardInterrupt
    else:
        raise Terminated(f"terminated by {signal.Signals(signum).name}")


@contextlib.contextmanager
def interrupts_raised() -> Iterator[None]:
    """While the block runs, SIGINT raises KeyboardInterrupt and SIGTERM `Terminated` (the previous handlers
    after it), so that `finally` blocks remove temporary files instead of the process dying in a write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _raise_interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM (under `interrupts_raised`) take effect after the block, not inside it."""
    global _deferred
    if _deferred is not None:
        yield
        return
    _deferred = []
    try:
        yield
    finally:
        received, _deferred = _deferred, None
        if received:
            _raise_interrupt(received[0], None)


def disk_full(error: BaseException) -> bool:
    """Whether `error` says the disk (or the file size limit, or the quota) is full; SimpleITK and h5py report
    it as text."""
    if isinstance(error, OSError):
        return error.errno in DISK_FULL
    text = str(error)
    return any(os.strerror(number) in text for number in DISK_FULL)


def _normal(path: str | os.PathLike) -> Path:
    """`path` with its folder resolved and its last component kept (a link there is the target itself)."""
    path = Path(path).absolute()
    return path.parent.resolve() / path.name


class StagedOutputs:
    """A command's output files, written all or nothing.

    `claim` checks a target before anything is written: an existing file is replaced only with `overwrite`,
    and a target that is (or resolves to) one of `inputs` is refused always. Files are written under `path`
    (or `folder`), in a hidden staging folder in the closest existing folder above the target, so that new
    folders too appear only at the end. On leaving the `with` block normally everything is moved into place
    with SIGINT/SIGTERM deferred; on an exception (a signal included) the staging folders are removed, and a
    full disk becomes an OutputError naming the file being written.
    """

    def __init__(self, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()):
        self.overwrite = overwrite
        self._inputs = {Path(path).resolve() for path in inputs}
        self._staged: dict[Path, Path] = {}  # target -> staged file
        self._roots: dict[Path, Path] = {}  # existing folder -> its staging folder
        self._writing: Path | None = None

    def _root(self, folder: Path) -> tuple[Path, Path]:
        existing = folder
        while not existing.exists():
            existing = existing.parent
        root = self._roots.setdefault(existing, existing / f"{STAGING_PREFIX}{os.getpid()}")
        return existing, root

    def claim(self, target: str | os.PathLike) -> Path:
        """Checks `target` (see the class) and records it; returns its path, its folder resolved."""
        target = _normal(target)
        if target in self._staged:
            raise OutputError(f"{target}: would be written twice by this command")
        if target.is_dir():
            raise OutputError(f"{target}: is a folder, expected a file name")
        if target.resolve() in self._inputs:
            link = " (through a link)" if target.is_symlink() else ""
            raise OutputError(f"{target}: is one of this command's inputs{link}; choose another output")
        if (target.exists() or target.is_symlink()) and not self.overwrite:
            raise OutputError(f"{target}: exists; pass --overwrite to replace it")
        check_writable_dir(target.parent)
        existing, root = self._root(target.parent)
        self._staged[target] = root / target.relative_to(existing)
        return target

    def claim_all(self, folder: str | os.PathLike, names: Iterable[str]) -> Path:
        """Claims `folder`/name for every name (each kept inside `folder`); returns the folder."""
        for name in names:
            self.claim(inside(folder, name))
        return Path(folder)

    def path(self, target: str | os.PathLike) -> Path:
        """Where to write the claimed `target` now."""
        target = _normal(target)
        if target not in self._staged:
            raise OutputError(f"{target}: written without being checked first (claim it)")
        staged = self._staged[target]
        staged.parent.mkdir(parents=True, exist_ok=True)
        self._writing = target
        return staged

    def folder(self, folder: str | os.PathLike) -> Path:
        """The staged counterpart of `folder`, for writers that take a folder; only claimed names in it are
        moved into place."""
        folder = Path(folder).resolve()
        existing, root = self._root(folder)
        staged = root / folder.relative_to(existing)
        staged.mkdir(parents=True, exist_ok=True)
        self._writing = folder
        return staged

    def commit(self) -> None:
        """Moves every staged file into place (signals deferred), then removes the staging folders."""
        written = {target: staged for target, staged in self._staged.items() if staged.exists() or staged.is_symlink()}
        if not self.overwrite:
            for target in written:
                if target.exists() or target.is_symlink():
                    raise OutputError(
                        f"{target}: exists (written by another process meanwhile?); pass --overwrite to replace it"
                    )
        with signals_deferred():
            for target, staged in written.items():
                target.parent.mkdir(parents=True, exist_ok=True)
                if self.overwrite:
                    os.replace(staged, target)
                    continue
                try:
                    os.link(staged, target, follow_symlinks=False)  # unlike a rename, never replaces a file
                except FileExistsError:
                    raise OutputError(
                        f"{target}: exists (written by another process meanwhile?); pass --overwrite to replace it"
                    ) from None
                staged.unlink()
            self.discard()

    def discard(self) -> None:
        """Removes the staging folders and what they hold."""
        for root in self._roots.values():
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            try:
                self.commit()
            finally:
                self.discard()
            return
        self.discard()
        if isinstance(error, Exception) and disk_full(error):
            raise OutputError(
                f"disk full while writing {self._writing or 'the outputs'} ({error}); nothing was written"
            ) from error


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True


class RunLock:
    """An exclusive lock on a run folder (`<folder>/.lock`, flock-ed, holding the owner's pid), removed when
    the owner releases it.

    A second process asking for it is refused with the owner's pid. The kernel drops the lock when its owner
    dies, so a lock file left by a dead process (a crash, SIGKILL) is taken over, with a warning naming that
    process. The file is removed while still locked, and a lock taken on a file that is no longer the one at
    the path is taken again, so that two processes never both hold the folder.
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK_NAME
        self._file = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
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
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(current, os.fstat(file.fileno())):
                break
            file.close()  # its owner removed it meanwhile: lock the file now at the path
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
            with contextlib.suppress(FileNotFoundError):  # a folder removed by its owner (a worker's)
                self.path.unlink()
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
