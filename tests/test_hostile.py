"""Inputs an attacker or an unlucky lab produce: no name, time, archive, line or ledger wedges the
agent, memory stays bounded, and nothing the agent did not write is removed."""

from __future__ import annotations

import json
import os
import threading
import time
import zipfile
from pathlib import Path

import pytest

from agent.core.config import AgentConfig
from agent.core.errors import FileChangedError, LedgerError
from agent.core.naming import error_name, sidecar_name
from agent.extractors.base import Budget, Source
from agent.extractors.tabular import TabularExtractor
from agent.ingest.hashing import hash_file
from agent.ledger import Ledger

from .conftest import REPO, agent_cli, dead_letters, opened_db, read_error_file, read_sidecar, run_scan, write

#: A year after 2262-04-11, the last moment of nanoseconds since 1970 in a signed 64-bit integer.
YEAR_2300_NS = 10_413_792_000 * 10**9


async def test_a_name_too_long_for_its_sidecar_fails_alone(drop: Path, config: AgentConfig) -> None:
    long_name = "x" * 247 + ".csv"  # 251 bytes: a file may have it, "<name>.fair.json" may not
    write(drop / "s" / long_name, "1\n")
    write(drop / "s" / "good.csv", "2\n")
    report = await run_scan(drop, config)
    assert report.files_ingested == 1 and report.dead_lettered == 1
    assert read_sidecar(drop / "s" / "good.csv")["name"] == "good.csv"
    assert dead_letters(config) == [(f"s/{long_name}", "terminal", "SidecarNameTooLongError")]
    error = read_error_file(drop / "s" / long_name)  # a shortened name, found by the same rule
    assert error["file"] == long_name and "245 bytes" in error["whatToDo"]
    assert len(os.fsencode(error_name(long_name))) <= 255


async def test_a_time_after_2262_is_clamped_not_fatal(drop: Path, config: AgentConfig) -> None:
    future = write(drop / "s" / "future.csv", "1\n")
    write(drop / "s" / "now.csv", "2\n")
    os.utime(future, ns=(YEAR_2300_NS, YEAR_2300_NS))
    report = await run_scan(drop, config)
    assert report.ok and report.files_ingested == 2
    meta = read_sidecar(future)
    assert meta["dateModified"].startswith("2262-04-11")
    assert any("outside 1677-2262" in w for w in meta["warnings"])
    # Unchanged, it is not read again; changed, it is.
    assert (await run_scan(drop, config)).bytes_hashed == 0
    future.write_text("3\n")
    os.utime(future, ns=(YEAR_2300_NS, YEAR_2300_NS))
    assert (await run_scan(drop, config)).files_ingested == 1


async def test_a_users_file_named_like_an_error_file_is_never_removed(
    drop: Path, config: AgentConfig
) -> None:
    bad = _unsafe_eln(drop / "s" / "bad.eln")
    assert (await run_scan(drop, config)).dead_lettered == 1
    error = Path(error_name(str(bad)))
    assert read_error_file(bad)["errorClass"] == "UnsafeArchiveError"
    error.write_text('{"my own": "notes about bad.eln"}')  # the person's file now
    bad.unlink()  # the dead letter clears...
    await run_scan(drop, config)
    assert dead_letters(config) == []
    assert error.read_text() == '{"my own": "notes about bad.eln"}'  # ...and their file stays


def test_each_dead_letter_gets_its_error_file(drop: Path, tmp_path: Path) -> None:
    locked = drop / "s" / "locked"
    write(locked / "x.csv", "1\n")
    _unsafe_eln(drop / "s" / "bad.eln")
    write(drop / "s" / "good.csv", "2\n")
    locked.chmod(0o000)
    try:
        result = agent_cli("scan", str(drop), "--state-dir", str(tmp_path / "state"), drop_dac=True)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (drop / "s" / "good.csv.fair.json").exists()
    assert read_error_file(drop / "s" / "bad.eln")["errorClass"] == "UnsafeArchiveError"
    assert read_error_file(drop / "s" / "locked")["errorClass"] == "FileUnreadableError"


def _unsafe_eln(path: Path) -> Path:
    """An archive refused for safety: a member would land outside its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../escape.txt", "x")
    return path


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


def _eln(path: Path, graph: list[dict[str, object]], extra: dict[str, bytes] | None = None) -> Path:
    crate = {"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": graph}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export/ro-crate-metadata.json", json.dumps(crate))
        for name, data in (extra or {}).items():
            archive.writestr(f"export/{name}", data)
    return path


async def test_metadata_copied_from_a_file_is_bounded(drop: Path, config: AgentConfig) -> None:
    graph: list[dict[str, object]] = [
        {"@id": "ro-crate-metadata.json", "about": {"@id": "./"}},
        {"@id": "./", "@type": "Dataset", "name": "amplifier"},
        {"@id": "exp/", "@type": "Dataset", "name": "e", "keywords": [_nested(200)] * 300},
    ]
    (drop / "s").mkdir(parents=True)
    eln = _eln(drop / "s" / "a.eln", graph)
    report = await run_scan(drop, config)
    assert report.ok, dead_letters(config)
    assert Path(sidecar_name(str(eln))).stat().st_size < 2_000_000
    assert "depth" in read_sidecar(eln)["metadata"]["metadataTruncated"]["cut"]


async def test_an_archive_of_many_small_members_that_expands_hugely_is_refused_at_once(
    drop: Path, config: AgentConfig
) -> None:
    zeros = b"\0" * (1 << 20)  # 1 MiB each: under the per-member ratio check's floor
    graph: list[dict[str, object]] = [
        {"@id": "ro-crate-metadata.json", "about": {"@id": "./"}},
        {"@id": "./", "@type": "Dataset"},
    ]
    _eln(drop.parent / "bomb.eln", graph, {f"m{i}.bin": zeros for i in range(100)})
    write(drop / "s" / "bomb.eln", (drop.parent / "bomb.eln").read_bytes())
    report = await run_scan(drop, config)
    assert report.dead_lettered == 1
    assert "looks like a ZIP bomb" in read_error_file(drop / "s" / "bomb.eln")["reason"]


def test_a_line_too_long_ends_the_table_where_it_starts(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    with table.open("w") as f:
        f.write("Operator: a\n\ntime,value\n")
        f.writelines(f"{i},{i / 2}\n" for i in range(500))
        f.write("1," + "9" * (3 << 20) + "\n")  # one line of 3 MiB
        f.writelines(f"{i},{i / 2}\n" for i in range(500))
    metadata = TabularExtractor().extract(Source(table, table.name, tmp_path), Budget(60))
    assert metadata["rowCount"] == 500
    assert metadata["lineTooLong"]["line"] == 504
    assert "profiled up to the line before it" in metadata["note"]


def test_a_rewrite_that_restores_size_and_mtime_while_hashing_is_caught(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * 64)
    st = big.stat()
    stop = threading.Event()

    def rewrite_in_place() -> None:
        # What cp -p or rsync -t do to a file being read: new bytes, the old size and mtime.
        while not stop.is_set():
            with big.open("r+b") as f:
                f.write(os.urandom(4096))
            os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
            time.sleep(0.001)

    writer = threading.Thread(target=rewrite_in_place)
    writer.start()
    try:
        with pytest.raises(FileChangedError):
            hash_file(tmp_path, "big.bin", 1 << 16)
    finally:
        stop.set()
        writer.join()


def test_read_only_commands_take_a_relative_state_dir(drop: Path, tmp_path: Path) -> None:
    write(drop / "s" / "a.csv", "1\n")
    state = os.path.relpath(tmp_path / "state", REPO)  # agent_cli runs in the repository
    assert agent_cli("scan", str(drop), "--state-dir", state).returncode == 0
    for command in (["status"], ["verify", str(drop)], ["inspect", str(drop / "s" / "a.csv")]):
        result = agent_cli(*command, "--state-dir", state)
        assert result.returncode == 0, result.stderr


def test_a_damaged_ledger_is_said_to_be_damaged(drop: Path, tmp_path: Path) -> None:
    for i in range(200):
        write(drop / f"s{i}" / "a.csv", f"{i}\n")
    state = tmp_path / "state"
    assert agent_cli("scan", str(drop), "--state-dir", str(state)).returncode == 0
    ledger = state / "ledger.sqlite3"
    with opened_db(ledger) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (root_page,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'files'").fetchone()
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
    with ledger.open("r+b") as f:  # the files table's first page, overwritten by a disk fault
        f.seek((root_page - 1) * page_size)
        f.write(os.urandom(page_size))
    result = agent_cli("status", "--state-dir", str(state))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "damaged" in result.stderr or "malformed" in result.stderr


async def test_a_foreign_database_is_not_touched_at_all(tmp_path: Path) -> None:
    path = tmp_path / "customers.sqlite3"
    with opened_db(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    before = path.read_bytes()
    with pytest.raises(LedgerError, match="not a fair-agent ledger"):
        async with Ledger.open(path):
            pass
    assert path.read_bytes() == before
    with opened_db(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_hdf5_links_out_of_the_folder_are_not_looked_for(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    from agent.extractors.hdf5 import Hdf5Extractor

    path = tmp_path / "links.nxs"
    with h5py.File(path, "w") as f:
        f["secret"] = h5py.ExternalLink("/etc/passwd", "/x")
        f["up"] = h5py.ExternalLink("../../elsewhere.h5", "/x")
        f["missing"] = h5py.ExternalLink("missing.h5", "/x")
    metadata = Hdf5Extractor().extract(Source(path, path.name, tmp_path), Budget(30))
    assert {link["name"] for link in metadata["externalLinksOutsideFolder"]} == {"secret", "up"}
    assert [link["name"] for link in metadata["missingExternalLinks"]] == ["missing"]
