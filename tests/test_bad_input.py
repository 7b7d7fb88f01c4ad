"""Bad input and awkward filesystems: the scan carries on, loses nothing, and stays in its root."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from pathlib import Path

from agent.core.config import AgentConfig, RetrySettings
from agent.core.naming import CRATE_NAME, IgnoreRules
from agent.fs.outputs import OutputWriter
from agent.ingest.hashing import Hasher
from agent.ingest.pipeline import Pipeline, _SessionLocks
from agent.ledger import Ledger
from agent.service.discover import list_session
from agent.service.quickcheck import plan_session
from agent.service.scan import scan

from .conftest import (
    agent_cli,
    dead_letters,
    opened_db,
    read_crate,
    read_error_file,
    read_sidecar,
    run_scan,
    sha256sum,
    validate_crate,
    write,
)


async def test_a_briefly_locked_ledger_is_waited_for(drop: Path, config: AgentConfig) -> None:
    write(drop / "s" / "a.csv", "1\n")
    cfg = config.model_copy(update={"retry": RetrySettings(attempts=30, base_delay_s=0.2, max_delay_s=0.4)})
    async with Ledger.open(cfg.ledger_path, busy_timeout_ms=100) as ledger:
        blocker = sqlite3.connect(cfg.ledger_path, isolation_level=None, check_same_thread=False)
        await ledger.ensure_root(drop, "drop")
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock for half a second
        threading.Timer(0.5, lambda: blocker.execute("ROLLBACK")).start()
        report = await scan(drop, cfg, ledger)
    assert report.ok and report.files_ingested == 1
    assert dead_letters(cfg) == []


async def test_a_ledger_locked_too_long_leaves_the_batch_for_later(drop: Path, config: AgentConfig) -> None:
    write(drop / "s" / "a.csv", "1\n")
    async with Ledger.open(config.ledger_path, busy_timeout_ms=50) as ledger:
        await ledger.ensure_root(drop, "drop")
        blocker = sqlite3.connect(config.ledger_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            report = await scan(drop, config, ledger)
            assert not report.ok and report.uncommitted == 1, "the scan says it did not finish"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    # Not committed, and not dead-lettered either: the next run simply does it.
    assert dead_letters(config) == []
    report = await run_scan(drop, config)
    assert report.files_ingested == 1 and read_sidecar(drop / "s" / "a.csv")["sha256"] == sha256sum(
        drop / "s" / "a.csv"
    )


def test_a_folder_that_can_be_listed_but_not_entered(drop: Path, tmp_path: Path) -> None:
    write(drop / "s" / "ok.csv", "1\n")
    write(drop / "s" / "locked" / "inside.csv", "2\n")
    write(drop / "t" / "other.csv", "3\n")
    (drop / "s" / "locked").chmod(0o644)  # r-- : names visible, nothing reachable
    state = tmp_path / "state"
    try:
        result = agent_cli("scan", str(drop), "--state-dir", str(state), drop_dac=True)
        assert result.returncode == 1, result.stdout + result.stderr
        assert Path(f"{drop}/s/ok.csv.fair.json").exists() and Path(f"{drop}/t/other.csv.fair.json").exists()
        with opened_db(state / "ledger.sqlite3") as db:
            assert db.execute("SELECT relpath, error_class FROM dead_letters").fetchall() == [
                ("s/locked/inside.csv", "FileUnreadableError")
            ]
    finally:
        (drop / "s" / "locked").chmod(0o755)
    # Fixed: the next scan ingests the file and the dead letter and its error file go away.
    again = agent_cli("scan", str(drop), "--state-dir", str(state), drop_dac=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert Path(f"{drop}/s/locked/inside.csv.fair.json").exists()
    assert not list(drop.rglob("*.fair.error.json"))


def test_an_unreadable_subfolder_is_dead_lettered_then_cleared(drop: Path, tmp_path: Path) -> None:
    write(drop / "s" / "ok.csv", "1\n")
    write(drop / "s" / "sub" / "x.csv", "2\n")
    (drop / "s" / "sub").chmod(0o000)
    state = tmp_path / "state"
    try:
        assert agent_cli("scan", str(drop), "--state-dir", str(state), drop_dac=True).returncode == 1
        error = read_error_file(drop / "s" / "sub")
        assert error["reason"] == "cannot list folder 's/sub': permission denied"
    finally:
        (drop / "s" / "sub").chmod(0o755)
    assert agent_cli("scan", str(drop), "--state-dir", str(state), drop_dac=True).returncode == 0
    assert not Path(f"{drop}/s/sub.fair.error.json").exists()
    with opened_db(state / "ledger.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


async def test_a_fifo_named_like_the_crate_does_not_hang(drop: Path, config: AgentConfig) -> None:
    write(drop / "s" / "a.csv", "1\n")
    os.mkfifo(drop / "s" / CRATE_NAME)
    report = await asyncio.wait_for(run_scan(drop, config), timeout=30)
    assert report.files_ingested == 1 and report.skipped == 1
    assert (drop / "s" / CRATE_NAME).is_fifo()


async def test_data_named_like_our_outputs_is_never_overwritten(drop: Path, config: AgentConfig) -> None:
    write(drop / "s" / "b.dat", "data\n")
    write(drop / "s" / "b.dat.fair.json", '{"a user": "file"}')
    write(drop / "s" / "export" / CRATE_NAME, '{"@graph": []}')  # an unpacked crate: data
    write(drop / CRATE_NAME, '{"@graph": []}')  # loose in the root: data
    report = await run_scan(drop, config)
    assert Path(f"{drop}/s/b.dat.fair.json").read_text() == '{"a user": "file"}'
    assert dead_letters(config) == [("s/b.dat", "terminal", "OutputConflictError")]
    assert "did not write" in read_error_file(drop / "s" / "b.dat")["reason"]
    assert read_sidecar(drop / "s" / "export" / CRATE_NAME)["sha256"] == sha256sum(
        drop / "s" / "export" / CRATE_NAME
    )
    assert read_sidecar(drop / CRATE_NAME)["sha256"] == sha256sum(drop / CRATE_NAME)
    assert report.files_ingested == 2
    crate = read_crate(drop / "s")
    assert "b.dat" not in {n["@id"] for n in crate["@graph"]}, (
        "a file that is not ingested is not in the crate"
    )


async def test_a_folder_swapped_for_a_symlink_after_listing(
    drop: Path, config: AgentConfig, ledger: Ledger, tmp_path: Path
) -> None:
    write(drop / "s" / "sub" / "x.csv", "inside\n")
    outside = tmp_path / "outside"
    write(outside / "x.csv", "secret outside the root\n")
    root = await ledger.ensure_root(drop, "drop")
    listing = list_session(drop, "s", IgnoreRules(config.ignore))
    (drop / "s" / "sub" / "x.csv").unlink()
    (drop / "s" / "sub").rmdir()
    (drop / "s" / "sub").symlink_to(outside)  # between listing and hashing
    plan = plan_session(root, listing, {}, {})
    assert plan.batch is not None
    hasher, writer = Hasher(1, 1 << 20), OutputWriter(1)
    try:
        await Pipeline(config, ledger, hasher, writer).process_batch(plan.batch)
    finally:
        hasher.close()
        writer.close()
    assert sorted(p.name for p in outside.iterdir()) == ["x.csv"], "nothing written outside the root"
    with opened_db(config.ledger_path) as db:
        assert db.execute("SELECT count(*) FROM files").fetchone() == (0,), "the outside file was not hashed"


async def test_a_session_folder_whose_name_is_not_utf8(drop: Path, config: AgentConfig) -> None:
    name = os.fsdecode(b"run-\xe9")
    write(drop / name / "a.csv", "1\n")
    report = await run_scan(drop, config)
    assert report.ok and report.files_ingested == 1
    assert (drop / name / CRATE_NAME).exists()


async def test_deleted_files_leave_the_crate_and_it_still_validates(drop: Path, config: AgentConfig) -> None:
    write(drop / "s" / "keep.csv", "1\n")
    write(drop / "s" / "gone.csv", "2\n")
    await run_scan(drop, config)
    (drop / "s" / "gone.csv").unlink()
    await run_scan(drop, config)
    crate = read_crate(drop / "s")
    assert "gone.csv" not in {n["@id"] for n in crate["@graph"]}
    with opened_db(config.ledger_path) as db:
        assert db.execute("SELECT relpath, status FROM files ORDER BY relpath").fetchall() == [
            ("s/gone.csv", "removed"),
            ("s/keep.csv", "current"),
        ]
    result = validate_crate(drop / "s")
    assert result.returncode == 0, result.stdout
    write(drop / "s" / "gone.csv", "back\n")  # it comes back: a new version, not a clash
    await run_scan(drop, config)
    assert read_sidecar(drop / "s" / "gone.csv")["fileVersion"] == 2


async def test_a_rewrite_with_its_mtime_set_back_is_still_seen(drop: Path, config: AgentConfig) -> None:
    path = write(drop / "s" / "a.csv", "1111\n")
    await run_scan(drop, config)
    st = path.stat()
    with path.open("r+b") as f:  # same size, same inode, then the old mtime restored (as cp -p does)
        f.write(b"2222\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    report = await run_scan(drop, config)
    assert report.files_ingested == 1
    assert read_sidecar(path)["sha256"] == sha256sum(path) and read_sidecar(path)["fileVersion"] == 2


async def test_orphan_temp_files_from_a_crash_are_removed(drop: Path, config: AgentConfig) -> None:
    write(drop / "s" / "a.csv", "1\n")
    orphan = write(drop / "s" / ".a.csv.fair.json.0123456789ab.fair-tmp", '{"half": ')
    os.utime(orphan, ns=(time.time_ns() - 10**10, time.time_ns() - 10**10))
    await run_scan(drop, config)
    assert not orphan.exists()
    assert not list(drop.rglob("*.fair-tmp"))


async def test_batches_of_one_session_never_overlap() -> None:
    locks = _SessionLocks()
    inside: list[int] = []
    overlaps: list[int] = []

    async def batch(n: int) -> None:
        async with locks.hold((1, "s")):
            if inside:
                overlaps.append(n)
            inside.append(n)
            await asyncio.sleep(0.01)
            inside.remove(n)

    await asyncio.gather(*(batch(n) for n in range(5)))
    assert overlaps == []
    assert locks._locks == {}
