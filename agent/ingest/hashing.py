"""SHA-256 of whole files: large reads into a reused buffer, in worker threads, and small files
whose bytes are in memory on the event loop's thread.

hashlib releases the GIL while it digests, so N threads hash N files on N cores at once; the event
loop only awaits. Reading line by line, or through aiofiles chunk by chunk, is three orders of
magnitude slower on this hot path (see bench/).

Small files are another matter: a 4 KiB file costs six system calls and a digest, each releasing
the GIL, and from a thread each release was a hand-off with the loop running another batch's
Python (seven context switches a file; a quarter of the CPU of a scan of small files). So a group's
files are first hashed on the loop's thread, as long as their bytes are in the page cache: each
read asks the kernel not to wait for a disk (RWF_NOWAIT), and the first file that would wait, and
the files after it, go to the thread. The loop reads at most ON_LOOP_BYTES in each LOOP_SLICE_S,
for all groups together (a batch's groups start at once). Only local disk and memory filesystems
are read there (fsinfo.is_loop_safe), and only in folders on the root's own
device: elsewhere (NFS, SMB, FUSE, cluster filesystems, a share mounted below the root) even
opening a file may wait for a server, and every file goes to the thread.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import hashlib
import os
import stat as stat_mod
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
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
from ..fs.buffers import read_buffer
from ..fs.fsinfo import MEMORY_FILESYSTEMS, filesystem_type, is_loop_safe
from ..fs.safepath import open_dir_beneath, split

HEAD_BYTES = 8192
#: What the event loop's thread may read and hash in one LOOP_SLICE_S (about 2.5 ms of it; a 4 KiB
#: file: 15 µs); beyond that, files go to the hashing threads.
ON_LOOP_BYTES = 1 << 20
LOOP_SLICE_S = 0.01
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
    results, _ = _hash_in_order(root, relpaths, chunk_bytes, abort)
    return results


class Stop(enum.Enum):
    """Why the loop's thread stopped hashing a group (the rest goes to a thread)."""

    SHARE_USED = "a file larger than what is left of the loop's share"
    NOT_IN_MEMORY = "a file whose bytes are not all in the page cache"
    REFUSED = "the filesystem refuses RWF_NOWAIT"
    ELSEWHERE = "a folder on another device than the root's (a mount below it, or the root remounted)"


class _LeftToThread(Exception):
    def __init__(self, why: Stop) -> None:
        super().__init__(why.value)
        self.why = why


@dataclass(frozen=True, slots=True)
class InMemory:
    """How files of one root are read on the loop's thread: the flags of a read that takes only
    what is in memory (0: everything there is), and the device whose folders may be read."""

    flags: int
    device: int


def in_memory_read_flags(fs_type: str) -> int | None:
    """The flags of a read that takes only what is in memory on this filesystem (0: everything is,
    and RWF_NOWAIT is refused there); None where files are hashed in threads only."""
    if fs_type in MEMORY_FILESYSTEMS:
        return 0
    if is_loop_safe(fs_type) and hasattr(os, "RWF_NOWAIT"):
        return int(os.RWF_NOWAIT)
    return None


def in_memory_reading(root: Path) -> InMemory | None:
    """How the loop's thread may read the root's files; None: only threads may. Blocking."""
    flags = in_memory_read_flags(filesystem_type(root))
    try:
        return None if flags is None else InMemory(flags, os.stat(root).st_dev)
    except OSError:
        return None  # the thread that reads it says what is wrong


def hash_in_memory(
    root: Path, relpaths: list[str], chunk_bytes: int, most_bytes: int, reading: InMemory
) -> tuple[list[Hashed | Exception], Stop | None]:
    """Hash files, in order, while their bytes are in memory and ``most_bytes`` are not used up.
    Blocking only for what is not a disk's work. The results of the files hashed (a prefix of
    ``relpaths``), and why it stopped before the end (None: it did not)."""
    return _hash_in_order(root, relpaths, chunk_bytes, None, most_bytes=most_bytes, reading=reading)


def _hash_in_order(
    root: Path,
    relpaths: list[str],
    chunk_bytes: int,
    abort: threading.Event | None,
    *,
    most_bytes: int | None = None,
    reading: InMemory | None = None,
) -> tuple[list[Hashed | Exception], Stop | None]:
    """Each file's result or its error, each folder opened once; with ``most_bytes`` and
    ``reading``, only the prefix hash_in_memory may hash."""
    results: list[Hashed | Exception] = []
    folders: dict[str, int] = {}
    try:
        for relpath in relpaths:
            try:
                hashed = _hash_one(
                    root, relpath, folders, chunk_bytes, abort, up_to=most_bytes, reading=reading
                )
            except _LeftToThread as left:
                return results, left.why
            except Exception as exc:
                results.append(exc)
                continue
            if most_bytes is not None:
                most_bytes -= hashed.stat.size
            results.append(hashed)
    finally:
        for fd in folders.values():
            os.close(fd)
    return results, None


def _hash_one(
    root: Path,
    relpath: str,
    folders: dict[str, int],
    chunk_bytes: int,
    abort: threading.Event | None,
    *,
    up_to: int | None = None,
    reading: InMemory | None = None,
) -> Hashed:
    """``up_to`` and ``reading``: see hash_in_memory (raises _LeftToThread)."""
    # Every folder on the way is opened without following links (safepath), so a folder swapped
    # for a symlink after listing cannot lead the read outside the watch root.
    parent, name = split(relpath)
    try:
        if parent not in folders:
            folders[parent] = open_dir_beneath(root, parent)
            if reading is not None and os.fstat(folders[parent]).st_dev != reading.device:
                raise _LeftToThread(Stop.ELSEWHERE)
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
            raise _LeftToThread(Stop.SHARE_USED)
        flags = reading.flags if reading is not None else 0
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
        if total > expected:  # it grew since it was opened: refused (FileChangedError), read no more
            break
    return digest.hexdigest(), total, head


def _read(fd: int, buffer: memoryview, offset: int, flags: int) -> int:
    if not flags:
        return os.preadv(fd, [buffer], offset)
    try:
        return os.preadv(fd, [buffer], offset, flags)
    except BlockingIOError:  # not in the page cache: a disk would be waited for
        raise _LeftToThread(Stop.NOT_IN_MEMORY) from None
    except OSError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            raise _LeftToThread(Stop.REFUSED) from None
        raise


def _buffer(size: int) -> memoryview:
    # One buffer per thread, reused for every file: no allocation on the hot path. Placed as
    # fs.buffers says: in a bytearray, large files took a half more time to read and hash.
    buffer: memoryview | None = getattr(_local, "buffer", None)
    if buffer is None or len(buffer) != size:
        buffer = _local.buffer = read_buffer(size)
    return buffer


# A group of files is hashed in one thread hand-off; small files would otherwise spend more time
# being handed between threads than being hashed. Large files get a group (and a core) each.
GROUP_MAX_FILES = 64
GROUP_MAX_BYTES = 8 << 20


class _Sized(Protocol):
    @property
    def size(self) -> int: ...


class _Listed(_Sized, Protocol):
    @property
    def relpath(self) -> str: ...


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
    """Hashes files in a dedicated thread pool, at most ``threads`` groups in flight there; small
    files in memory on the loop's thread (see the module's docstring)."""

    def __init__(
        self, threads: int, chunk_bytes: int, *, on_wait: Callable[[float], None] | None = None
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fair-hash")
        self._slots = asyncio.Semaphore(threads)
        #: Told how long each group waited to be hashed (metrics: is hashing the bottleneck?): for a
        #: thread, or not at all (0) where the loop's thread hashed all of it.
        self._on_wait = on_wait or (lambda seconds: None)
        self._chunk = chunk_bytes
        #: By watch root: how its files are read on the loop's thread (looked up once, in a thread).
        self._in_memory: dict[Path, asyncio.Future[InMemory | None]] = {}
        #: What the loop's thread may still read in the current slice, and when that slice began.
        self._share_left = 0
        self._slice_began = -LOOP_SLICE_S
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

    async def hash_group(self, root: Path, files: Sequence[_Listed]) -> list[Hashed | Exception]:
        """Each file's hash, or the error that stopped it, in order."""
        relpaths = [f.relpath for f in files]
        results = await self._hash_on_loop(root, files, relpaths)
        if len(results) == len(relpaths):
            self._on_wait(0.0)
        else:
            async with self._slot():
                loop = asyncio.get_running_loop()
                results += await loop.run_in_executor(
                    self._executor, hash_group, root, relpaths[len(results) :], self._chunk, self._abort
                )
        for result in results:
            if isinstance(result, Hashed):
                self._count(result)
        return results

    async def _hash_on_loop(
        self, root: Path, files: Sequence[_Listed], relpaths: list[str]
    ) -> list[Hashed | Exception]:
        """The results of the first files, hashed here while they are in memory and in the share."""
        if root not in self._in_memory:
            self._in_memory[root] = asyncio.ensure_future(asyncio.to_thread(in_memory_reading, root))
        reading = await self._in_memory[root]
        if reading is None or self._abort.is_set():
            return []
        now = time.monotonic()
        if now - self._slice_began >= LOOP_SLICE_S:
            self._slice_began, self._share_left = now, ON_LOOP_BYTES
        # The sizes listed pick the files worth opening here; their sizes when opened decide.
        listed = 0
        count = 0
        for f in files:
            listed += f.size
            if listed > self._share_left:
                break
            count += 1
        if not count:
            return []
        results, stop = hash_in_memory(root, relpaths[:count], self._chunk, self._share_left, reading)
        self._share_left -= sum(r.stat.size for r in results if isinstance(r, Hashed))
        if stop is Stop.REFUSED:
            self._in_memory[root] = _done(None)
        elif stop is Stop.ELSEWHERE:
            self._in_memory.pop(root, None)  # looked up again: the root itself may have been remounted
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


def _done(value: InMemory | None) -> asyncio.Future[InMemory | None]:
    future: asyncio.Future[InMemory | None] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future
