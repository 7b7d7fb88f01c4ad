"""When the live service seals a session: at the end of the quiet period on folders watched by events,
with the cautious spacing of the two looks on polled ones, and never while a file is half-written."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

from agent.core.config import AgentConfig
from agent.ledger import Ledger
from agent.service.daemon import Service
from agent.service.inotify import WatchOverflow
from agent.service.watch import WatchedRoot

from .conftest import live_config, read_sidecar, sha256sum, wait_for, write

Mode = Literal["events", "polling"]


def watching(config: AgentConfig, drop: Path, mode: Mode, **completion: object) -> AgentConfig:
    """The test config watching ``drop`` by events or by polling (every 50 ms)."""
    base = live_config(config, drop, **completion)
    return AgentConfig.model_validate(
        {**base.model_dump(), "roots": [{"path": drop, "mode": mode}], "poll_interval_ms": 50}
    )


def has_sidecar(path: Path) -> bool:
    return Path(f"{path}.fair.json").exists()


async def test_with_events_the_second_look_is_at_the_end_of_the_quiet_period(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    # A stability look far longer than the quiet period: events report every write, so the looks
    # fit into the quiet period and nothing waits 30 s more.
    cfg = watching(config, drop, "events", quiet_period_s=0.5, stability_look_s=30)
    async with Service(cfg, ledger).running() as service:
        write(drop / "run-1" / "a.csv", "1,2\n")
        await wait_for(lambda: has_sidecar(drop / "run-1" / "a.csv"), timeout=10)
        await wait_for(lambda: service.idle)
    assert read_sidecar(drop / "run-1" / "a.csv")["sha256"] == sha256sum(drop / "run-1" / "a.csv")


async def test_a_polled_root_keeps_the_full_spacing_between_the_looks(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    # Polling sees a write late, and another machine's writes to a share may show later still.
    cfg = watching(config, drop, "polling", quiet_period_s=0.4, stability_look_s=1.0)
    async with Service(cfg, ledger).running() as service:
        write(drop / "run-1" / "a.csv", "1,2\n")
        await wait_for(lambda: any(p.look is not None for p in service.tracker.sessions()))
        (pending,) = service.tracker.sessions()
        assert pending.polled
        deadline = pending.deadline()
        assert deadline is not None and deadline - pending.look_at >= 1.0
        await wait_for(lambda: has_sidecar(drop / "run-1" / "a.csv"), timeout=10)


async def test_sessions_found_while_notifications_fail_are_cautious(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    async def failing(watched: WatchedRoot, stop: asyncio.Event) -> AsyncIterator[list[str]]:
        raise WatchOverflow("the kernel's inotify queue overflowed; changes were lost")
        yield

    cfg = AgentConfig.model_validate(
        {**watching(config, drop, "events").model_dump(), "reconcile_interval_s": 0.2}
    )
    async with Service(cfg, ledger, events=failing).running() as service:
        await wait_for(lambda: bool(service.watcher_errors))
        write(drop / "run-1" / "a.csv", "1\n")
        await wait_for(lambda: any(p.polled for p in service.tracker.sessions()))
        await wait_for(lambda: has_sidecar(drop / "run-1" / "a.csv"))


@pytest.mark.parametrize("mode", ["events", "polling"])
async def test_a_file_written_in_halves_is_never_sealed_between_them(
    drop: Path, config: AgentConfig, ledger: Ledger, mode: Mode
) -> None:
    # The default stability look (1 s, more than half of this quiet period): the first look falls
    # into each pause and sees half a file; the next half must start the wait again.
    cfg = watching(config, drop, mode, quiet_period_s=0.6, stability_look_s=1.0)
    target = drop / "run-1" / "halves.csv"
    target.parent.mkdir()
    async with Service(cfg, ledger).running() as service:
        for n in range(3):
            with target.open("ab") as f:
                f.write(f"{n},{'x' * 5000}\n".encode())
                f.flush()
                await asyncio.sleep(0.45)  # past the first look, short of the quiet period
                assert not has_sidecar(target), f"sealed between the halves of write {n}"
                f.write(f"{n},{'y' * 5000}\n".encode())
            assert not has_sidecar(target), f"sealed right after write {n}"
        await wait_for(lambda: has_sidecar(target), timeout=10)
        await wait_for(lambda: service.idle)
    assert read_sidecar(target)["sha256"] == sha256sum(target)
    assert service.tally().files_ingested == 1, "exactly one version: the complete file"


async def test_the_first_poll_reports_files_written_while_the_service_started(tmp_path: Path) -> None:
    from agent.core.naming import IgnoreRules
    from agent.service.polling import poll_paths

    old = write(tmp_path / "run-0" / "old.csv", "1\n")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    write(tmp_path / "run-1" / "new.csv", "2\n")  # beside the start-up reconciliation
    stop = asyncio.Event()
    first = await anext(poll_paths(tmp_path, IgnoreRules(()), interval_s=0.05, stop=stop))
    stop.set()
    assert first == ["run-1/new.csv"]
