"""The live service, in-process: real watchfiles, real files, real SQLite, short timings."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.core.config import AgentConfig
from agent.core.errors import ConfigError
from agent.core.naming import CRATE_NAME
from agent.ledger import Ledger
from agent.service.daemon import Service
from agent.service.inotify import WatchOverflow
from agent.service.watch import WatchedRoot

from .conftest import live_config, opened_db, read_crate, read_sidecar, sha256sum, wait_for, write


def has_sidecar(path: Path) -> bool:
    return Path(f"{path}.fair.json").exists()


def file_rows(config: AgentConfig) -> list[tuple[str, int, str]]:
    with opened_db(config.ledger_path) as db:
        return db.execute("SELECT relpath, version, sha256 FROM files ORDER BY relpath, version").fetchall()


async def test_a_dropped_session_is_ingested(drop: Path, config: AgentConfig, ledger: Ledger) -> None:
    cfg = live_config(config, drop)
    async with Service(cfg, ledger).running() as service:
        write(drop / "run-1" / "a.csv", "1,2\n")
        write(drop / "run-1" / "raw" / "b.txt", "x")
        write(drop / "loose.jdx", "##TITLE=x\n##JCAMP-DX=4.24\n##END=\n")
        await wait_for(
            lambda: has_sidecar(drop / "run-1" / "raw" / "b.txt") and has_sidecar(drop / "loose.jdx")
        )
        await wait_for(lambda: service.idle)
    assert read_sidecar(drop / "run-1" / "a.csv")["sha256"] == sha256sum(drop / "run-1" / "a.csv")
    assert (drop / "run-1" / CRATE_NAME).exists()


async def test_a_file_still_being_written_is_never_ingested_partially(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    cfg = live_config(config, drop, quiet_period_s=0.6, stability_look_s=0.2)
    target = drop / "run-1" / "growing.csv"
    target.parent.mkdir()
    async with Service(cfg, ledger).running() as service:
        with target.open("ab") as f:
            for i in range(12):  # ~2.4 s of writing, pauses well under the quiet period
                f.write(f"{i},{'x' * 1000}\n".encode())
                f.flush()
                await asyncio.sleep(0.2)
                assert not has_sidecar(target), f"ingested while still being written (chunk {i})"
        await wait_for(lambda: has_sidecar(target))
        await wait_for(lambda: service.idle)
    assert read_sidecar(target)["sha256"] == sha256sum(target)
    assert [r[1] for r in file_rows(cfg)] == [1], "exactly one version: the complete file"


async def test_marker_policy_holds_the_session_until_the_marker(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    cfg = live_config(config, drop, marker="*.done")
    async with Service(cfg, ledger).running() as service:
        write(drop / "run-1" / "a.csv", "1\n")
        write(drop / "run-1" / "b.csv", "2\n")
        await wait_for(
            lambda: any(p.reason.startswith("waiting for a marker") for p in service.tracker.sessions())
        )
        await asyncio.sleep(1.0)  # several quiet periods: still nothing may be ingested
        assert not has_sidecar(drop / "run-1" / "a.csv")
        assert service.tally().files_ingested == 0
        write(drop / "run-1" / "acquisition.done", "")
        await wait_for(lambda: has_sidecar(drop / "run-1" / "b.csv"))


async def test_files_dropped_while_down_are_ingested_at_start(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    cfg = live_config(config, drop)
    write(drop / "run-1" / "a.csv", "early\n")
    write(drop / "early.txt", "early\n")
    async with Service(cfg, ledger).running() as service:
        await wait_for(lambda: has_sidecar(drop / "run-1" / "a.csv") and has_sidecar(drop / "early.txt"))
        await wait_for(lambda: service.idle)


async def test_restart_ingests_nothing_twice(drop: Path, config: AgentConfig, ledger: Ledger) -> None:
    cfg = live_config(config, drop)
    async with Service(cfg, ledger).running() as service:
        write(drop / "run-1" / "a.csv", "1\n")
        await wait_for(lambda: has_sidecar(drop / "run-1" / "a.csv"))
        await wait_for(lambda: service.idle)
    rows = file_rows(cfg)
    mtime = Path(f"{drop}/run-1/a.csv.fair.json").stat().st_mtime_ns
    async with Service(cfg, ledger).running() as service:
        await wait_for(lambda: service.reconciliations >= 1)
        await asyncio.sleep(0.6)
        await wait_for(lambda: service.idle)
        assert service.hasher.bytes_hashed == 0
    assert file_rows(cfg) == rows
    assert Path(f"{drop}/run-1/a.csv.fair.json").stat().st_mtime_ns == mtime


async def test_own_outputs_never_trigger_a_batch(drop: Path, config: AgentConfig, ledger: Ledger) -> None:
    cfg = live_config(config, drop)
    async with Service(cfg, ledger).running() as service:
        write(drop / "run-1" / "a.csv", "1\n")
        await wait_for(lambda: has_sidecar(drop / "run-1" / "a.csv"))
        await wait_for(lambda: service.idle)
        await asyncio.sleep(1.0)  # more than two quiet periods after the sidecar and crate writes
        assert service.idle and len(service.tracker) == 0
        assert service.tally().batches == 1


async def test_new_files_in_an_ingested_session_form_a_new_batch(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    cfg = live_config(config, drop)
    async with Service(cfg, ledger).running() as service:
        write(drop / "run-1" / "a.csv", "1\n")
        await wait_for(lambda: has_sidecar(drop / "run-1" / "a.csv"))
        first = Path(f"{drop}/run-1/a.csv.fair.json").stat().st_mtime_ns
        write(drop / "run-1" / "b.csv", "2\n")
        await wait_for(lambda: has_sidecar(drop / "run-1" / "b.csv"))
        await wait_for(lambda: service.idle)
    assert Path(f"{drop}/run-1/a.csv.fair.json").stat().st_mtime_ns == first
    crate = read_crate(drop / "run-1")
    root = next(n for n in crate["@graph"] if n["@id"] == "./")
    assert [p["@id"] for p in root["hasPart"]] == ["a.csv", "b.csv"]
    assert (
        read_sidecar(drop / "run-1" / "a.csv")["batchId"] != read_sidecar(drop / "run-1" / "b.csv")["batchId"]
    )


async def test_polling_mode(drop: Path, config: AgentConfig, ledger: Ledger) -> None:
    base = live_config(config, drop)
    cfg = AgentConfig.model_validate(
        {**base.model_dump(), "roots": [{"path": drop, "mode": "polling"}], "poll_interval_ms": 100}
    )
    async with Service(cfg, ledger).running() as service:
        assert next(iter(service.roots.values())).mode == "polling"
        write(drop / "run-1" / "a.csv", "1\n")
        await wait_for(lambda: has_sidecar(drop / "run-1" / "a.csv"))


async def test_reconciliation_finds_what_notifications_missed(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    async def deaf(watched: WatchedRoot, stop: asyncio.Event) -> AsyncIterator[list[str]]:
        await stop.wait()  # a watcher that never reports anything: every notification is lost
        return
        yield

    cfg = AgentConfig.model_validate({**live_config(config, drop).model_dump(), "reconcile_interval_s": 0.3})
    async with Service(cfg, ledger, events=deaf).running():
        write(drop / "run-1" / "a.csv", "1\n")
        await wait_for(lambda: has_sidecar(drop / "run-1" / "a.csv"))


async def test_burst_is_absorbed_through_a_small_queue(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    base = live_config(config, drop)
    cfg = AgentConfig.model_validate({**base.model_dump(), "queue_size": 2, "workers": 1})
    async with Service(cfg, ledger).running() as service:
        depths: list[int] = []
        for s in range(40):
            for i in range(5):
                write(drop / f"s{s:02d}" / f"{i}.csv", f"{s},{i}\n")
        started = time.monotonic()
        while service.tally().files_ingested < 200:
            depths.append(service.pool.depth)
            assert time.monotonic() - started < 60, "burst not absorbed"
            await asyncio.sleep(0.01)
    assert max(depths) <= 2
    assert len(file_rows(cfg)) == 200


async def test_a_missing_root_is_a_clear_error(tmp_path: Path, config: AgentConfig, ledger: Ledger) -> None:
    cfg = live_config(config, tmp_path / "not-mounted")
    with pytest.raises(ConfigError, match="is not a folder"):
        async with Service(cfg, ledger).running():
            pass


def test_nothing_to_watch_is_a_clear_error(config: AgentConfig) -> None:
    with pytest.raises(ConfigError, match="nothing to watch"):
        Service(config, None)  # type: ignore[arg-type]


async def test_a_failing_watcher_is_made_up_for_by_reconciliation(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    """Notifications can fail (a queue overflow, a share going away): the changes of that moment
    are lost. The service reconciles at once, says so, and keeps reconciling often."""

    async def failing(watched: WatchedRoot, stop: asyncio.Event) -> AsyncIterator[list[str]]:
        raise WatchOverflow("the kernel's inotify queue overflowed; changes were lost")
        yield

    async with Service(live_config(config, drop), ledger, events=failing).running() as service:
        await wait_for(lambda: service.reconciliations >= 1)
        write(drop / "good" / "a.txt", "2\n")
        await wait_for(lambda: bool(service.watcher_errors), timeout=10)
        (root_id,) = service.roots
        assert "overflowed" in service.watcher_errors[root_id]
        await wait_for(lambda: has_sidecar(drop / "good" / "a.txt"), timeout=40)


async def test_names_that_are_not_utf8_are_watched(drop: Path, config: AgentConfig, ledger: Ledger) -> None:
    async with Service(live_config(config, drop), ledger).running() as service:
        await wait_for(lambda: service.reconciliations >= 1)
        bad = drop / os.fsdecode(b"bad-\xff")
        bad.mkdir()
        (bad / "x.txt").write_bytes(b"1\n")
        await wait_for(lambda: has_sidecar(bad / "x.txt"), timeout=20)
        assert not service.watcher_errors


async def test_a_symlinked_folder_costs_no_watch(drop: Path, config: AgentConfig, ledger: Ledger) -> None:
    (drop / "run-1").mkdir()
    (drop / "everything").symlink_to("/usr", target_is_directory=True)
    async with Service(live_config(config, drop), ledger).running() as service:
        await wait_for(lambda: service.watch_budget.used == 2)  # the root and run-1, nothing of /usr
        write(drop / "run-1" / "a.csv", "1\n")
        await wait_for(lambda: has_sidecar(drop / "run-1" / "a.csv"))
        assert service.watch_budget.used == 2


async def test_a_root_over_its_watch_budget_is_polled(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    for i in range(30):
        (drop / f"run-{i}").mkdir()
    base = live_config(config, drop)
    cfg = AgentConfig.model_validate({**base.model_dump(), "poll_interval_ms": 100})
    service = Service(cfg, ledger)
    service.watch_budget.limit = 10  # as if fs.inotify.max_user_watches were tiny
    async with service.running():
        await wait_for(lambda: next(iter(service.roots.values())).mode == "polling")
        assert service.watch_budget.used == 0, "every watch of the root was given back"
        assert service.snapshot().roots[0].mode == "polling"
        write(drop / "run-7" / "a.csv", "1\n")
        await wait_for(lambda: has_sidecar(drop / "run-7" / "a.csv"))
