"""The worker pool: the bounded queue in front of the batch workers."""

from __future__ import annotations

import asyncio

import pytest

from agent.service.workers import WorkerPool


async def test_a_pool_cancelled_while_it_joins_stops_its_workers_before_it_exits() -> None:
    started = asyncio.Event()
    stopped: list[int] = []

    async def handle(item: int) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.append(item)

    async def scan() -> None:
        async with WorkerPool(handle, workers=2, queue_size=2) as pool:
            await pool.submit(1)
        # Past here the caller closes what the workers use (executors, the ledger).

    task = asyncio.create_task(scan())
    await started.wait()  # the item is in hand, and the pool waits for it (join)
    task.cancel()  # Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped == [1]  # the worker was stopped, and waited for, before the pool let go
