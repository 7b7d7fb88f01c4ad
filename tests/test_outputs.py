"""Outputs next to the data: atomic, durable, never rewritten when unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.fsinfo import filesystem_type, is_network_filesystem
from agent.outputs import OutputWriter, strategy_for, to_json_bytes, write_documents

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


def test_filesystem_type_of_this_machine(tmp_path: Path) -> None:
    assert filesystem_type(tmp_path) not in ("", "unknown")
    assert strategy_for(tmp_path, "per-file") == "per-file"


@pytest.mark.parametrize("strategy", ["filesystem", "per-file"])
def test_documents_are_written_whole_and_leave_no_temp_files(tmp_path: Path, strategy: str) -> None:
    docs = [(tmp_path / f"{i}.fair.json", {"n": i, "name": "é"}) for i in range(20)]
    assert write_documents(docs, strategy) == 20  # type: ignore[arg-type]
    for path, doc in docs:
        assert json.loads(path.read_text(encoding="utf-8")) == doc
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p, _ in docs)


def test_unchanged_documents_are_not_rewritten(tmp_path: Path) -> None:
    doc = [(tmp_path / "a.fair.json", {"x": 1})]
    write_documents(doc)
    before = (tmp_path / "a.fair.json").stat().st_mtime_ns
    assert write_documents(doc) == 0
    assert (tmp_path / "a.fair.json").stat().st_mtime_ns == before
    assert write_documents([(tmp_path / "a.fair.json", {"x": 2})]) == 1


def test_serialisation_is_stable() -> None:
    doc = {"b": [1, {"c": "µ"}], "a": None}
    assert to_json_bytes(doc) == to_json_bytes(json.loads(to_json_bytes(doc)))
    assert "µ".encode() in to_json_bytes(doc)


async def test_writer_uses_threads_and_reports_changes(tmp_path: Path) -> None:
    writer = OutputWriter(2)
    try:
        assert await writer.write([(tmp_path / "a.fair.json", {"a": 1})]) == 1
        assert await writer.write([(tmp_path / "a.fair.json", {"a": 1})]) == 0
        assert await writer.write([]) == 0
    finally:
        writer.close()
