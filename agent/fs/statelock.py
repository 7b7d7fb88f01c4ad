"""One agent per state directory: an exclusive flock on ``<state_dir>/agent.lock``.

The lock file says who holds it (pid and command), so a second agent can refuse with a useful
message and ``fair-agent replay`` can ask a running service to reconcile (SIGHUP). The kernel drops
the lock when the process dies, even by kill -9: there is never a stale lock to clean up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from ..core.errors import StateLockedError

LOCK_NAME = "agent.lock"


def lock_holder(state_dir: Path) -> tuple[int, str] | None:
    """(pid, command) of the process holding the lock, or None when nobody holds it."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 256).decode(errors="replace").split()
            if len(text) >= 2 and text[0].isdigit():
                return int(text[0]), " ".join(text[1:])
            return 0, "unknown"
        return None
    finally:
        os.close(fd)


class StateLock:
    def __init__(self, state_dir: Path, command: str) -> None:
        self.path = state_dir / LOCK_NAME
        self._state_dir = state_dir
        self._command = command
        self._fd: int | None = None

    def acquire(self) -> None:
        self._state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = lock_holder(self._state_dir)
            who = f"pid {holder[0]} ({holder[1]})" if holder else "another process"
            raise StateLockedError(
                f"another fair-agent, {who}, is using the state directory {self._state_dir}; "
                "stop it first, or give this one its own --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {self._command}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
