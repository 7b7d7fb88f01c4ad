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


async def test_a_retry_asked_for_in_the_grace_period_is_left_for_the_next_start() -> None:
    """Not a timer that outlives the pool: counted with what the stop leaves."""
    release = asyncio.Event()

    async def handle(item: int) -> None:
        await release.wait()
        pool.submit_later(item, 0.01)  # the batch ends wanting a retry

    pool: WorkerPool[int] = WorkerPool(handle, workers=1, queue_size=2)
    pool.start()
    await pool.submit(1)
    await asyncio.sleep(0)  # in hand
    stopping = asyncio.ensure_future(pool.shutdown(grace=5.0))
    await asyncio.sleep(0)
    release.set()  # it ends within the grace period
    assert await stopping == 1
    assert pool.waiting == 0
