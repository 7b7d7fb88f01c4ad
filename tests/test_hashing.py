"""Hashing: the true SHA-256 of every size, and no hash recorded for a file that moved under us."""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import mmap
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.core.batch import FileStat
from agent.core.errors import FileChangedError, FileVanishedError, NotRegularFileError
from agent.fs.fsinfo import DISK_FILESYSTEMS, filesystem_type
from agent.ingest import hashing
from agent.ingest.hashing import (
    Hashed,
    Hasher,
    InMemory,
    Stop,
    _digest,
    hash_file,
    hash_group,
    hash_in_memory,
    in_memory_read_flags,
)

from .conftest import appending, sha256sum, write

CHUNK = 4096


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 7])
def test_hash_matches_sha256sum(tmp_path: Path, size: int) -> None:
    path = write(tmp_path / "f.bin", bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    result = hash_file(tmp_path, "f.bin", CHUNK)
    assert result.sha256 == sha256sum(path)
    assert result.stat.size == size


def test_files_are_read_into_a_buffer_on_a_cache_line_away_from_a_page_start() -> None:
    # A buffer 16 bytes past a 32-byte boundary (a bytearray's, from malloc) made the kernel's copy
    # three times slower and large files a half slower to hash; one at a page's start is slow on
    # other CPUs (agent.fs.buffers).
    offsets: list[int] = []

    def in_a_new_thread() -> None:
        for size in (CHUNK, 1 << 20, 3 << 20):
            buffer = hashing._buffer(size)
            assert len(buffer) == size and not buffer.readonly
            offsets.append(ctypes.addressof(ctypes.c_char.from_buffer(buffer)) % mmap.PAGESIZE)

    thread = threading.Thread(target=in_a_new_thread)
    thread.start()
    thread.join()
    assert len(offsets) == 3
    assert all(offset % 64 == 0 and offset != 0 for offset in offsets), offsets


def test_file_growing_while_hashed_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "growing.bin", b"\0" * (64 << 20))
    with (
        appending(path, pause=0.001),
        pytest.raises(FileChangedError, match="changed while it was being read"),
    ):
        hash_file(tmp_path, "growing.bin", CHUNK)


def test_vanished_file(tmp_path: Path) -> None:
    with pytest.raises(FileVanishedError):
        hash_file(tmp_path, "nothing-here.csv")


def test_symlink_is_not_followed(tmp_path: Path) -> None:
    write(tmp_path / "real.csv", "x")
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    with pytest.raises(FileChangedError, match="symlink"):
        hash_file(tmp_path, "link.csv")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(NotRegularFileError):
        hash_file(tmp_path, "pipe")


async def test_hasher_hashes_in_threads(tmp_path: Path) -> None:
    for i in range(8):
        write(tmp_path / f"{i}.bin", bytes([i]) * 100_000)
    hasher = Hasher(threads=2, chunk_bytes=CHUNK)
    try:
        results = await asyncio.gather(*(hasher.hash(tmp_path, f"{i}.bin") for i in range(8)))
    finally:
        hasher.close()
    assert [r.sha256 for r in results] == [hashlib.sha256(bytes([i]) * 100_000).hexdigest() for i in range(8)]
    assert hasher.bytes_hashed == 800_000 and hasher.files_hashed == 8


#: Tries of a test that needs a read to find a file out of memory. Evicted, it is, but the probe
#: (a read with RWF_NOWAIT) starts the kernel's readahead, and a virtual disk backed by its host's
#: cache may answer before the probe looks: then the file reads as in memory (59 of 300
#: evicted files here, none of their pages resident by mincore; kernel 6.18). The agent loses
#: nothing by that: it reads such a file as fast as one in memory. The test tries again.
DISK_TRIES = 12


def tries(tmp_path: Path) -> Iterator[Path]:
    """A fresh folder for each of DISK_TRIES tries; the test fails when they are spent."""
    for attempt in range(DISK_TRIES):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        yield folder
    pytest.fail(f"in {DISK_TRIES} tries an evicted file always read as in memory")


def evict(path: Path) -> None:
    """Drop the file's bytes from the page cache (they are on disk: synced first)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def in_memory_here(tmp_path: Path, flags: int | None = None) -> InMemory:
    """How the loop reads the test's folder, which must be on a disk's filesystem (one that can
    tell what is in memory: RWF_NOWAIT) unless ``flags`` are given."""
    if flags is None:
        if filesystem_type(tmp_path) not in DISK_FILESYSTEMS:
            pytest.skip(f"the tests' folder is on {filesystem_type(tmp_path)}, not on a disk's filesystem")
        flags = os.RWF_NOWAIT
    return InMemory(flags, os.stat(tmp_path).st_dev)


def listed(*paths: Path) -> list[FileStat]:
    return [FileStat.from_stat(p.name, p.stat()) for p in paths]


def test_files_in_memory_are_hashed_until_one_would_wait_for_the_disk(tmp_path: Path) -> None:
    reading = in_memory_here(tmp_path)
    for folder in tries(tmp_path):
        paths = [write(folder / f"{i}.bin", bytes([i]) * 5000) for i in range(4)]
        evict(paths[2])
        names = [p.name for p in paths]
        done, stop = hash_in_memory(folder, names, CHUNK, 1 << 20, reading)
        expected = [hash_file(folder, name, CHUNK) for name in names]
        if stop is Stop.NOT_IN_MEMORY:
            assert done == expected[:2]
            return
        assert stop is None and done == expected  # the disk answered the probe (DISK_TRIES)


def test_what_the_loop_may_read_is_bounded(tmp_path: Path) -> None:
    reading = in_memory_here(tmp_path, flags=0)
    for i in range(4):
        write(tmp_path / f"{i}.bin", bytes([i]) * 5000)
    names = [f"{i}.bin" for i in range(4)]
    done, stop = hash_in_memory(tmp_path, names, CHUNK, 12_000, reading)
    assert [r.stat.relpath for r in done if isinstance(r, Hashed)] == names[:2] and stop is Stop.SHARE_USED
    # A file's error is its result, as in a thread; the files after it go on.
    (tmp_path / "1.bin").unlink()
    done, stop = hash_in_memory(tmp_path, names, CHUNK, 1 << 20, reading)
    assert isinstance(done[1], FileVanishedError) and [type(r) for r in done[2:]] == [Hashed, Hashed]
    assert stop is None


def test_a_folder_on_another_device_is_left_to_the_threads(tmp_path: Path) -> None:
    """A share mounted below the root (or the root remounted): not one file is opened there."""
    write(tmp_path / "a.bin", b"x")
    elsewhere = InMemory(0, os.stat(tmp_path).st_dev + 1)
    assert hash_in_memory(tmp_path, ["a.bin"], CHUNK, 1 << 20, elsewhere) == ([], Stop.ELSEWHERE)


def test_a_file_that_grows_is_not_read_to_its_new_end(tmp_path: Path) -> None:
    """Opened at 4 KiB, it has grown to 64 MiB: the read stops past what it was (it is refused
    as changed), on the loop's thread as in a thread."""
    path = write(tmp_path / "growing.bin", b"\0" * (64 << 20))
    fd = os.open(path, os.O_RDONLY)
    try:
        _, count, _ = _digest(fd, CHUNK, None, 4096)
    finally:
        os.close(fd)
    assert 4096 < count <= 4096 + CHUNK


@pytest.mark.parametrize(
    ("fs_type", "flags"),
    [
        ("ext4", os.RWF_NOWAIT),
        ("xfs", os.RWF_NOWAIT),
        ("tmpfs", 0),  # nothing there waits for a disk
        ("nfs4", None),
        ("fuse.sshfs", None),
        ("overlay", None),  # its lower layer may be anything
        ("autofs", None),  # an automount point: mounting waits
        ("gpfs", None),
        ("zfs", None),  # its cache is not the page cache
        ("unknown", None),
    ],
)
def test_only_local_disk_and_memory_filesystems_are_read_on_the_loop(fs_type: str, flags: int | None) -> None:
    """Where opening a file may wait for a server, nothing is read on the loop's thread."""
    assert in_memory_read_flags(fs_type) == flags


@pytest.fixture
def in_threads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The files of each group the hasher hands its threads (the real function, watched)."""
    handed: list[list[str]] = []

    def watched(root: Path, relpaths: list[str], *args: object) -> list[Hashed | Exception]:
        handed.append(relpaths)
        return hash_group(root, relpaths, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(hashing, "hash_group", watched)
    return handed


async def test_the_hasher_hands_the_thread_only_what_would_wait(
    tmp_path: Path, in_threads: list[list[str]]
) -> None:
    in_memory_here(tmp_path)
    for folder in tries(tmp_path):
        in_threads.clear()
        paths = [write(folder / f"{i}.bin", bytes([i]) * 5000) for i in range(6)]
        waits: list[float] = []  # how long each group waited to be hashed
        hasher = Hasher(threads=2, chunk_bytes=CHUNK, on_wait=waits.append)
        try:
            first = await hasher.hash_group(folder, listed(*paths[:3]))
            assert in_threads == [] and waits == [0.0]  # all in memory: hashed on the loop's thread
            evict(paths[4])
            second = await hasher.hash_group(folder, listed(*paths[3:]))
        finally:
            hasher.close()
        assert [r.sha256 for r in first + second if isinstance(r, Hashed)] == [sha256sum(p) for p in paths]
        assert hasher.files_hashed == 6 and hasher.bytes_hashed == 30_000
        if in_threads:
            assert in_threads == [["4.bin", "5.bin"]] and len(waits) == 2
            return
        assert waits == [0.0, 0.0]  # the disk answered the probe (DISK_TRIES): all on the loop


async def test_groups_started_together_share_the_loops_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_threads: list[list[str]]
) -> None:
    """A batch's groups start at once: the loop reads ON_LOOP_BYTES in all, the rest go to threads."""
    if hashing.in_memory_reading(tmp_path) is None:
        pytest.skip(f"the tests' folder is on {filesystem_type(tmp_path)}: read in threads only")
    monkeypatch.setattr(hashing, "ON_LOOP_BYTES", 10_000)
    monkeypatch.setattr(hashing, "LOOP_SLICE_S", 60.0)  # one slice for the whole test
    paths = [write(tmp_path / f"{i}.bin", bytes([i]) * 4000) for i in range(6)]
    hasher = Hasher(threads=2, chunk_bytes=CHUNK)
    try:
        groups = [listed(*paths[i : i + 2]) for i in range(0, 6, 2)]
        results = await asyncio.gather(*(hasher.hash_group(tmp_path, g) for g in groups))
    finally:
        hasher.close()
    # The first group (8,000 bytes) fits; the second's first file would pass 10,000: threads.
    assert sorted(in_threads) == [["2.bin", "3.bin"], ["4.bin", "5.bin"]]
    assert [r.sha256 for g in results for r in g if isinstance(r, Hashed)] == [sha256sum(p) for p in paths]


async def test_groups_that_find_the_root_elsewhere_go_to_threads_and_look_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_threads: list[list[str]]
) -> None:
    """The root remounted since it was looked up (played by a device it does not have): every
    group that meets it hands its files to a thread, and the root is looked up again."""
    lookups: list[Path] = []

    def moved(root: Path) -> InMemory:
        lookups.append(root)
        return InMemory(0, os.stat(root).st_dev + 1)

    monkeypatch.setattr(hashing, "in_memory_reading", moved)
    paths = [write(tmp_path / f"{i}.bin", bytes([i]) * 100) for i in range(4)]
    hasher = Hasher(threads=2, chunk_bytes=CHUNK)
    try:
        together = await asyncio.gather(*(hasher.hash_group(tmp_path, listed(p)) for p in paths[:2]))
        later = await hasher.hash_group(tmp_path, listed(*paths[2:]))
    finally:
        hasher.close()
    assert sorted(in_threads) == [["0.bin"], ["1.bin"], ["2.bin", "3.bin"]]
    assert len(lookups) == 2  # once for the groups that started together, once again after them
    assert [r.sha256 for g in [*together, later] for r in g if isinstance(r, Hashed)] == [
        sha256sum(p) for p in paths
    ]
