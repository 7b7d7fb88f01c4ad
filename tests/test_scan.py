"""End to end: scan real folders into a real ledger and read back what a user would read."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from agent.core.config import AgentConfig
from agent.core.errors import ConfigError
from agent.core.naming import CRATE_NAME, IgnoreRules
from agent.fs.outputs import OutputWriter
from agent.ingest.hashing import Hasher
from agent.ingest.pipeline import Pipeline
from agent.ledger import Ledger
from agent.service.discover import list_session
from agent.service.quickcheck import plan_session
from agent.service.scan import scan

from .conftest import opened_db, read_crate, read_sidecar, run_scan, sha256sum, validate_crate, write


def output_mtimes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.name.endswith(".fair.json") or p.name == CRATE_NAME
    }


def ledger_rows(config: AgentConfig) -> list[tuple[Any, ...]]:
    with opened_db(config.ledger_path) as db:
        return db.execute(
            "SELECT relpath, version, sha256, batch_id, sequence, status FROM files ORDER BY relpath, version"
        ).fetchall()


def make_sessions(drop: Path) -> None:
    write(drop / "run-01" / "plate.csv", "a,b\n1,2\n")
    write(drop / "run-01" / "raw" / "scan 1 [A]:x é.txt", "spectrum\n")
    write(drop / "run-02" / "plate.csv", "a,b\n3,4\n")
    write(drop / "loose.jdx", "##TITLE=x\n##JCAMP-DX=4.24\n##END=\n")


async def test_every_file_gets_a_sidecar_with_its_true_sha256(drop: Path, config: AgentConfig) -> None:
    make_sessions(drop)
    report = await run_scan(drop, config)
    assert report.ok and report.files_ingested == 4 and report.sessions == 3
    for data in [p for p in drop.rglob("*") if p.is_file() and p.suffix not in (".json", ".html")]:
        meta = read_sidecar(data)
        assert meta["sha256"] == sha256sum(data)
        assert meta["contentSize"] == str(data.stat().st_size)
        assert meta["name"] == data.name


async def test_crate_lists_every_file_and_passes_the_validator(drop: Path, config: AgentConfig) -> None:
    make_sessions(drop)
    await run_scan(drop, config)
    crate = read_crate(drop / "run-01")
    graph = {node["@id"]: node for node in crate["@graph"]}
    assert [p["@id"] for p in graph["./"]["hasPart"]] == [
        "plate.csv",
        "raw/scan%201%20%5BA%5D%3Ax%20%C3%A9.txt",
    ]
    assert graph["raw/scan%201%20%5BA%5D%3Ax%20%C3%A9.txt"]["sha256"] == sha256sum(
        drop / "run-01" / "raw" / "scan 1 [A]:x é.txt"
    )
    assert not (drop / CRATE_NAME).exists(), "nothing but loose-file sidecars goes into the watch root"
    result = validate_crate(drop / "run-01")
    assert result.returncode == 0, result.stdout + result.stderr


async def test_no_absolute_path_in_any_output(drop: Path, config: AgentConfig) -> None:
    make_sessions(drop)
    await run_scan(drop, config)
    for out in drop.rglob("*.json"):
        text = out.read_text(encoding="utf-8")
        assert str(drop) not in text and str(drop.parent) not in text, out


async def test_second_scan_hashes_nothing_and_touches_nothing(drop: Path, config: AgentConfig) -> None:
    make_sessions(drop)
    first = await run_scan(drop, config)
    mtimes, rows = output_mtimes(drop), ledger_rows(config)
    second = await run_scan(drop, config)
    assert first.files_ingested == 4
    assert second.files_ingested == 0 and second.bytes_hashed == 0 and second.unchanged == 4
    assert output_mtimes(drop) == mtimes
    assert ledger_rows(config) == rows


async def test_changed_file_gets_a_new_version_and_others_stay_untouched(
    drop: Path, config: AgentConfig
) -> None:
    make_sessions(drop)
    await run_scan(drop, config)
    mtimes = output_mtimes(drop)
    crate_before = (drop / "run-01" / CRATE_NAME).read_text()
    write(drop / "run-01" / "plate.csv", "a,b\n1,2\n5,6\n")
    report = await run_scan(drop, config)
    assert report.files_ingested == 1
    meta = read_sidecar(drop / "run-01" / "plate.csv")
    assert meta["fileVersion"] == 2 and meta["sha256"] == sha256sum(drop / "run-01" / "plate.csv")
    assert (drop / "run-01" / CRATE_NAME).read_text() != crate_before
    after = output_mtimes(drop)
    changed = {k for k in after if after[k] != mtimes.get(k)}
    assert changed == {"run-01/plate.csv.fair.json", f"run-01/{CRATE_NAME}"}
    history = [r for r in ledger_rows(config) if r[0] == "run-01/plate.csv"]
    assert [(r[1], r[5]) for r in history] == [(1, "superseded"), (2, "current")]


async def test_new_file_in_ingested_session_is_a_new_batch(drop: Path, config: AgentConfig) -> None:
    make_sessions(drop)
    await run_scan(drop, config)
    old_sidecar_mtime = Path(f"{drop}/run-02/plate.csv.fair.json").stat().st_mtime_ns
    write(drop / "run-02" / "late.csv", "late\n")
    await run_scan(drop, config)
    crate = read_crate(drop / "run-02")
    root = next(n for n in crate["@graph"] if n["@id"] == "./")
    assert [p["@id"] for p in root["hasPart"]] == ["late.csv", "plate.csv"]
    assert Path(f"{drop}/run-02/plate.csv.fair.json").stat().st_mtime_ns == old_sidecar_mtime
    assert (
        read_sidecar(drop / "run-02" / "late.csv")["batchId"]
        != read_sidecar(drop / "run-02" / "plate.csv")["batchId"]
    )


async def test_touched_file_with_same_bytes_is_not_a_new_version(drop: Path, config: AgentConfig) -> None:
    write(drop / "s" / "a.csv", "same\n")
    await run_scan(drop, config)
    os.utime(drop / "s" / "a.csv", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    report = await run_scan(drop, config)
    assert report.files_ingested == 0 and report.files_hashed == 1
    assert [r[1] for r in ledger_rows(config)] == [1]
    third = await run_scan(drop, config)
    assert third.files_hashed == 0, "the quick-check fields were updated"


async def test_redone_batch_rewrites_byte_identical_outputs(
    drop: Path, config: AgentConfig, tmp_path: Path
) -> None:
    # A crash after the sidecars but before the ledger commit is the same as a ledger that never
    # saw the batch: the redo must produce the very same bytes (and so leave the files alone).
    make_sessions(drop)
    await run_scan(drop, config)
    contents = {p: p.read_bytes() for p in drop.rglob("*.json")}
    mtimes = output_mtimes(drop)
    fresh = config.model_copy(update={"state_dir": tmp_path / "other-state"})
    await run_scan(drop, fresh)
    assert {p: p.read_bytes() for p in drop.rglob("*.json")} == contents
    assert output_mtimes(drop) == mtimes


async def test_batch_ids_and_sequences_are_deterministic(
    drop: Path, config: AgentConfig, tmp_path: Path
) -> None:
    make_sessions(drop)
    await run_scan(drop, config)
    again = config.model_copy(update={"state_dir": tmp_path / "again"})
    await run_scan(drop, again)
    assert ledger_rows(config) == ledger_rows(again)
    seqs = [read_sidecar(drop / "run-01" / p)["sequence"] for p in ("plate.csv", "raw/scan 1 [A]:x é.txt")]
    assert seqs == [1, 2]


async def test_own_outputs_and_partial_downloads_are_never_ingested(drop: Path, config: AgentConfig) -> None:
    write(drop / "s" / "data.csv", "x\n")
    for name in (
        "big.part",
        "~$report.xlsx",
        ".~lock.data.csv#",
        "x.tmp",
        ".DS_Store",
        ".a.json.abcd.fair-tmp",
    ):
        write(drop / "s" / name, "noise")
    write(drop / "s" / "old.csv.fair.error.json", "{}")
    report = await run_scan(drop, config)
    assert report.files_seen == 1 and report.files_ingested == 1
    await run_scan(drop, config)
    assert not list(drop.rglob("*.fair.json.fair.json"))
    assert not Path(f"{drop}/s/big.part.fair.json").exists()


async def test_ignore_globs_are_configurable(drop: Path, config: AgentConfig) -> None:
    write(drop / "s" / "a.csv", "x")
    write(drop / "s" / "b.raw", "x")
    report = await run_scan(drop, config.model_copy(update={"ignore": ("*.raw",)}))
    assert report.files_ingested == 1 and not Path(f"{drop}/s/b.raw.fair.json").exists()


async def test_zero_byte_and_strange_names(drop: Path, config: AgentConfig) -> None:
    write(drop / "s" / "empty.dat", b"")
    weird = "x: [1] ü 😀 #?%.csv"
    write(drop / "s" / weird, "1\n")
    raw_name = os.fsdecode(b"latin1-\xe9.txt")  # not valid UTF-8, as old Windows shares produce
    write(drop / "s" / raw_name, "2\n")
    report = await run_scan(drop, config)
    assert report.ok and report.files_ingested == 3
    assert read_sidecar(drop / "s" / "empty.dat")["sha256"] == sha256sum(drop / "s" / "empty.dat")
    assert read_sidecar(drop / "s" / "empty.dat")["warnings"] == ["empty file"]
    crate = read_crate(drop / "s")
    ids = {n["@id"] for n in crate["@graph"]}
    assert "x%3A%20%5B1%5D%20%C3%BC%20%F0%9F%98%80%20%23%3F%25.csv" in ids
    # Not valid UTF-8: no crate reader could resolve it, so its sidecar alone records it.
    assert not any("latin1" in i for i in ids)
    assert "not valid UTF-8" in read_sidecar(drop / "s" / raw_name)["warnings"][0]
    assert read_sidecar(drop / "s" / raw_name)["@id"] == "latin1-%E9.txt"
    assert (await run_scan(drop, config)).bytes_hashed == 0
    result = validate_crate(drop / "s")
    assert result.returncode == 0, result.stdout


async def test_symlinks_fifo_and_socket_are_skipped_with_reasons(
    drop: Path, config: AgentConfig, tmp_path: Path
) -> None:
    outside = write(tmp_path / "secret.txt", "outside the root")
    write(drop / "s" / "ok.csv", "1\n")
    (drop / "s" / "escape.lnk").symlink_to(outside)
    (drop / "s" / "loop-a").symlink_to(drop / "s" / "loop-b")
    (drop / "s" / "loop-b").symlink_to(drop / "s" / "loop-a")
    (drop / "s" / "inside.lnk").symlink_to(drop / "s" / "ok.csv")
    os.mkfifo(drop / "s" / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(drop / "s" / "sock"))
    try:
        report = await run_scan(drop, config)
    finally:
        sock.close()
    assert report.ok and report.files_ingested == 1 and report.skipped == 6
    with opened_db(config.ledger_path) as db:
        reasons = dict(db.execute("SELECT relpath, reason FROM skipped"))
    assert "outside the watch root" in reasons["s/escape.lnk"]
    assert "loop" in reasons["s/loop-a"]
    assert "inside the watch root" in reasons["s/inside.lnk"]
    assert "named pipe" in reasons["s/pipe"]
    assert "socket" in reasons["s/sock"]
    assert not Path(f"{drop}/s/escape.lnk.fair.json").exists()
    assert "outside the root" not in (drop / "s" / CRATE_NAME).read_text()


async def test_file_that_vanishes_between_listing_and_hashing(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    write(drop / "s" / "stays.csv", "1\n")
    gone = write(drop / "s" / "goes.csv", "2\n")
    root = await ledger.ensure_root(drop, "drop")
    listing = list_session(drop, "s", IgnoreRules(config.ignore))
    gone.unlink()  # after listing, before hashing
    plan = plan_session(root, listing, {}, {})
    assert plan.batch is not None
    hasher, writer = Hasher(2, 1 << 20), OutputWriter(2)
    pipeline = Pipeline(config, ledger, hasher, writer)
    try:
        await pipeline.process_batch(plan.batch)
    finally:
        hasher.close()
        writer.close()
    assert pipeline.tally.files_ingested == 1 and pipeline.tally.skipped == 1
    assert pipeline.tally.dead_lettered == 0
    assert Path(f"{drop}/s/stays.csv.fair.json").exists()
    crate = (drop / "s" / CRATE_NAME).read_text()
    assert "goes.csv" not in crate


async def test_foreign_crate_is_data_and_is_never_overwritten(drop: Path, config: AgentConfig) -> None:
    theirs = '{"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": []}'
    write(drop / "s" / CRATE_NAME, theirs)
    write(drop / "s" / "a.csv", "1\n")
    report = await run_scan(drop, config)
    assert report.files_ingested == 2
    assert (drop / "s" / CRATE_NAME).read_text() == theirs
    assert read_sidecar(drop / "s" / CRATE_NAME)["sha256"] == sha256sum(drop / "s" / CRATE_NAME)


async def test_deleted_crate_is_restored_without_rehashing(drop: Path, config: AgentConfig) -> None:
    make_sessions(drop)
    await run_scan(drop, config)
    original = (drop / "run-01" / CRATE_NAME).read_bytes()
    (drop / "run-01" / CRATE_NAME).unlink()
    report = await run_scan(drop, config)
    assert report.bytes_hashed == 0
    assert (drop / "run-01" / CRATE_NAME).read_bytes() == original


async def test_scan_refuses_a_state_dir_inside_the_folder(drop: Path, config: AgentConfig) -> None:
    inside = config.model_copy(update={"state_dir": drop / ".state"})
    async with Ledger.open(config.ledger_path) as led:
        with pytest.raises(ConfigError, match="inside the watched folder"):
            await scan(drop, inside, led)


async def test_raw_data_is_never_modified(drop: Path, config: AgentConfig) -> None:
    make_sessions(drop)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in drop.rglob("*") if p.is_file()}
    await run_scan(drop, config)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before


async def test_a_large_session_goes_in_parts_and_its_crate_comes_with_the_last(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    for i in range(25):
        write(drop / "s" / f"{i:02d}.bin", f"{i}\n")
    cfg = config.model_copy(update={"batch_max_files": 10})
    root = await ledger.ensure_root(drop, "drop")
    plan = plan_session(root, list_session(drop, "s", IgnoreRules(cfg.ignore)), {}, {})
    assert plan.batch is not None and [len(p.files) for p in plan.batch.parts(10)] == [10, 10, 5]
    # The first part only, as if the agent were killed after its commit: sidecars, no crate yet.
    hasher, writer = Hasher(2, 1 << 20), OutputWriter(2)
    pipeline = Pipeline(cfg, ledger, hasher, writer)
    try:
        await pipeline.process_batch(plan.batch.parts(10)[0])
    finally:
        hasher.close()
        writer.close()
    assert read_sidecar(drop / "s" / "09.bin")["sequence"] == 10
    assert not (drop / "s" / CRATE_NAME).exists()
    assert await ledger.crate_pending(root.id, "s")
    # The next run ingests the other two parts; the last writes the crate of all 25.
    report = await run_scan(drop, cfg)
    assert report.files_ingested == 15 and report.unchanged == 10
    batches = {read_sidecar(drop / "s" / f"{i:02d}.bin")["batchId"] for i in range(25)}
    assert len(batches) == 3
    assert read_sidecar(drop / "s" / "24.bin")["sequence"] == 5  # numbered within its part
    root_entity = next(e for e in read_crate(drop / "s")["@graph"] if e["@id"] == "./")
    assert len(root_entity["hasPart"]) == 25
    assert not await ledger.crate_pending(root.id, "s")
    assert (await run_scan(drop, cfg)).bytes_hashed == 0
    assert validate_crate(drop / "s").returncode == 0
