"""Outputs next to the data: atomic, durable, never rewritten when unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.core.errors import OutputWriteError
from agent.core.jsontext import indented_file
from agent.core.naming import temp_name
from agent.fs import outputs
from agent.fs.fsinfo import filesystem_type, is_network_filesystem, mount_points_below
from agent.fs.outputs import (
    PREVIEW_HEAD,
    Document,
    OutputWriter,
    remove_orphan_temps,
    remove_own_documents,
    strategy_for,
    unwritten_bytes,
    write_documents,
    writes_on_loop,
)

OURS = {"name": "fair-agent"}

MOUNTINFO = "\n".join(
    [
        "22 27 0:21 / /proc rw,relatime - proc proc rw",
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
        r"40 27 0:50 / /mnt/lab\040share rw,relatime - cifs //nas/lab rw",
        "41 27 0:51 / /mnt/nfs rw - nfs4 nas:/export rw",
        "42 41 0:52 / /mnt/nfs/local rw - ext4 /dev/vdb rw",
        "43 27 0:53 / /home/u/remote rw - fuse.sshfs u@host: rw",
    ]
)


@pytest.mark.parametrize(
    ("path", "fs_type", "network"),
    [
        ("/data/x.csv", "ext4", False),
        ("/mnt/lab share/run 1/a.csv", "cifs", True),
        ("/mnt/lab", "ext4", False),
        ("/mnt/nfs/a", "nfs4", True),
        ("/mnt/nfs/local/a", "ext4", False),  # the deepest mount point wins
        ("/home/u/remote/a", "fuse.sshfs", True),
    ],
)
def test_filesystem_type_from_mountinfo(path: str, fs_type: str, network: bool) -> None:
    found = filesystem_type(Path(path), MOUNTINFO)
    assert found == fs_type and is_network_filesystem(found) is network


def test_mount_points_below_a_folder_from_mountinfo() -> None:
    assert mount_points_below(Path("/mnt"), MOUNTINFO) == frozenset({"lab share", "nfs", "nfs/local"})
    assert mount_points_below(Path("/mnt/nfs/"), MOUNTINFO) == frozenset({"local"})
    assert mount_points_below(Path("/data"), MOUNTINFO) == frozenset()


@pytest.mark.parametrize(
    ("strategy", "fs_type", "on_loop"),
    [
        ("filesystem", "ext4", True),
        ("filesystem", "tmpfs", True),
        ("per-file", "ext4", False),  # fsynced one by one: waits for the disk
        ("filesystem", "overlay", False),  # forced to syncfs, but its layers may be anything
        ("filesystem", "gpfs", False),  # a cluster filesystem not known as a network one
        ("filesystem", "zfs", False),
    ],
)
def test_small_documents_are_staged_on_the_loop_only_on_local_disks(
    strategy: str, fs_type: str, on_loop: bool
) -> None:
    assert writes_on_loop(strategy, fs_type) is on_loop  # type: ignore[arg-type]


def test_filesystem_type_of_this_machine(tmp_path: Path) -> None:
    assert filesystem_type(tmp_path) not in ("", "unknown")
    assert strategy_for(tmp_path, "per-file") == "per-file"


@pytest.mark.parametrize("strategy", ["filesystem", "per-file"])
def test_documents_are_written_whole_and_leave_no_temp_files(tmp_path: Path, strategy: str) -> None:
    (tmp_path / "s").mkdir()
    docs = [(tmp_path, f"s/{i}.fair.json", {"n": i, "name": "é", "generatedBy": OURS}) for i in range(20)]
    assert write_documents(docs, strategy).written == 20  # type: ignore[arg-type]
    for _, relpath, doc in docs:
        assert json.loads((tmp_path / relpath).read_text(encoding="utf-8")) == doc
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(r.split("/")[1] for _, r, _ in docs)


def test_unwritten_bytes_are_the_dirty_and_writeback_pages() -> None:
    meminfo = b"MemTotal: 24683584 kB\nDirty:    1220 kB\nWriteback:  80 kB\nWritebackTmp:  7 kB\n"
    assert unwritten_bytes(meminfo) == 1300 * 1024  # WritebackTmp (FUSE's buffers) is not counted
    found = unwritten_bytes()  # this machine's
    assert found is not None and found >= 0


class SyncCalls:
    """Counts the system's syncfs() and fdatasync() calls a batch makes; each still does its work."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, unwritten: int) -> None:
        self.syncfs = self.fdatasync = 0
        real_syncfs, real_fdatasync = outputs._syncfs, os.fdatasync
        if real_syncfs is None:
            pytest.skip("this libc has no syncfs()")

        def syncfs(fd: int) -> int:
            self.syncfs += 1
            return int(real_syncfs(fd))

        def fdatasync(fd: int) -> None:
            self.fdatasync += 1
            real_fdatasync(fd)

        monkeypatch.setattr(outputs, "_syncfs", syncfs)
        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(outputs, "unwritten_bytes", lambda: unwritten)
        monkeypatch.setattr(outputs, "_syncfs_waits", set())  # and restored afterwards


def _batch(root: Path, name: str, count: int = 70) -> list[Document]:
    (root / name).mkdir()
    return [(root, f"{name}/{i}.fair.json", {"n": i, "generatedBy": OURS}) for i in range(count)]


def _written_whole(root: Path, docs: list[Document]) -> bool:
    folders = {root / relpath.split("/")[0] for _, relpath, _ in docs}
    return all(json.loads((root / r).read_text(encoding="utf-8")) == d for _, r, d in docs) and sorted(
        p.name for folder in folders for p in folder.iterdir()
    ) == sorted(r.split("/")[1] for _, r, _ in docs)


def test_a_batch_is_made_durable_by_one_syncfs_when_little_is_unwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = SyncCalls(monkeypatch, unwritten=outputs.FOREIGN_DIRTY_BYTES)
    outputs._syncfs_waits.add(tmp_path.stat().st_dev)  # an earlier load, drained since
    docs = _batch(tmp_path, "s")
    assert write_documents(docs, "filesystem").written == 70
    assert (calls.syncfs, calls.fdatasync) == (1, 0) and _written_whole(tmp_path, docs)
    assert outputs._syncfs_waits == set()


def test_once_syncfs_waited_for_others_data_a_batch_flushes_its_own_files_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An instrument acquiring onto the same disk: much unwritten data, and a syncfs that waited.
    calls = SyncCalls(monkeypatch, unwritten=outputs.FOREIGN_DIRTY_BYTES + 1)
    monkeypatch.setattr(outputs, "SLOW_SYNCFS_S", -1.0)  # every syncfs counts as one that waited
    first = _batch(tmp_path, "first")
    assert write_documents(first, "filesystem").written == 70
    assert (calls.syncfs, calls.fdatasync) == (1, 0)
    assert outputs._syncfs_waits == {tmp_path.stat().st_dev}  # that filesystem's, not every one's
    # The next batches: each of their temp files flushed (more than one chunk of them), no syncfs,
    # and every descriptor opened for it closed again. (Objects earlier tests left to the garbage
    # collector must not close theirs during the count.)
    gc.collect()
    open_before = len(os.listdir("/proc/self/fd"))
    second = _batch(tmp_path, "second")
    assert write_documents(second, "filesystem").written == 70
    assert (calls.syncfs, calls.fdatasync) == (1, 70) and _written_whole(tmp_path, first + second)
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_much_unwritten_data_alone_does_not_stop_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A burst of files copied in: the first syncfs writes them out, and was quick enough.
    calls = SyncCalls(monkeypatch, unwritten=outputs.FOREIGN_DIRTY_BYTES + 1)
    monkeypatch.setattr(outputs, "SLOW_SYNCFS_S", 3600.0)
    for name in ("a", "b"):
        assert write_documents(_batch(tmp_path, name), "filesystem").written == 70
    assert (calls.syncfs, calls.fdatasync) == (2, 0) and outputs._syncfs_waits == set()


def test_a_temp_file_that_cannot_be_flushed_fails_the_batch_with_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SyncCalls(monkeypatch, unwritten=outputs.FOREIGN_DIRTY_BYTES + 1)
    outputs._syncfs_waits.add(tmp_path.stat().st_dev)

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    docs = _batch(tmp_path, "s", 3)
    with pytest.raises(OutputWriteError, match=r"s/0\.fair\.json.*I/O error"):
        write_documents(docs, "filesystem")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == []  # no temp file left, none placed


def test_unchanged_documents_are_not_rewritten(tmp_path: Path) -> None:
    doc = [(tmp_path, "a.fair.json", {"x": 1, "generatedBy": OURS})]
    write_documents(doc)
    before = (tmp_path / "a.fair.json").stat().st_mtime_ns
    assert write_documents(doc).written == 0
    assert (tmp_path / "a.fair.json").stat().st_mtime_ns == before
    assert write_documents([(tmp_path, "a.fair.json", {"x": 2, "generatedBy": OURS})]).written == 1


def test_a_document_in_many_pieces_is_written_whole_in_few_system_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crate arrives as a few small pieces per file it lists; a write per piece made a crate of
    # 10,000 files cost 50,000 system calls (each a hand-off of the GIL between threads).
    pieces = ['{\n  "generatedBy": {"name": "fair-agent"},\n  "@graph": [\n']
    pieces += [f'    {{"@id": "f{i}.csv", "name": "µ{i}"}},\n' for i in range(10_000)]
    pieces += ['    {"@id": "./"}\n  ]\n}\n']
    writes = 0
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        nonlocal writes
        writes += 1
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    assert write_documents([(tmp_path, "ro-crate-metadata.json", pieces)]).written == 1
    text = "".join(pieces)
    assert (tmp_path / "ro-crate-metadata.json").read_text(encoding="utf-8") == text
    assert writes <= len(text) // (1 << 16) + 1
    assert write_documents([(tmp_path, "ro-crate-metadata.json", pieces)]).already_there == 1


def test_a_file_that_is_not_ours_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "theirs.fair.json").write_text('{"their": "data"}')
    os.mkfifo(tmp_path / "pipe.fair.json")  # opening it for reading would block
    (tmp_path / "link.fair.json").symlink_to(tmp_path / "theirs.fair.json")
    docs = [
        (tmp_path, name, {"generatedBy": OURS})
        for name in ("theirs.fair.json", "pipe.fair.json", "link.fair.json")
    ]
    result = write_documents(docs)
    assert result.written == 0
    assert sorted(result.conflicts) == ["link.fair.json", "pipe.fair.json", "theirs.fair.json"]
    assert (tmp_path / "theirs.fair.json").read_text() == '{"their": "data"}'


def test_a_folder_swapped_for_a_symlink_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "s").symlink_to(outside)
    with pytest.raises(OutputWriteError, match="symlink"):
        write_documents([(tmp_path / "root", "s/a.fair.json", {"generatedBy": OURS})])
    assert list(outside.iterdir()) == []


def test_serialisation_is_stable() -> None:
    doc = {"b": [1, {"c": "µ"}], "a": None}
    assert indented_file(doc) == indented_file(json.loads(indented_file(doc)))
    assert "µ".encode() in indented_file(doc)


def test_orphan_temp_files_are_removed_only_when_older_than_the_cutoff(tmp_path: Path) -> None:
    old = tmp_path / temp_name("a.fair.json", "0123456789ab")
    old.write_text("{")
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    new = tmp_path / temp_name("b.fair.json", "0123456789ab")
    new.write_text("{")
    assert remove_orphan_temps(tmp_path, [old.name, new.name], older_than_ns=2_000_000_000) == 1
    assert not old.exists() and new.exists()


def test_an_interrupted_preview_page_is_an_orphan_and_a_users_page_is_not(tmp_path: Path) -> None:
    cut = tmp_path / temp_name("ro-crate-preview.html", "0123456789ab")
    cut.write_text(PREVIEW_HEAD[:30])  # the run stopped while writing the page's head
    theirs = tmp_path / temp_name("ro-crate-preview.html", "ba9876543210")
    theirs.write_text("<!DOCTYPE html><html><body>mine</body></html>")
    for path in (cut, theirs):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert remove_orphan_temps(tmp_path, [cut.name, theirs.name], older_than_ns=2_000_000_000) == 1
    assert not cut.exists() and theirs.exists()


def test_only_what_is_provably_ours_is_removed(tmp_path: Path) -> None:
    """Orphans must be named exactly like ours and hold JSON; error files must be our documents."""
    theirs = tmp_path / "notes.fair-tmp"  # our suffix, not our name
    theirs.write_text("{")
    foreign = tmp_path / temp_name("c.fair.json", "0123456789ab")
    foreign.write_bytes(b"PK\x03\x04 a user's archive")  # our name, not our content
    legacy = tmp_path / ".d.csv.fair.json.0123456789ab.fair-tmp"  # named as before 0.2
    legacy.write_text('{"partial')
    for path in (theirs, foreign, legacy):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    names = [theirs.name, foreign.name, legacy.name]
    assert remove_orphan_temps(tmp_path, names, older_than_ns=2_000_000_000) == 1
    assert theirs.exists() and foreign.exists() and not legacy.exists()

    write_documents([(tmp_path, "ours.fair.error.json", {"reason": "x", "generatedBy": OURS})])
    (tmp_path / "user.csv.fair.error.json").write_text('{"my": "notes"}')
    left = remove_own_documents(
        tmp_path, ["ours.fair.error.json", "user.csv.fair.error.json", "gone.fair.error.json"]
    )
    assert left == ["user.csv.fair.error.json"]
    assert not (tmp_path / "ours.fair.error.json").exists()
    assert (tmp_path / "user.csv.fair.error.json").read_text() == '{"my": "notes"}'


async def test_writer_uses_threads_and_reports_changes(tmp_path: Path) -> None:
    writer = OutputWriter(2)
    try:
        doc = (tmp_path, "a.fair.json", {"a": 1, "generatedBy": OURS})
        assert (await writer.write([doc])).written == 1
        assert (await writer.write([doc])).written == 0
        assert (await writer.write([])).written == 0
    finally:
        writer.close()


@contextlib.contextmanager
def held(writer: OutputWriter) -> Iterator[threading.Event]:
    """The writer's one thread kept busy until the event is set (or the block ends)."""
    release = threading.Event()
    writer._executor.submit(release.wait)
    try:
        yield release
    finally:
        release.set()


async def test_a_batch_cancelled_while_its_documents_are_placed_leaves_them_whole(tmp_path: Path) -> None:
    # On a local filesystem the temp files are written on the loop's thread, then made durable and
    # renamed in a thread: a cancellation in between must neither strand temp files nor half-place.
    docs: list[Document] = [(tmp_path, f"{i}.fair.json", {"n": i, "generatedBy": OURS}) for i in range(50)]
    writer = OutputWriter(1, "filesystem")
    try:
        await writer.write([(tmp_path, "first.fair.json", {"generatedBy": OURS})])
        with held(writer):
            task = asyncio.create_task(writer.write(docs))
            await asyncio.sleep(0)  # staged; its placing waits behind the held thread
            assert any(p.name.endswith(".fair-tmp") for p in tmp_path.iterdir())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        writer.close()  # waits for the thread that places them
    expected = {f"{i}.fair.json" for i in range(50)} | {"first.fair.json"}
    assert {p.name for p in tmp_path.iterdir()} == expected
    assert json.loads((tmp_path / "7.fair.json").read_text()) == {"n": 7, "generatedBy": OURS}


async def test_a_persons_file_saved_while_a_document_waits_to_be_placed_is_kept(tmp_path: Path) -> None:
    writer = OutputWriter(1, "filesystem")
    try:
        await writer.write([(tmp_path, "first.fair.json", {"generatedBy": OURS})])
        with held(writer):
            task = asyncio.create_task(writer.write([(tmp_path, "a.csv.fair.json", {"generatedBy": OURS})]))
            await asyncio.sleep(0)  # staged: the place was empty
            (tmp_path / "a.csv.fair.json").write_text("my notes")
        result = await task
    finally:
        writer.close()
    assert (result.written, result.conflicts) == (0, ["a.csv.fair.json"])
    assert (tmp_path / "a.csv.fair.json").read_text() == "my notes"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".fair-tmp")]


async def test_a_closed_writer_leaves_nothing_staged(tmp_path: Path) -> None:
    writer = OutputWriter(1, "filesystem")
    await writer.write([(tmp_path, "first.fair.json", {"generatedBy": OURS})])
    writer.close()
    with pytest.raises(RuntimeError):
        await writer.write([(tmp_path, "a.fair.json", {"generatedBy": OURS})])
    assert [p.name for p in tmp_path.iterdir()] == ["first.fair.json"]


async def test_large_documents_and_files_in_their_places_wait_for_the_writers_thread(tmp_path: Path) -> None:
    # The loop's thread writes only small documents and reads only small files in their places;
    # the rest is staged by the thread that places them, with the same checks.

    from agent.fs import outputs

    (tmp_path / "theirs.fair.json").write_bytes(b"x" * (outputs.ON_LOOP_BYTES + 1))
    docs = [
        (tmp_path, "small.fair.json", {"generatedBy": OURS}),
        (tmp_path, "large.fair.json", {"blob": "y" * outputs.ON_LOOP_BYTES, "generatedBy": OURS}),
        (tmp_path, "crate.json", ['{"generatedBy": ', '{"name": "fair-agent"}}\n']),
        (tmp_path, "theirs.fair.json", {"generatedBy": OURS}),
    ]
    staged_in: dict[str, str] = {}
    real_stage = outputs._stage

    def recording_stage(staged: outputs.Staged, document: outputs.Document, limit: int | None) -> None:
        real_stage(staged, document, limit)
        staged_in[document[1]] = threading.current_thread().name

    writer = OutputWriter(1, "filesystem")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(outputs, "_stage", recording_stage)
            result = await writer.write(docs)  # type: ignore[arg-type]
    finally:
        writer.close()
    assert (result.written, result.conflicts) == (3, ["theirs.fair.json"])
    loop_thread = threading.current_thread().name
    assert staged_in["small.fair.json"] == loop_thread
    assert loop_thread not in {staged_in[n] for n in ("large.fair.json", "crate.json", "theirs.fair.json")}
    assert (tmp_path / "theirs.fair.json").stat().st_size == outputs.ON_LOOP_BYTES + 1
    assert json.loads((tmp_path / "large.fair.json").read_text())["blob"] == "y" * outputs.ON_LOOP_BYTES
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".fair-tmp")]
