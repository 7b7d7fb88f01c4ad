"""Retry: exponential backoff with full jitter, per kind of failure, and never in a worker's way."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from agent.core.config import AgentConfig, RetryPolicy, RetrySettings
from agent.core.errors import (
    FileChangedError,
    FileReadError,
    FileUnreadableError,
    LedgerBusyError,
    OutputWriteError,
)
from agent.core.retry import backoff_delay, retry_delay

from .conftest import appending, opened_db, run_scan, write

POLICY = RetryPolicy(attempts=4, base_delay_s=1.0, max_delay_s=5.0)


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)])
def test_backoff_is_bounded_by_the_exponential_ceiling(attempt: int, ceiling: float) -> None:
    rng = random.Random(1)
    delays = [backoff_delay(attempt, POLICY, rng) for _ in range(500)]
    assert max(delays) <= ceiling and min(delays) >= 0
    assert max(delays) > ceiling * 0.9  # full jitter spans the whole range


@pytest.mark.parametrize(
    ("error", "kind_attempts"),
    [
        (FileChangedError("x"), 10),
        (FileReadError("x"), 4),
        (OutputWriteError("x", "the disk is full"), 2),
        (LedgerBusyError("x"), 4),
    ],
)
def test_each_kind_of_failure_has_its_own_budget(error: Exception, kind_attempts: int) -> None:
    settings = RetrySettings(
        attempts=4,
        changing=RetryPolicy(attempts=10, base_delay_s=0.1, max_delay_s=1),
        output=RetryPolicy(attempts=2),
    )
    delays = [retry_delay(error, attempt, settings) for attempt in range(1, 12)]
    assert sum(d is not None for d in delays) == kind_attempts - 1
    assert all(d is None for d in delays[kind_attempts - 1 :])


def test_terminal_failures_are_never_retried() -> None:
    assert retry_delay(FileUnreadableError("denied"), 1, RetrySettings(attempts=100)) is None


async def test_a_file_that_never_stops_changing_is_dead_lettered_after_its_budget(
    drop: Path, config: AgentConfig
) -> None:
    target = write(drop / "s" / "growing.bin", b"\0" * (32 << 20))
    write(drop / "s" / "steady.csv", "1\n")
    cfg = config.model_copy(
        update={
            "read_chunk_bytes": 4096,  # slow reads, so the writer always lands inside one
            "retry": RetrySettings(attempts=3, base_delay_s=0.01, max_delay_s=0.02),
        }
    )
    with appending(target):
        report = await run_scan(drop, cfg)
    assert report.files_ingested == 1 and report.dead_lettered == 1
    with opened_db(cfg.ledger_path) as db:
        assert db.execute("SELECT relpath, category, error_class, attempts FROM dead_letters").fetchall() == [
            ("s/growing.bin", "retryable", "FileChangedError", 3)
        ]


async def test_a_transient_failure_is_retried_and_then_succeeds(drop: Path, config: AgentConfig) -> None:
    target = write(drop / "s" / "settling.bin", b"\0" * (16 << 20))
    cfg = config.model_copy(
        update={
            "read_chunk_bytes": 4096,
            "retry": RetrySettings(attempts=50, base_delay_s=0.05, max_delay_s=0.1),
        }
    )
    with appending(target, pause=0.001, for_s=0.5):
        report = await run_scan(drop, cfg)
    assert report.ok and report.files_ingested == 1


async def test_retries_do_not_hold_up_other_sessions(tmp_path: Path, drop: Path, config: AgentConfig) -> None:
    # One worker only. A session whose file keeps failing waits out its backoff outside the worker,
    # so the other sessions are ingested meanwhile, long before the retries are over: a worker
    # that waited would add two backoffs (uniform in 0-1.5 s each) and two more reads.
    def sessions(folder: Path) -> Path:
        """Five small sessions and, first in order, one whose file is returned (to keep growing)."""
        for i in range(5):
            write(folder / f"b-{i}" / "x.csv", f"{i}\n")
        return write(folder / "a-slow" / "growing.bin", b"\0" * (8 << 20))

    target = sessions(drop)
    cfg = config.model_copy(
        update={
            "workers": 1,
            "read_chunk_bytes": 4096,
            "retry": RetrySettings(attempts=3, base_delay_s=1.5, max_delay_s=1.5),
        }
    )
    # The machine's own pace: the same five sessions alone, with the slow file still (a fixed
    # bound from the start failed on a machine whose Python is twice as slow: 0.504 s).
    alone = tmp_path / "alone"
    sessions(alone)
    started = time.monotonic()
    await run_scan(alone, cfg.model_copy(update={"state_dir": tmp_path / "alone-state"}))
    pace = time.monotonic() - started
    ingested_at: dict[str, float] = {}

    async def watch() -> None:
        while len(ingested_at) < 5:
            for i in range(5):
                if Path(f"{drop}/b-{i}/x.csv.fair.json").exists():
                    ingested_at.setdefault(f"b-{i}", time.monotonic())
            await asyncio.sleep(0.01)

    started = time.monotonic()
    with appending(target):
        watcher = asyncio.create_task(watch())
        await run_scan(drop, cfg)
        await asyncio.wait_for(watcher, 5)
    assert max(ingested_at.values()) - started < pace + 0.5, "other sessions waited for the retries"
