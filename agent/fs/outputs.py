"""Writing outputs next to the data: atomically, durably, and only over our own files.

Each document goes to a hidden temp file in the same folder, is made durable, then is renamed over
its target; every folder written to is fsynced afterwards. A reader (or a crash) sees the old
document or the new one, never half of one. A document whose bytes are already on disk is not
rewritten, so its mtime stays put and a redone batch changes nothing. A file in the way that the
agent did not write (a user's ``x.fair.json``, a FIFO, a link) is never replaced: it is reported
as a conflict. Folders are reached without following symlinks (see safepath).

Durability comes in two strategies with the same guarantee:

- ``filesystem`` (local disks): write every temp file of the batch, then one ``syncfs()`` per
  filesystem, then the renames. One flush per batch instead of one per sidecar: measured here, a
  batch of 100 sidecars is ~6x faster than with an fsync each, and the data files the sidecars
  describe reach the disk too. But syncfs() waits for every file's unwritten data on the
  filesystem, the lab's too: while an instrument acquires onto the same disk, the machine holds
  gigabytes of it, and every batch waited for it. So once a filesystem's syncfs was slow
  (SLOW_SYNCFS_S) with much unwritten (FOREIGN_DIRTY_BYTES), the batches after it flush their own
  temp files there, each alone but many at once (``_sync_each``), until the unwritten data is
  down again. The instrument's writing is left to the kernel's pace, and so, meanwhile, are the
  data files the sidecars describe.
- ``per-file`` (network and FUSE filesystems, where syncfs() does not reach the server, or a libc
  without syncfs): an fsync per temp file.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import os
import random
import stat as stat_mod
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .. import AGENT_ENTITY_ID, AGENT_NAME
from ..core import jsontext
from ..core.errors import OutputWriteError
from ..core.naming import is_derived_temp_name, is_our_temp_name, temp_name
from .fsinfo import filesystem_type, is_loop_safe, is_network_filesystem
from .safepath import open_dir_beneath, split

#: A document's content: a JSON object (a sidecar, an error file), or its JSON text in pieces (a
#: session's crate, which a session of many files makes large).
Content = dict[str, Any] | list[str]
#: (watch root, path below it, content)
Document = tuple[Path, str, Content]
SyncStrategy = Literal["filesystem", "per-file"]

#: Our documents up to this size are recognised by reading them as JSON; larger ones (the crates
#: of large sessions) by finding this agent's entity in their text as it streams past.
SMALL_DOCUMENT_BYTES = 8 << 20
#: Anything bigger in the place of one of our documents is someone else's.
MAX_DOCUMENT_BYTES = 4 << 30
#: Documents written on the event loop's thread (see OutputWriter.write) are at most this large,
#: and so are the files found in their places: larger ones wait for the batch's thread; so does
#: the rest of a batch once this many seconds were spent on it there.
ON_LOOP_BYTES = 1 << 20
ON_LOOP_SECONDS = 0.02
#: A document in pieces is written (and hashed) this many characters at a time: a crate is made of
#: a few small pieces per file it lists, and a system call per piece was a dozen per file.
WRITE_CHARS = 1 << 16
#: This agent's entity as the crates it writes print it.
_AGENT_MARK = (
    f'"@id": "{AGENT_ENTITY_ID}",\n      "@type": "SoftwareApplication",\n      "name": "{AGENT_NAME}",'
).encode()
#: How the crate preview pages it writes (ingest.preview) begin, before any text from the data.
PREVIEW_HEAD = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    f'<meta name="generator" content="{AGENT_NAME}">\n'
)
_HTML_MARK = PREVIEW_HEAD.encode()


#: Unwritten page cache (Dirty and Writeback, the whole machine's) above which syncfs() may wait
#: for others' data. Measured here, 100 sidecars on a journaled ext4: syncfs 5 ms against 18 ms one
#: by one on a quiet disk; with an instrument writing 100 MiB/s beside them, syncfs 24-104 ms (a
#: tenth of the batches 0.5-1.2 s) against 25-26 ms one by one. A batch's own sidecars are far below.
FOREIGN_DIRTY_BYTES = 32 << 20
#: A syncfs slower than this, with more than FOREIGN_DIRTY_BYTES unwritten, waited for others' data
#: (a quiet disk's takes a few ms): the batches after it flush their own files (``_make_durable``).
SLOW_SYNCFS_S = 0.05
#: Temp files open at once while flushed one by one: their writeback is started together.
SYNC_EACH_CHUNK = 64

_rng = random.Random()
_libc = ctypes.CDLL(None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_SYNC_FILE_RANGE_WRITE = 2
#: The filesystems (st_dev) whose last syncfs waited for others' data (SLOW_SYNCFS_S), emptied when
#: little is unwritten. The machine's state, not a batch's, so one for the process, shared by the
#: writer threads: batches that meet before the first slow syncfs ends each wait for one too.
_syncfs_waits: set[int] = set()
#: renameat2 (glibc 2.28+) with RENAME_NOREPLACE: a rename that fails rather than replace a file.
_renameat2 = getattr(_libc, "renameat2", None)
_RENAME_NOREPLACE = 1

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "an I/O error",
    errno.ELOOP: "a folder on the way is a symlink (never followed) or not a folder",
    errno.ENOTDIR: "a folder on the way is a symlink (never followed) or not a folder",
}


@dataclass(slots=True)
class WriteResult:
    written: int = 0
    #: Documents whose exact bytes were on disk already (a redo after a crash, or no change).
    already_there: int = 0
    #: Paths where a file the agent did not write is in the way; nothing was written there.
    conflicts: list[str] = field(default_factory=list)


def is_agent_document(raw: bytes) -> bool:
    """Whether bytes are a sidecar, error file, crate or crate preview written by this agent."""
    if raw.startswith(_HTML_MARK):
        return True
    try:
        doc = jsontext.loads(raw)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    generated = doc.get("generatedBy")
    if isinstance(generated, dict) and generated.get("name") == AGENT_NAME:
        return True
    graph = doc.get("@graph")
    return isinstance(graph, list) and any(
        isinstance(node, dict) and node.get("@id") == AGENT_ENTITY_ID and node.get("name") == AGENT_NAME
        for node in graph
    )


def open_regular(dir_fd: int, name: str) -> tuple[int, os.stat_result] | None:
    """``name`` opened for reading, with its status; None if nothing is there. Raises
    FileExistsError for a link (never followed) or anything but a regular file (a FIFO is opened
    without blocking, and closed unread)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileExistsError(name) from None
        raise
    st = os.fstat(fd)
    if not stat_mod.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileExistsError(name)
    return fd, st


def own_document(dir_fd: int, name: str, *, read_limit: int | None = None) -> bytes | str | None:
    """What is at ``name``, if it is one of the agent's documents: its bytes (its SHA-256 in hex
    for a large one); None if nothing is there.

    Raises FileExistsError when something that is not ours is there (never read if not a regular
    file: opening a FIFO could block), and TooLargeHere when it is larger than ``read_limit``.
    """
    opened = open_regular(dir_fd, name)
    if opened is None:
        return None
    fd, st = opened
    try:
        if read_limit is not None and st.st_size > read_limit:
            raise TooLargeHere(name)
        if st.st_size > MAX_DOCUMENT_BYTES:
            raise FileExistsError(name)
        if st.st_size > SMALL_DOCUMENT_BYTES:
            return _own_large_document(fd, name)
        raw = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
    finally:
        os.close(fd)
    if not is_agent_document(raw):
        raise FileExistsError(name)
    return raw


def _own_large_document(fd: int, name: str) -> str:
    digest, tail, ours = hashlib.sha256(), b"", False
    while chunk := os.read(fd, 1 << 20):
        ours = ours or (not tail and chunk.startswith(_HTML_MARK))
        digest.update(chunk)
        ours = ours or _AGENT_MARK in tail + chunk
        tail = chunk[-len(_AGENT_MARK) :]
    if not ours:
        raise FileExistsError(name)
    return digest.hexdigest()


def _encoded(content: Content) -> bytes | list[str]:
    """A small document's bytes; a large one stays text in pieces, encoded a piece at a time as it
    is hashed or written (a crate of 100,000 files would otherwise be in memory twice)."""
    return jsontext.indented_file(content) if isinstance(content, dict) else content


def _pieces(data: bytes | list[str]) -> Iterator[bytes]:
    """The document's bytes, a large one in pieces of about WRITE_CHARS characters."""
    if isinstance(data, bytes):
        yield data
        return
    joined: list[str] = []
    size = 0
    for piece in data:
        joined.append(piece)
        size += len(piece)
        if size >= WRITE_CHARS:
            yield "".join(joined).encode("utf-8")
            joined, size = [], 0
    if joined:
        yield "".join(joined).encode("utf-8")


def _same(existing: bytes | str, new: bytes | list[str]) -> bool:
    if isinstance(existing, bytes) and isinstance(new, bytes):
        return existing == new
    before = existing if isinstance(existing, str) else hashlib.sha256(existing).hexdigest()
    after = hashlib.sha256()
    for piece in _pieces(new):
        after.update(piece)
    return before == after.hexdigest()


def strategy_for(folder: Path, configured: str = "auto", *, fs_type: str | None = None) -> SyncStrategy:
    if configured in ("filesystem", "per-file"):
        return configured  # type: ignore[return-value]
    if _syncfs is None or is_network_filesystem(fs_type or filesystem_type(folder)):
        return "per-file"
    return "filesystem"


def writes_on_loop(strategy: SyncStrategy, fs_type: str) -> bool:
    """Whether a batch's small documents are staged on the event loop's thread (OutputWriter):
    synced once for the filesystem, on one whose files are page-cache work (fsinfo.is_loop_safe);
    elsewhere opening a file may wait for a server, and everything is written in a thread."""
    return strategy == "filesystem" and is_loop_safe(fs_type)


def _writing_for(folder: Path, configured: str) -> tuple[SyncStrategy, bool]:
    """How documents under ``folder`` are written: their sync strategy, and whether on the loop."""
    fs_type = filesystem_type(folder)
    strategy = strategy_for(folder, configured, fs_type=fs_type)
    return strategy, writes_on_loop(strategy, fs_type)


def write_documents(documents: Iterable[Document], strategy: SyncStrategy = "per-file") -> WriteResult:
    """Write every document atomically and durably. Blocking."""
    return place_staged(stage_documents(documents, strategy))


class _Temp(NamedTuple):
    """A staged document: its temp file's name, its place's name and path, in the folder ``dir_fd``."""

    dir_fd: int
    name: str
    place: str
    relpath: str
    place_was_empty: bool


class TooLargeHere(Exception):
    """A document, or the file in its place, too large to write or read on the event loop's thread."""


@dataclass(slots=True)
class Staged:
    """Documents written to temp files beside their places, not yet durable nor in place; and those
    left for the thread that places them (``deferred``)."""

    strategy: SyncStrategy
    result: WriteResult = field(default_factory=WriteResult)
    folders: dict[tuple[Path, str], int] = field(default_factory=dict)
    pending: list[_Temp] = field(default_factory=list)
    deferred: list[Document] = field(default_factory=list)

    def discard(self) -> None:
        """Remove the temp files not placed, and close the folders (each once, whatever calls it)."""
        while self.pending:
            temp = self.pending.pop()
            with contextlib.suppress(OSError):
                os.unlink(temp.name, dir_fd=temp.dir_fd)
        while self.folders:
            os.close(self.folders.popitem()[1])


def stage_documents(
    documents: Iterable[Document], strategy: SyncStrategy, *, on_loop: bool = False
) -> Staged:
    """Each changed document in a temp file beside its place; unchanged ones and places held by
    someone else's file are counted. ``place_staged`` finishes (or ``discard``). Blocking.

    ``on_loop``: only what is quick to do on the event loop's thread: documents and files in their
    places up to ON_LOOP_BYTES; crates and previews (documents in pieces) and larger ones are left
    to ``place_staged``.
    """
    staged = Staged(strategy)
    started = time.monotonic()
    try:
        for document in documents:
            # On the loop: documents in pieces, and everything once ON_LOOP_SECONDS are spent (a
            # cold cache, a disk throttling writes), wait for the thread.
            if on_loop and (
                not isinstance(document[2], dict) or time.monotonic() - started > ON_LOOP_SECONDS
            ):
                staged.deferred.append(document)
                continue
            try:
                _stage(staged, document, ON_LOOP_BYTES if on_loop else None)
            except TooLargeHere:
                staged.deferred.append(document)
    except BaseException:
        staged.discard()
        raise
    return staged


def _stage(staged: Staged, document: Document, limit: int | None) -> None:
    root, relpath, content = document
    parent, name = split(relpath)
    dir_fd = staged.folders.get((root, parent))
    if dir_fd is None:
        dir_fd = staged.folders[(root, parent)] = _open_folder(root, parent, relpath)
    data = _encoded(content)
    if limit is not None and isinstance(data, bytes) and len(data) > limit:
        raise TooLargeHere(relpath)
    try:
        existing = own_document(dir_fd, name, read_limit=limit)
        if existing is not None and _same(existing, data):
            staged.result.already_there += 1
            return
    except FileExistsError:
        staged.result.conflicts.append(relpath)
        return
    except OSError as exc:
        raise _write_error(relpath, exc) from exc
    temp = _write_temp(dir_fd, name, data, relpath, fsync=staged.strategy == "per-file")
    staged.pending.append(_Temp(dir_fd, temp, name, relpath, existing is None))


def place_staged(staged: Staged) -> WriteResult:
    """The deferred documents staged too, all made durable and renamed into place, their folders
    synced. Blocking."""
    try:
        for document in staged.deferred:
            _stage(staged, document, None)
        staged.deferred.clear()
        if staged.pending and staged.strategy == "filesystem":
            _make_durable(staged.pending)
        while staged.pending:
            temp = staged.pending[0]
            try:
                placed = _place(temp)
            except OSError as exc:
                raise _write_error(temp.relpath, exc) from exc
            staged.pending.pop(0)
            if placed:
                staged.result.written += 1
            else:  # someone else's file arrived in its place since it was staged
                staged.result.conflicts.append(temp.relpath)
                with contextlib.suppress(OSError):
                    os.unlink(temp.name, dir_fd=temp.dir_fd)
        # Every folder, changed or not: a redo after a crash between rename and folder fsync finds
        # its documents in place, and must still make those renames durable.
        for dir_fd in staged.folders.values():
            _fsync(dir_fd, "a folder")
    finally:
        staged.discard()
    return staged.result


def remove_own_documents(root: Path, relpaths: Iterable[str]) -> list[str]:
    """Remove documents the agent wrote (error files that no longer apply); a missing one is fine.

    Only what is provably ours goes: a regular file holding a document with our ``generatedBy``.
    A user's file with such a name stays; returns the paths left alone for that reason.
    """
    left_alone = []
    for relpath in relpaths:
        if _remove_if(root, relpath, _is_own_document) is False:
            left_alone.append(relpath)
    return left_alone


def remove_orphan_temps(root: Path, relpaths: Iterable[str], *, older_than_ns: int) -> int:
    """Remove temp files an interrupted run left: named exactly as ours, older than ``older_than_ns``
    (wall clock: before this process started), and beginning as one of our documents does."""

    def orphan(dir_fd: int, name: str) -> bool:
        if not is_our_temp_name(name):
            return False
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat_mod.S_ISREG(st.st_mode) or st.st_mtime_ns >= older_than_ns:
            return False
        return is_derived_temp_name(name) or _starts_like_ours(dir_fd, name)

    return sum(1 for relpath in relpaths if _remove_if(root, relpath, orphan))


def _remove_if(root: Path, relpath: str, ours: Callable[[int, str], bool]) -> bool | None:
    """True: removed; False: there, but not ours to remove; None: not there (or unreachable)."""
    parent, name = split(relpath)
    try:
        dir_fd = open_dir_beneath(root, parent)
    except OSError:
        return None
    try:
        if not ours(dir_fd, name):
            return False
        os.unlink(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return None
    finally:
        os.close(dir_fd)


def _is_own_document(dir_fd: int, name: str) -> bool:
    try:
        if own_document(dir_fd, name) is None:
            raise FileNotFoundError(name)
    except FileExistsError:
        return False
    return True


def _starts_like_ours(dir_fd: int, name: str) -> bool:
    """Whether a temp file begins as our documents do: JSON, or a preview page's head."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        head = os.read(fd, len(_HTML_MARK))
    finally:
        os.close(fd)
    # Empty: the run stopped between creating and writing it; a page may be cut anywhere.
    return head[:1] in (b"", b"{") or _HTML_MARK.startswith(head)


class OutputWriter:
    """Writes each batch's documents; what waits for the disk runs in a thread of the batch's own,
    so that batches of different sessions overlap.

    One thread per batch, not several: creating files in one folder from several threads only
    queues them on the folder's lock.
    """

    def __init__(self, threads: int, strategy: str = "auto") -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fair-write")
        self._strategy = strategy
        #: By root: its sync strategy, and whether small documents are staged on the loop's thread.
        self._writing: dict[Path, tuple[SyncStrategy, bool]] = {}

    async def write(self, documents: list[Document]) -> WriteResult:
        if not documents:
            return WriteResult()
        loop = asyncio.get_running_loop()
        root = documents[0][0]
        if root not in self._writing:
            self._writing[root] = await loop.run_in_executor(
                self._executor, _writing_for, root, self._strategy
            )
        strategy, on_loop = self._writing[root]
        if not on_loop:  # an fsync per file (network filesystems), or no page cache to count on
            return await loop.run_in_executor(self._executor, write_documents, list(documents), strategy)
        # On a local filesystem the sidecars' temp files are page-cache work, a few milliseconds
        # for a batch: written here, on the loop's thread, their system calls hand the GIL to no
        # one. From a thread, each call was a hand-off with the loop running another batch's
        # Python, and the agent spent a quarter of its CPU switching. What waits for the disk, and
        # what is large (crates, previews, anything over ON_LOOP_BYTES), runs in a thread,
        # shielded: once staged, the documents are placed (or their temp files removed) even if
        # the batch is cancelled meanwhile.
        staged = stage_documents(documents, strategy, on_loop=True)
        try:
            submitted = self._executor.submit(place_staged, staged)
        except RuntimeError:  # the writer was closed meanwhile
            staged.discard()
            raise
        # shield: a cancelled batch stops waiting, the placing goes on (its outcome is then
        # retrieved by shield itself, so an error is not reported as "never retrieved").
        return await asyncio.shield(asyncio.wrap_future(submitted, loop=loop))

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _place(temp: _Temp) -> bool:
    """Rename the temp file to its place; False if a file that is not ours took the place since it
    was staged (nothing is replaced then).

    A place that was empty is taken only if it still is (renameat2 RENAME_NOREPLACE, where the
    filesystem has it): a person's file saved there meanwhile is never replaced. A place that
    held our document is replaced, as before."""
    if temp.place_was_empty and _renameat2 is not None:
        source, target = os.fsencode(temp.name), os.fsencode(temp.place)
        if _renameat2(temp.dir_fd, source, temp.dir_fd, target, _RENAME_NOREPLACE) == 0:
            return True
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            try:
                own_document(temp.dir_fd, temp.place)  # ours (a cancelled run placed it): replaced
            except FileExistsError:
                return False
        elif code not in (errno.EINVAL, errno.ENOSYS):  # no such rename on this filesystem
            raise OSError(code, os.strerror(code))
    os.replace(temp.name, temp.place, src_dir_fd=temp.dir_fd, dst_dir_fd=temp.dir_fd)
    return True


def _open_folder(root: Path, parent: str, relpath: str) -> int:
    try:
        return open_dir_beneath(root, parent)
    except OSError as exc:
        raise _write_error(relpath, exc) from exc


def _write_temp(dir_fd: int, name: str, data: bytes | list[str], relpath: str, *, fsync: bool) -> str:
    # Random but syscall-free: a getrandom() per sidecar shows up in profiles of many small files.
    tmp = temp_name(name, f"{_rng.getrandbits(48):012x}")
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd
        )
    except OSError as exc:
        raise _write_error(relpath, exc) from exc
    try:
        try:
            for piece in _pieces(data):
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        if isinstance(exc, OSError):
            raise _write_error(relpath, exc) from exc
        raise
    return tmp


def _make_durable(temps: list[_Temp]) -> None:
    """The temp files on their disks: by one syncfs per filesystem, or, on a filesystem where syncfs
    was seen to wait for much else's unwritten data while there still is much, each file alone
    (see the module's text).

    Much unwritten data alone does not decide: after a burst of files copied in, it is the data
    about to be ingested, and the first syncfs writes it all at once, after which syncfs is quick
    again; under an instrument acquiring, it is never done, and every syncfs waits."""
    unwritten = unwritten_bytes()
    crowded = unwritten is not None and unwritten > FOREIGN_DIRTY_BYTES
    if not crowded:
        _syncfs_waits.clear()
    devices: dict[int, int] = {}  # folder -> its filesystem, each folder asked once
    by_filesystem: dict[int, list[_Temp]] = {}
    for temp in temps:
        if temp.dir_fd not in devices:
            devices[temp.dir_fd] = os.fstat(temp.dir_fd).st_dev
        by_filesystem.setdefault(devices[temp.dir_fd], []).append(temp)
    for device, on_it in by_filesystem.items():
        if crowded and device in _syncfs_waits:
            _sync_each(on_it)
            continue
        started = time.monotonic()
        _syncfs_of(on_it[0].dir_fd)
        if crowded and time.monotonic() - started > SLOW_SYNCFS_S:
            _syncfs_waits.add(device)


def _syncfs_of(dir_fd: int) -> None:
    assert _syncfs is not None
    # Since Linux 5.8 syncfs() reports the filesystem's writeback errors (ENOSPC, EIO).
    if _syncfs(dir_fd) != 0:
        code = ctypes.get_errno()
        raise _write_error("the batch's files", OSError(code, os.strerror(code)))


def _sync_each(temps: list[_Temp]) -> None:
    """Each temp file flushed alone, SYNC_EACH_CHUNK at a time: the writeback of all of them is
    started first (sync_file_range), so that their data and the journal's commit go to the disk
    together, not file after file (18 ms for 100 sidecars here, against 81 with an fsync each)."""
    for start in range(0, len(temps), SYNC_EACH_CHUNK):
        opened: list[tuple[int, _Temp]] = []
        try:
            for temp in temps[start : start + SYNC_EACH_CHUNK]:
                try:
                    fd = os.open(
                        temp.name,
                        os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                        dir_fd=temp.dir_fd,
                    )
                except OSError as exc:
                    raise _write_error(temp.relpath, exc) from exc
                opened.append((fd, temp))
                if _sync_file_range is not None:  # advisory: an error shows in fdatasync
                    _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)
            for fd, temp in opened:
                try:
                    os.fdatasync(fd)  # the contents and the size; not the times
                except OSError as exc:
                    raise _write_error(temp.relpath, exc) from exc
        finally:
            for fd, _ in opened:
                os.close(fd)


def unwritten_bytes(meminfo: bytes | None = None) -> int | None:
    """The page cache not yet on disk, the whole machine's: Dirty and Writeback in /proc/meminfo
    (or ``meminfo``, its text). None when /proc is not there to ask."""
    if meminfo is None:
        try:
            with open("/proc/meminfo", "rb") as f:
                meminfo = f.read()
        except OSError:
            return None
    total = 0
    for line in meminfo.splitlines():
        if line.startswith((b"Dirty:", b"Writeback:")):
            total += int(line.split()[1]) << 10  # in kB
    return total


def _fsync(fd: int, what: str) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        raise _write_error(what, exc) from exc


def _write_error(what: str, exc: OSError) -> OutputWriteError:
    reason = _REASONS.get(exc.errno or 0, exc.strerror or str(exc))
    return OutputWriteError(what, reason)
