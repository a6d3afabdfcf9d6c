"""One writer per output folder: ``m2s train``, ``evaluate``, ``predict``, ``ablations run``, ``site`` and ``course``
hold ``OUT/.m2s.lock`` while they write ``OUT``.

>>> with lock_folder("runs/eval", "m2s evaluate"):          # doctest: +SKIP
...     evaluate_checkpoint(...)

A second writer is refused at once with :class:`FolderBusyError`, one line naming the holder's command, PID and
start time. The lock is an operating-system lock on the open file (``flock`` on POSIX, ``msvcrt.locking`` on
Windows), so the system releases it when its process ends, however it ends: a lock file left by a process that
was killed is stale and the next writer takes it over (saying so when it names a process that no longer runs).
Within one process a new lock of a folder takes over the process's earlier one (a notebook cell run again
while its first ``Trainer`` object still exists).
"""
from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["FolderBusyError", "FolderLock", "LOCK_FILE", "lock_folder"]

LOCK_FILE = ".m2s.lock"
_HELD: dict[str, FolderLock] = {}  # folder (resolved) -> this process's lock of it


class FolderBusyError(RuntimeError):
    """Another process is writing the folder."""


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started_utc", "an unknown time")
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"`{holder.get('command', 'm2s')}` (PID {holder.get('pid', '?')}{where}, started {started})"


class FolderLock:
    """The lock of one folder held by this process; :meth:`release` (or the end of a ``with``) gives it back."""

    def __init__(self, folder: Path, command: str, log: Callable[[str], None] | None = None,
                 lock_path: Path | None = None):
        self.folder, self.command, self.path = folder, command, lock_path or folder / LOCK_FILE
        self.created_folder = False
        self._fd: int | None = None
        self._key = ""
        self._log = log

    def acquire(self) -> FolderLock:
        self._key = key = str(self.folder.resolve())
        earlier = _HELD.get(key)
        if earlier is not None:  # the same process: the newer writer takes over
            earlier.release()
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True)
            self.created_folder = self.path.parent == self.folder
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                self._cleanup_folder()
                raise FolderBusyError(
                    f"{self.folder} is being written by {_describe(_holder(self.path))}: wait for it to finish, "
                    f"or choose another output folder. Only if that process no longer runs, delete {self.path}"
                )
            try:  # the file may have been unlinked by a holder that released it after we opened it
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _holder(self.path)
        if stale.get("pid") and stale.get("pid") != os.getpid() and not _alive(int(stale["pid"])) and self._log:
            self._log(f"note: {self.path} was left by {_describe(stale)}, which no longer runs: taken over")
        info = {"command": self.command, "pid": os.getpid(), "host": socket.gethostname(),
                "started_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd = fd
        _HELD[key] = self
        return self

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the lock back (deleting the lock file, and the folder if the lock made it and it stayed empty)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if _HELD.get(self._key) is self:
            del _HELD[self._key]
        try:
            self.path.unlink(missing_ok=True)  # while still locked: a waiting writer re-checks the file it opened
        finally:
            os.close(fd)
        self._cleanup_folder()

    def _cleanup_folder(self) -> None:
        if self.created_folder:
            try:
                self.folder.rmdir()  # only when empty
            except OSError:
                pass

    def __del__(self) -> None:  # a lock held in a local variable is given back when its function returns
        if _HELD is None:  # interpreter shutdown: module globals are gone, and the OS drops the lock with the file
            return
        self.release()

    def __enter__(self) -> FolderLock:
        return self if self.held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_folder(folder: str | os.PathLike, command: str, log: Callable[[str], None] | None = print,
                lock_path: str | os.PathLike | None = None) -> FolderLock:
    """Take the lock of ``folder`` for ``command`` (e.g. ``"m2s train"``), creating the folder if needed; raises
    :class:`FolderBusyError` (one line: holder's command, PID, start time) when another process holds it. Use as a
    context manager, or call :meth:`FolderLock.release`. ``log`` gets the one-line note of a stale lock taken over.
    ``lock_path``: the lock file elsewhere than ``folder/.m2s.lock`` (beside a folder that is replaced whole)."""
    return FolderLock(Path(folder).expanduser(), command, log,
                      Path(lock_path).expanduser() if lock_path is not None else None).acquire()
