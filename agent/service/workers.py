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
    def __init__(
        self,
        handle: Callable[[T], Awaitable[object]],
        *,
        workers: int,
        queue_size: int,
        weight: Callable[[T], int] = lambda item: 1,
    ) -> None:
        self._handle = handle
        self._weight = weight
        #: What waits in the queue, by ``weight`` (the service's: files).
        self.queued_weight = 0
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize=queue_size)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.Task[None]] = set()
        self._closing = False
        #: Retries asked for once the pool was shutting down: left for the next start.
        self._refused = 0

    @property
    def depth(self) -> int:
        """Batches waiting for a worker."""
        return self._queue.qsize()

    @property
    def backlogged(self) -> bool:
        """Half the queue or more is taken: producers will soon wait (a burst)."""
        return 2 * self._queue.qsize() >= self._queue.maxsize

    @property
    def busy(self) -> int:
        """Batches being processed right now."""
        return len(self._busy)

    @property
    def waiting(self) -> int:
        """Items waiting out a retry delay before they are submitted again."""
        return len(self._timers)

    async def submit(self, item: T) -> None:
        await self._queue.put(item)
        self.queued_weight += self._weight(item)

    def submit_later(self, item: T, delay: float) -> None:
        """Submit ``item`` after ``delay`` seconds, without holding a worker meanwhile; not once
        the pool is shutting down (a batch that ends in its grace period asks for its retry too
        late: its timer would outlive the pool)."""
        if self._closing:
            self._refused += 1
            return

        async def later() -> None:
            await asyncio.sleep(delay)
            await self.submit(item)

        timer = asyncio.create_task(later(), name="fair-agent-retry")
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def join(self) -> None:
        """Wait until every submitted item, and every item waiting to be resubmitted, is handled."""
        while True:
            await self._queue.join()
            if not self._timers:
                return
            await asyncio.wait(list(self._timers))

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"fair-agent-worker-{i}") for i in range(self._workers)
        ]

    async def shutdown(self, grace: float, force: asyncio.Event | None = None) -> int:
        """Stop: drop what is queued, give what is in flight ``grace`` seconds, then cancel it.

        Returns how many items were dropped or abandoned; their work is redone on the next start.
        """
        self._closing = True
        dropped = len(self._timers)
        for timer in list(self._timers):
            timer.cancel()
        while not self._queue.empty():
            self.queued_weight -= self._weight(self._queue.get_nowait())
            self._queue.task_done()
            dropped += 1
        for task in self._tasks:
            if task not in self._busy:
                task.cancel()
        busy = list(self._busy)
        if busy:
            waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(asyncio.wait(busy, timeout=grace))]
            if force is not None:
                waiters.append(asyncio.ensure_future(force.wait()))
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()
            abandoned = [t for t in busy if not t.done()]
            if abandoned:
                log.warning(
                    f"abandoning {len(abandoned)} batch(es) in flight; they are redone on the next start"
                )
                dropped += len(abandoned)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return dropped + self._refused

    async def __aenter__(self) -> WorkerPool[T]:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                await self.join()
        finally:
            # Also when cancelled while it joins (a scan interrupted as its last batches ran): the
            # caller closes the executors and the ledger next, and a batch still running would
            # use them closed.
            for task in [*self._tasks, *self._timers]:
                task.cancel()
            await asyncio.gather(*self._tasks, *self._timers, return_exceptions=True)

    async def _work(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        while True:
            item = await self._queue.get()
            self.queued_weight -= self._weight(item)
            self._busy.add(me)
            try:
                await self._handle(item)
            except Exception:
                # The handler records its own failures; this is the last line that keeps a worker alive.
                log.exception("worker caught an unexpected error", extra={"task": me.get_name()})
            finally:
                self._busy.discard(me)
                self._queue.task_done()
            if self._closing:
                return
