"""Writing outputs next to the data, atomically and durably.

Each document goes to a hidden temp file in the same folder, is made durable, then is renamed over
its target; each folder is fsynced once after its renames. A reader (or a crash) sees the old
document or the new one, never half of one. A document whose bytes are already on disk is not
rewritten, so its mtime stays put and a redone batch changes nothing.

Durability comes in two strategies, both ending in the same guarantee:

- ``filesystem`` (local disks): write every temp file of the batch, then one ``syncfs()`` for the
  filesystem, then the renames. One flush per batch instead of one per sidecar: measured here, a
  batch of 100 sidecars is ~6x faster than with an fsync each, and the data files the sidecars
  describe reach the disk too.
- ``per-file`` (network and FUSE filesystems, where syncfs() does not reach the server, or when the
  libc has no syncfs): an fsync per temp file.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import os
import random
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from .errors import OutputWriteError
from .fsinfo import filesystem_type, is_network_filesystem
from .naming import temp_name

Document = tuple[Path, dict[str, Any]]
SyncStrategy = Literal["filesystem", "per-file"]

_rng = random.Random()
_libc = ctypes.CDLL(None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "an I/O error",
}


def to_json_bytes(document: dict[str, Any]) -> bytes:
    """Stable serialisation: the same document always gives the same bytes."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def strategy_for(folder: Path, configured: str = "auto") -> SyncStrategy:
    if configured in ("filesystem", "per-file"):
        return configured  # type: ignore[return-value]
    if _syncfs is None or is_network_filesystem(filesystem_type(folder)):
        return "per-file"
    return "filesystem"


def write_documents(documents: Iterable[Document], strategy: SyncStrategy = "per-file") -> int:
    """Write every (path, document) atomically and durably; return how many files changed."""
    pending: list[tuple[Path, Path]] = []
    try:
        for path, document in documents:
            data = to_json_bytes(document)
            if not _already_there(path, data):
                pending.append((path, _write_temp(path, data, fsync=strategy == "per-file")))
        if not pending:
            return 0
        if strategy == "filesystem":
            for folder in {path.parent for path, _ in pending}:
                _sync_filesystem(folder)
        for path, tmp in pending:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise _write_error(path, exc) from exc
    except BaseException:
        for _, tmp in pending:
            remove_quietly(tmp)
        raise
    fsync_dirs({path.parent for path, _ in pending})
    return len(pending)


def fsync_dirs(folders: Iterable[Path]) -> None:
    # Makes the renames durable; a crash after this cannot resurrect the old documents.
    for folder in folders:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _write_error(folder, exc) from exc


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class OutputWriter:
    """Writes each batch's documents in a thread of its own; batches of different sessions overlap.

    One thread per batch, not several: creating files in one folder from several threads only
    queues them on the folder's lock.
    """

    def __init__(self, threads: int, strategy: str = "auto") -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fair-write")
        self._strategy = strategy
        self._strategies: dict[Path, SyncStrategy] = {}

    async def write(self, documents: list[Document]) -> int:
        if not documents:
            return 0
        loop = asyncio.get_running_loop()
        folder = documents[0][0].parent
        known = self._strategies.get(folder)
        strategy: SyncStrategy = (
            known
            if known is not None
            else await loop.run_in_executor(self._executor, strategy_for, folder, self._strategy)
        )
        if known is None and len(self._strategies) < 4096:  # bounded: recent session folders
            self._strategies[folder] = strategy
        return await loop.run_in_executor(self._executor, write_documents, list(documents), strategy)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _already_there(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def _write_temp(path: Path, data: bytes, *, fsync: bool) -> Path:
    # Random but syscall-free: a getrandom() per sidecar shows up in profiles of many small files.
    tmp = path.parent / temp_name(path.name, f"{_rng.getrandbits(48):012x}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        remove_quietly(tmp)
        raise _write_error(path, exc) from exc
    except BaseException:
        remove_quietly(tmp)
        raise
    return tmp


def _sync_filesystem(folder: Path) -> None:
    assert _syncfs is not None
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _write_error(folder, exc) from exc
    try:
        # Since Linux 5.8 syncfs() reports writeback errors (ENOSPC, EIO) of the filesystem.
        if _syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise _write_error(folder, OSError(code, os.strerror(code)))
    finally:
        os.close(fd)


def _write_error(path: Path, exc: OSError) -> OutputWriteError:
    reason = _REASONS.get(exc.errno or 0, exc.strerror or str(exc))
    return OutputWriteError(f"cannot write {path.name!r} next to the data: {reason}")
