"""A burst shared with helper processes (service.offload): real helper processes, a real ledger, and
a helper killed while it holds batches. FILES_PER_PROCESS is lowered so that a small burst counts."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

from agent.core.config import AgentConfig
from agent.ledger import Ledger
from agent.service import offload
from agent.service.daemon import Service

from .conftest import live_config, opened_db, read_sidecar, sha256sum, wait_for, write

SESSIONS, FILES = 40, 6


@pytest.fixture(autouse=True)
def small_bursts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offload, "FILES_PER_PROCESS", 20)


def shared_config(config: AgentConfig, drop: Path) -> AgentConfig:
    # One worker of its own, so that the service's workers are busy and the helper gets batches.
    return live_config(config, drop).model_copy(update={"workers": 1, "scan_processes": 2})


def burst(drop: Path, name: str) -> list[Path]:
    return [
        write(drop / f"{name}-{s:02d}" / f"well-{i}.csv", f"a,b\n{s},{i}\n{i},{s}.5\n")
        for s in range(SESSIONS)
        for i in range(FILES)
    ]


def versions(config: AgentConfig) -> dict[str, list[int]]:
    with opened_db(config.ledger_path) as db:
        rows = db.execute("SELECT relpath, version FROM files ORDER BY relpath, version").fetchall()
    found: dict[str, list[int]] = {}
    for relpath, version in rows:
        found.setdefault(relpath, []).append(version)
    return found


async def a_first_burst(service: Service, drop: Path) -> tuple[list[Path], int]:
    """A burst ingested, which starts a helper; its files, and the helper's pid."""
    files = burst(drop, "first")
    await wait_for(lambda: all_ingested(files) and service.idle, timeout=60)
    await wait_for(lambda: bool(service.offload.pids), timeout=30)
    return files, service.offload.pids[0]


def all_ingested(files: list[Path]) -> bool:
    return all(Path(f"{f}.fair.json").exists() for f in files)


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_a_burst_is_shared_with_a_helper_and_each_file_is_ingested_once(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    cfg = shared_config(config, drop)
    async with Service(cfg, ledger).running() as service:
        first, helper = await a_first_burst(service, drop)
        assert service.snapshot().helpers == 1
        second = burst(drop, "second")  # meets it started
        await wait_for(lambda: all_ingested(second) and service.idle, timeout=60)
        by_helper = service.offload.tally.files_ingested
        assert service.tally().files_ingested == len(first) + len(second)
    assert by_helper > 0, "the helper ingested nothing"
    assert not alive(helper), "the helper outlived the service"
    found = versions(cfg)
    assert len(found) == len(first) + len(second)
    assert all(v == [1] for v in found.values()), "a file ingested twice"
    for f in second[:: FILES * 7]:
        assert read_sidecar(f)["sha256"] == sha256sum(f)


async def test_a_helper_killed_while_it_holds_batches_loses_no_file(
    drop: Path, config: AgentConfig, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = shared_config(config, drop)
    async with Service(cfg, ledger).running() as service:
        first, helper = await a_first_burst(service, drop)
        with caplog.at_level(logging.WARNING, logger="fair_agent.offload"):
            second = burst(drop, "second")
            await wait_for(lambda: service.offload.held > 0, timeout=30, interval=0.001)
            os.kill(helper, signal.SIGKILL)
            await wait_for(lambda: all_ingested(second) and service.idle, timeout=60)
    assert any("while it held" in r.getMessage() for r in caplog.records), caplog.text
    found = versions(cfg)
    assert len(found) == len(first) + len(second)
    assert all(v == [1] for v in found.values()), "a file ingested twice"


async def test_an_idle_helper_ends_and_the_next_burst_starts_another(
    drop: Path, config: AgentConfig, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offload, "IDLE_S", 0.5)
    cfg = shared_config(config, drop)
    async with Service(cfg, ledger).running() as service:
        _, helper = await a_first_burst(service, drop)
        await wait_for(lambda: not alive(helper), timeout=30)
        second = burst(drop, "second")
        await wait_for(lambda: all_ingested(second) and service.idle, timeout=60)
        await wait_for(lambda: bool(service.offload.pids), timeout=30)
        assert service.offload.pids != [helper]
    assert all(v == [1] for v in versions(cfg).values())


async def test_a_helper_that_cannot_start_leaves_the_burst_to_the_service(
    drop: Path,
    config: AgentConfig,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(offload, "WORKER_MODULE", "agent.service.no_such_module")
    cfg = shared_config(config, drop)
    with caplog.at_level(logging.INFO, logger="fair_agent.offload"):
        async with Service(cfg, ledger).running() as service:
            first = burst(drop, "first")
            await wait_for(lambda: all_ingested(first) and service.idle, timeout=60)
            second = burst(drop, "second")
            await wait_for(lambda: all_ingested(second) and service.idle, timeout=60)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("starting a helper" in m for m in messages) == 1, messages
    assert any("could not start" in m for m in messages), messages
    assert service.tally().files_ingested == len(first) + len(second)


async def test_many_small_sessions_fill_the_queue_and_start_a_helper(
    drop: Path, config: AgentConfig, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offload, "FILES_PER_PROCESS", 10**9)  # only the queue can say "burst"
    cfg = shared_config(config, drop).model_copy(update={"queue_size": 4})
    async with Service(cfg, ledger).running() as service:
        files = burst(drop, "small")
        await wait_for(lambda: bool(service.offload.pids), timeout=30)
        await wait_for(lambda: all_ingested(files) and service.idle, timeout=60)
    assert all(v == [1] for v in versions(cfg).values())


FAILING_HELPER = """
import sys
if any("offloadworker" in arg for arg in sys.orig_argv):
    from agent.ingest.pipeline import Pipeline

    async def process_batch(self, batch):
        raise RuntimeError("a bug in the pipeline")

    Pipeline.process_batch = process_batch
"""


async def test_a_batch_that_fails_in_a_helper_is_let_go_as_in_the_service(
    drop: Path, config: AgentConfig, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every batch the helper takes raises, as a bug would: the service must not wait for it.
    write(tmp_path / "site" / "sitecustomize.py", FAILING_HELPER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    cfg = shared_config(config, drop)
    async with Service(cfg, ledger).running() as service:
        first = burst(drop, "first")
        await wait_for(lambda: service.idle and bool(service.offload.pids), timeout=60)
        # Not one batch of the helper's is still in flight: each was let go, as the service's own
        # workers let go of a batch that raises (the next change or reconciliation redoes it).
        assert service.offload.tally.batches == 0
        assert service.offload.held == 0
        assert not all_ingested(first), "the helper took no batch"
    assert all(v == [1] for v in versions(cfg).values())
