"""Locks and process lifetimes: one writer per folder, workers that do not outlive their parent.

* :class:`FolderLock` -- an advisory lock (``fcntl.flock``) on a folder that one process writes
  (a store being prepared, a run being trained); a second writer gets one line naming the holder.
* :func:`die_with_parent` -- a forked worker ends when its parent dies, even by kill -9.

Part of the process plumbing of :mod:`alexnet.runtime`; nothing here imports torch.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import weakref
from pathlib import Path

from alexnet.errors import UserError

LOCK_NAME = ".lock"


class FolderLock:
    """An exclusive advisory lock on ``folder`` (``fcntl.flock`` on ``folder/.lock``), for one writer at a time.

    :meth:`acquire` takes it without waiting, or raises a :class:`UserError` naming the holder's
    pid and command (written into the lock file).  The kernel releases the lock when its process
    ends, however it ends (kill -9 included): a lock file left behind by a dead process is simply
    taken over.  :meth:`release` removes the file; an acquirer that opened the file just before it
    was removed notices (the path no longer names the file it locked) and tries again.  Forked
    children (DataLoader and prepare workers) close their copy at once: the lock is the parent's
    alone, released when the parent ends even if a child outlives it for a moment.
    """

    def __init__(self, folder: Path, what: str = "folder") -> None:
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._owner = 0  # the pid that took the lock

    def acquire(self) -> "FolderLock":
        import fcntl

        if self._fd is not None:
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise UserError(f"cannot lock {self.what} {self.folder}: {err.strerror or err}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _lock_holder(fd)
                os.close(fd)
                raise UserError(f"{self.what} {self.folder} is in use by another process ({holder}); wait for it "
                                f"to finish or stop it") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder released and removed the file between our open and our lock
        record = json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv)}) + "\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode("utf-8", "replace"), 0)
        except OSError:
            pass  # the lock holds without the record (a full disk): the holder is then unnamed
        self._fd, self._owner = fd, os.getpid()
        _HELD.add(self)
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent; only the process that took it)."""
        if self._fd is None or self._owner != os.getpid():
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        _HELD.discard(self)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __del__(self) -> None:
        self.release()

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


_HELD: "weakref.WeakSet[FolderLock]" = weakref.WeakSet()


def _forget_locks_in_child() -> None:
    """After a fork: drop the child's copies of the parent's lock files (the locks stay the parent's)."""
    for lock in list(_HELD):
        if lock._fd is not None:
            try:
                os.close(lock._fd)
            except OSError:
                pass
            lock._fd = None
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


def die_with_parent(parent: int) -> None:
    """Make this (forked worker) process end when ``parent`` dies, even by kill -9.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere a daemon thread that watches
    ``os.getppid()``.  If the parent is already gone, exit at once.
    """
    import signal
    import threading
    import time

    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _lock_holder(fd: int) -> str:
    """'pid N: COMMAND' from a lock file's record (best effort: it may be empty for a moment)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        return f"pid {int(data['pid'])}: {str(data.get('command', ''))[:200]}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"
