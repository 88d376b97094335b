"""One agent per state directory: an exclusive lock held for the agent's lifetime.

Two agents on one store each run the escalation timers, so every step is paged
twice (or four times); they also race on the outbox. `onwatch run` therefore
takes `fcntl.flock(LOCK_EX | LOCK_NB)` on `<state_dir>/onwatch.lock` before it
opens the store, writes its PID into the file, and keeps the descriptor open until
it exits. The kernel drops the lock when the process dies, even by `kill -9`, so a
stale lock file never blocks a restart. A second agent finds the lock held and
stops with `LockHeld`, naming the PID in the file.

Read-only commands (`onwatch incidents`, `show`, `report`) never take the lock: they
read the store beside a running agent, which SQLite's WAL mode allows.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Final

LOCK_NAME: Final = "onwatch.lock"


class LockHeld(Exception):
    """Another process holds the state directory; the message names it and what to do."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"another onwatch (PID {pid})" if pid else "another onwatch"
        super().__init__(
            f"{who} is already running with the state directory {path.parent} (it holds "
            f"{path}); stop it first, or give this agent its own [agent] state_dir")
        self.pid = pid


class StateLock:
    """The held lock; `release()` (or process exit) gives it up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_dir: Path) -> StateLock:
        """Take the lock or raise LockHeld; OSError when the directory is unusable."""
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise LockHeld(path, pid) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no PID left behind that could be mistaken for a holder
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None

