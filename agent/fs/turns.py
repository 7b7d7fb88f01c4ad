"""Turns between processes: one holder at a time of a named turn, over an flock'ed file.

A backlog scanned by several processes (service.shards) ingests sessions side by side in each of
them; what one process serialises with an asyncio.Lock, they must serialise together. The kernel
drops an flock when its holder dies, even by kill -9: a turn is never left taken.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Protocol

#: How often a process waiting for a turn tries again: turns last one batch's commit (milliseconds).
RETRY_S = 0.005


class Releasable(Protocol):
    """What a batch holds until its commit: an asyncio.Lock, or a Turn."""

    def release(self) -> None: ...


def release_all(held: list[Releasable]) -> None:
    """Release what a batch holds, the last taken first."""
    while held:
        held.pop().release()


class Turn:
    """A turn held (its lock file open and flock'ed); ``release`` gives it back."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of its open file drops the flock
            self._fd = None


class Turns:
    """Named turns, each a file in ``folder``: ``<prefix>-<hash of the name>.lock``."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.folder = folder
        self.prefix = prefix

    def path(self, name: str) -> Path:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        return self.folder / f"{self.prefix}-{digest}.lock"

    async def take(self, name: str) -> Turn:
        """Wait for the turn, then hold it. Cancellable while it waits (it polls: a thread blocked
        in flock could not be cancelled)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # Opened for reading only (flock needs no more) and readable by all, as the state lock
        # is: a file that root's scan created must not lock the service's user out.
        fd = os.open(self.path(name), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return Turn(fd)
                except BlockingIOError:
                    await asyncio.sleep(RETRY_S)
        except BaseException:
            os.close(fd)
            raise
