"""A bounded queue in front of a fixed number of workers: the backpressure point.

Producers ``await submit(item)``; when the queue is full they wait, so discovery (or the watcher)
slows down to the pace of ingestion instead of piling batches up in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Generic, TypeVar

log = logging.getLogger("fair_agent.workers")

T = TypeVar("T")


class WorkerPool(Generic[T]):
    def __init__(self, handle: Callable[[T], Awaitable[None]], *, workers: int, queue_size: int) -> None:
        self._handle = handle
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize=queue_size)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def submit(self, item: T) -> None:
        await self._queue.put(item)

    async def join(self) -> None:
        """Wait until every submitted item has been handled."""
        await self._queue.join()

    async def __aenter__(self) -> WorkerPool[T]:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"fair-agent-worker-{i}") for i in range(self._workers)
        ]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self) -> None:
        name = asyncio.current_task().get_name() if asyncio.current_task() else "worker"  # type: ignore[union-attr]
        while True:
            item = await self._queue.get()
            try:
                await self._handle(item)
            except Exception:
                # The handler records its own failures; this is the last line that keeps a worker alive.
                log.exception("worker caught an unexpected error", extra={"task": name})
            finally:
                self._queue.task_done()
