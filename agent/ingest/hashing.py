"""SHA-256 of whole files: large reads into a reused buffer, in worker threads, and small files
whose bytes are in memory on the event loop's thread.

hashlib releases the GIL while it digests, so N threads hash N files on N cores at once; the event
loop only awaits. Reading line by line, or through aiofiles chunk by chunk, is three orders of
magnitude slower on this hot path (see bench/).

Small files are another matter: a 4 KiB file costs six system calls and a digest, each releasing
the GIL, and from a thread each release was a hand-off with the loop running another batch's
Python (seven context switches a file; a quarter of the CPU of a scan of small files). So a group's
files are first hashed on the loop's thread, up to ON_LOOP_BYTES, as long as their bytes are in
the page cache: each read asks the kernel not to wait for a disk (RWF_NOWAIT), and the first file
that would wait, and the files after it, go to the thread. On a network or FUSE filesystem, where
even opening a file may wait for a server, every file goes to the thread.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat as stat_mod
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from ..core.batch import FileStat
from ..core.errors import (
    AbortedError,
    FileChangedError,
    FileReadError,
    FileUnreadableError,
    FileVanishedError,
    NotRegularFileError,
)
from ..fs.fsinfo import filesystem_type, is_network_filesystem
from ..fs.safepath import open_dir_beneath, split

HEAD_BYTES = 8192
#: What a group may read and hash on the event loop's thread (about 2.5 ms; a 4 KiB file: 15 µs).
ON_LOOP_BYTES = 1 << 20
#: Filesystems with no disk behind them: their files are in memory (and RWF_NOWAIT is refused).
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_local = threading.local()


@dataclass(frozen=True, slots=True)
class Hashed:
    sha256: str
    #: The file as it was while its bytes were read; this, not the listing, goes to the ledger.
    stat: FileStat
    #: The first bytes (up to HEAD_BYTES), kept for format detection at no extra read.
    head: bytes = b""


def hash_file(
    root: Path, relpath: str, chunk_bytes: int = 1 << 20, abort: threading.Event | None = None
) -> Hashed:
    """Hash one file, refusing a result if the file changed while it was read. Blocking.

    ``abort``, when set, stops the read between two chunks (the agent is shutting down).
    """
    folders: dict[str, int] = {}
    try:
        return _hash_one(root, relpath, folders, chunk_bytes, abort)
    finally:
        for fd in folders.values():
            os.close(fd)


def hash_group(
    root: Path, relpaths: list[str], chunk_bytes: int, abort: threading.Event | None = None
) -> list[Hashed | Exception]:
    """Hash several files in one go, returning each file's result or its error. Blocking.

    Small files cost more in thread hand-offs than in hashing; grouping them makes one hand-off
    per group instead of one per file, and each folder is opened once per group.
    """
    results: list[Hashed | Exception] = []
    folders: dict[str, int] = {}
    try:
        for relpath in relpaths:
            try:
                results.append(_hash_one(root, relpath, folders, chunk_bytes, abort))
            except Exception as exc:
                results.append(exc)
    finally:
        for fd in folders.values():
            os.close(fd)
    return results


class _LeftToThread(Exception):
    """A file not hashed on the loop's thread: too large for what is left of the group's share,
    or its bytes are not in memory (``unsupported``: the filesystem cannot say so)."""

    def __init__(self, *, unsupported: bool = False) -> None:
        super().__init__()
        self.unsupported = unsupported


def in_memory_read_flags(fs_type: str) -> int | None:
    """The flags of a read that takes only what is in memory on this filesystem (0: everything
    is); None where files are hashed in threads only (network, FUSE, unknown)."""
    if fs_type in MEMORY_FILESYSTEMS:
        return 0
    if fs_type == "unknown" or is_network_filesystem(fs_type) or not hasattr(os, "RWF_NOWAIT"):
        return None
    return int(os.RWF_NOWAIT)


def hash_in_memory(
    root: Path, relpaths: list[str], chunk_bytes: int, most_bytes: int, flags: int
) -> tuple[list[Hashed | Exception], bool]:
    """Hash files, in order, while their bytes are in memory and ``most_bytes`` are not used up.
    Blocking only for what is not a disk's work (``flags``: see in_memory_read_flags). The results
    of the files hashed (a prefix of ``relpaths``), and whether the filesystem refused the flags."""
    results: list[Hashed | Exception] = []
    folders: dict[str, int] = {}
    try:
        for relpath in relpaths:
            try:
                hashed = _hash_one(root, relpath, folders, chunk_bytes, None, up_to=most_bytes, flags=flags)
            except _LeftToThread as left:
                return results, left.unsupported
            except Exception as exc:
                results.append(exc)
                continue
            most_bytes -= hashed.stat.size
            results.append(hashed)
    finally:
        for fd in folders.values():
            os.close(fd)
    return results, False


def _hash_one(
    root: Path,
    relpath: str,
    folders: dict[str, int],
    chunk_bytes: int,
    abort: threading.Event | None,
    *,
    up_to: int | None = None,
    flags: int = 0,
) -> Hashed:
    """``up_to`` and ``flags``: see hash_in_memory (raises _LeftToThread)."""
    # Every folder on the way is opened without following links (safepath), so a folder swapped
    # for a symlink after listing cannot lead the read outside the watch root.
    parent, name = split(relpath)
    try:
        if parent not in folders:
            folders[parent] = open_dir_beneath(root, parent)
        dir_fd = folders[parent]
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise FileVanishedError(f"{relpath!r} vanished before it could be read") from None
    except PermissionError:
        raise FileUnreadableError(f"cannot read {relpath!r}: permission denied") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FileChangedError(f"{relpath!r} (or a folder above it) was replaced by a symlink") from None
        raise FileReadError(f"cannot open {relpath!r}: {exc.strerror or exc}") from None
    try:
        before = os.fstat(fd)
        if not stat_mod.S_ISREG(before.st_mode):
            raise NotRegularFileError(f"{relpath!r} is not a regular file")
        if up_to is not None and before.st_size > up_to:
            raise _LeftToThread()
        digest, count, head = _digest(fd, chunk_bytes, abort, before.st_size, flags)
        after = os.fstat(fd)
    except OSError as exc:
        raise FileReadError(f"I/O error while reading {relpath!r}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    # ctime too: a rewrite in place that restores the size and mtime (cp -p, rsync -t) still
    # moves it, and the bytes just read may be half old, half new.
    if _changed(before, after) or count != after.st_size:
        raise FileChangedError(f"{relpath!r} changed while it was being read (still being written?)")
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise FileVanishedError(f"{relpath!r} was removed while it was being read") from None
    except OSError as exc:
        raise FileReadError(f"cannot stat {relpath!r}: {exc.strerror or exc}") from None
    if (now.st_ino, now.st_size, now.st_mtime_ns) != (after.st_ino, after.st_size, after.st_mtime_ns):
        raise FileChangedError(f"{relpath!r} was replaced while it was being read")
    return Hashed(digest, FileStat.from_stat(relpath, after), head)


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ctime_ns) != (
        after.st_size,
        after.st_mtime_ns,
        after.st_ctime_ns,
    )


def _digest(
    fd: int, chunk_bytes: int, abort: threading.Event | None, expected: int, flags: int = 0
) -> tuple[str, int, bytes]:
    """The file's SHA-256, its length and its first bytes. ``expected``: its size when opened;
    ``flags``: of each read (RWF_NOWAIT: raises _LeftToThread where a read would wait)."""
    buffer = _buffer(chunk_bytes)
    view = memoryview(buffer)
    digest = hashlib.sha256()
    total = 0
    head = b""
    # Small files skip the read-ahead hint and the read that finds the end: each system call
    # releases the GIL, and under load every release is a hand-off between threads.
    if expected > chunk_bytes and hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    # os.preadv reads straight into the buffer: no file object, no extra fstat/lseek per file.
    while n := _read(fd, buffer, total, flags):
        if total == 0:
            head = bytes(view[: min(n, HEAD_BYTES)])
        digest.update(view[:n])
        total += n
        if abort is not None and abort.is_set():
            raise AbortedError("hashing stopped: the agent is shutting down")
        # A short read that reaches the size the file had when opened is its end. Growth since
        # then is not missed: the caller compares the count with the size after reading. (A
        # filesystem whose size lags its content, FUSE with direct_io, stops here as it would
        # at the empty read that follows.)
        if n < chunk_bytes and total == expected:
            break
    return digest.hexdigest(), total, head


def _read(fd: int, buffer: bytearray, offset: int, flags: int) -> int:
    if not flags:
        return os.preadv(fd, [buffer], offset)
    try:
        return os.preadv(fd, [buffer], offset, flags)
    except BlockingIOError:  # not in the page cache: a disk would be waited for
        raise _LeftToThread() from None
    except OSError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            raise _LeftToThread(unsupported=True) from None
        raise


def _buffer(size: int) -> bytearray:
    # One buffer per thread, reused for every file: no allocation on the hot path.
    buffer: bytearray | None = getattr(_local, "buffer", None)
    if buffer is None or len(buffer) != size:
        buffer = _local.buffer = bytearray(size)
    return buffer


# A group of files is hashed in one thread hand-off; small files would otherwise spend more time
# being handed between threads than being hashed. Large files get a group (and a core) each.
GROUP_MAX_FILES = 64
GROUP_MAX_BYTES = 8 << 20


class _Sized(Protocol):
    @property
    def size(self) -> int: ...


SizedT = TypeVar("SizedT", bound=_Sized)


def hash_groups(files: Iterable[SizedT]) -> Iterator[list[SizedT]]:
    """Files in groups of at most GROUP_MAX_FILES files and GROUP_MAX_BYTES bytes (or one big file)."""
    group: list[SizedT] = []
    size = 0
    for f in files:
        if group and (len(group) >= GROUP_MAX_FILES or size + f.size > GROUP_MAX_BYTES):
            yield group
            group, size = [], 0
        group.append(f)
        size += f.size
    if group:
        yield group


class Hasher:
    """Hashes files in a dedicated thread pool, at most ``threads`` files in flight; small files in
    memory on the loop's thread (see the module's docstring)."""

    def __init__(
        self, threads: int, chunk_bytes: int, *, on_wait: Callable[[float], None] | None = None
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fair-hash")
        self._slots = asyncio.Semaphore(threads)
        #: Told how long each request waited for a thread (metrics: is hashing the bottleneck?).
        self._on_wait = on_wait or (lambda seconds: None)
        self._chunk = chunk_bytes
        #: By watch root: in_memory_read_flags of its filesystem.
        self._in_memory_flags: dict[Path, int | None] = {}
        self._abort = threading.Event()
        self.bytes_hashed = 0
        self.files_hashed = 0

    async def hash(self, root: Path, relpath: str) -> Hashed:
        async with self._slot():
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                self._executor, hash_file, root, relpath, self._chunk, self._abort
            )
        self._count(result)
        return result

    async def hash_group(self, root: Path, relpaths: list[str]) -> list[Hashed | Exception]:
        results: list[Hashed | Exception] = []
        if root not in self._in_memory_flags:
            fs_type = await asyncio.to_thread(filesystem_type, root)
            self._in_memory_flags[root] = in_memory_read_flags(fs_type)
        flags = self._in_memory_flags[root]
        if flags is not None:
            results, unsupported = hash_in_memory(root, relpaths, self._chunk, ON_LOOP_BYTES, flags)
            if unsupported:
                self._in_memory_flags[root] = None
        if len(results) < len(relpaths):
            async with self._slot():
                loop = asyncio.get_running_loop()
                results += await loop.run_in_executor(
                    self._executor, hash_group, root, relpaths[len(results) :], self._chunk, self._abort
                )
        for result in results:
            if isinstance(result, Hashed):
                self._count(result)
        return results

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        asked = time.perf_counter()
        async with self._slots:
            self._on_wait(time.perf_counter() - asked)
            yield

    def _count(self, result: Hashed) -> None:
        self.bytes_hashed += result.stat.size
        self.files_hashed += 1

    def close(self) -> None:
        """Stop: reads in progress end at their next chunk, queued ones never start."""
        self._abort.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
