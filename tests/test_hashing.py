"""Hashing: the true SHA-256 of every size, and no hash recorded for a file that moved under us."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.core.errors import FileChangedError, FileVanishedError, NotRegularFileError
from agent.ingest.hashing import Hasher, hash_file

from .conftest import appending, sha256sum, write

CHUNK = 4096


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 7])
def test_hash_matches_sha256sum(tmp_path: Path, size: int) -> None:
    path = write(tmp_path / "f.bin", bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    result = hash_file(tmp_path, "f.bin", CHUNK)
    assert result.sha256 == sha256sum(path)
    assert result.stat.size == size


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
    import os

    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(NotRegularFileError):
        hash_file(tmp_path, "pipe")


async def test_hasher_hashes_in_threads(tmp_path: Path) -> None:
    for i in range(8):
        write(tmp_path / f"{i}.bin", bytes([i]) * 100_000)
    hasher = Hasher(threads=2, chunk_bytes=CHUNK)
    try:
        import asyncio

        results = await asyncio.gather(*(hasher.hash(tmp_path, f"{i}.bin") for i in range(8)))
    finally:
        hasher.close()
    assert [r.sha256 for r in results] == [hashlib.sha256(bytes([i]) * 100_000).hexdigest() for i in range(8)]
    assert hasher.bytes_hashed == 800_000 and hasher.files_hashed == 8
