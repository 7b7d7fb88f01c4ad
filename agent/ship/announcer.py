"""The announcer: publishes the ledger's events to the bus, oldest first, and records the hub's
receipts.

Each event goes out with its deterministic ``Nats-Msg-Id``, is marked published once JetStream
acknowledged it, and is closed by the hub's receipt (``fair.v1.receipt.<agent>``). An event without
a receipt after ``receipt_timeout_s`` is published again with the same id: a lost receipt, or a hub
that lost the event, costs a second look, never a second row. While the bus is unreachable the
events wait in the ledger; tries back off with full jitter, and the backlog drains in order when
the bus returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..core.config import AgentConfig, BusSettings, RetryPolicy
from ..core.eventmodels import AgentStatus, Receipt
from ..core.events import receipt_subject, status_subject
from ..core.retry import backoff_delay
from ..ledger import Ledger
from ..ledger.announcements import EventCounts, PendingEvent
from .bus import BusErrors, BusUnavailableError, EventRefusedError, classify, connect

log = logging.getLogger("fair_agent.bus")

#: Events read from the ledger at a time.
PAGE = 256
#: Seconds a publish may wait for JetStream's acknowledgement.
PUBLISH_TIMEOUT_S = 10.0
#: A one-off drain (scan, ship) stays connected for the receipts of what it published while they
#: keep coming, until none came for this long; a receipt it misses comes when the event is
#: published again after receipt_timeout_s.
RECEIPT_GRACE_S = 3.0


@dataclass(slots=True)
class AnnounceStats:
    published: int = 0
    republished: int = 0
    receipts: int = 0
    refused: int = 0
    failures: int = 0
    #: The bus's failure in words while it lasts; None when the last try worked.
    bus_error: str | None = None
    counts: EventCounts | None = None


class Announcer:
    def __init__(self, config: AgentConfig, ledger: Ledger) -> None:
        assert config.bus is not None
        self.settings: BusSettings = config.bus
        self.agent_name = config.agent_name
        self.events = ledger.announcements
        self.stats = AnnounceStats()
        #: Set when a batch was committed: the service's announcer looks at once.
        self.wake = asyncio.Event()
        self._failures = 0
        self._errors = BusErrors()
        self._receipted = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """The service's announcer: connected while it can be, publishing whatever is new."""
        while not stop.is_set():
            try:
                async with self._connected() as (client, js):
                    await self._recovered()
                    while not stop.is_set():
                        # Cleared before the pass: an event committed during it wakes the next one.
                        self.wake.clear()
                        await self._publish_all(js)
                        self.stats.counts = await self.events.counts()
                        await self._tell_status(client, self.stats.counts)
                        await self._wait(stop, self._look_again_s())
            except BusUnavailableError as exc:
                await self._failed(exc)
                await self._wait(stop, self._backoff_s(), wake=False)
            except Exception:
                # A bug or a ledger error must not end the announcing until the next restart.
                log.exception("announcing failed; trying again shortly")
                await self._wait(stop, 30.0, wake=False)

    async def drain(self, *, give_up_after_s: float | None) -> AnnounceStats:
        """Publish every pending event, then stop; returns early, with the events counted, when the
        bus failed for ``give_up_after_s`` (None: keep trying)."""
        deadline = None if give_up_after_s is None else time.monotonic() + give_up_after_s
        while True:
            try:
                async with self._connected(deadline) as (client, js):
                    await self._recovered()
                    await self._publish_all(js)
                    await self._await_receipts(RECEIPT_GRACE_S)
                    await self._tell_status(client, await self.events.counts())
                self.stats.counts = await self.events.counts()
                return self.stats
            except BusUnavailableError as exc:
                await self._failed(exc)
                self.stats.counts = await self.events.counts()
                delay = self._backoff_s()
                if deadline is not None and time.monotonic() + delay > deadline:
                    return self.stats
                await asyncio.sleep(delay)

    @contextlib.asynccontextmanager
    async def _connected(self, deadline: float | None = None) -> AsyncIterator[tuple[Any, Any]]:
        self._errors = BusErrors()
        client = await connect(self.settings, self.agent_name, errors=self._errors, deadline=deadline)
        try:
            await client.subscribe(receipt_subject(self.agent_name), cb=self._on_receipt)
            yield client, client.jetstream()
        finally:
            with contextlib.suppress(Exception):
                await client.flush(timeout=2)
            with contextlib.suppress(Exception):
                await client.close()

    async def _publish_all(self, js: Any) -> None:
        cursor = 0
        while page := await self.events.unpublished(PAGE, cursor):
            cursor = page[-1].id
            await self._publish(js, page)
        overdue = datetime.now(UTC) - timedelta(seconds=self.settings.receipt_timeout_s)
        while page := await self.events.unreceipted(overdue.isoformat(timespec="milliseconds"), PAGE):
            await self._publish(js, page)
            self.stats.republished += len(page)

    async def _publish(self, js: Any, page: list[PendingEvent]) -> None:
        """In order; what JetStream acknowledged is marked published even if a later one fails."""
        done: list[int] = []
        try:
            for event in page:
                try:
                    await self._acknowledged(js, event)
                except Exception as exc:
                    failure = classify(exc, event.subject, self._errors.said)
                    if not isinstance(failure, EventRefusedError):
                        raise failure from None
                    await self.events.mark_refused(event.id, str(failure))
                    self.stats.refused += 1
                    log.error(f"event {event.msg_id} refused for good: {failure}")
                    continue
                done.append(event.id)
        finally:
            if done:
                await self.events.mark_published(done)
                self.stats.published += len(done)

    async def _acknowledged(self, js: Any, event: PendingEvent) -> None:
        """Publish one event and wait for JetStream's acknowledgement. The first publish on each
        subject also listens for the bus refusing this agent the subject: the server says so at
        once, and the acknowledgement would never come. Once a subject was acknowledged on this
        connection, its publishes are awaited alone: a second task for every event slowed a drain by
        about a tenth."""
        publish = js.publish(
            event.subject, event.payload, timeout=PUBLISH_TIMEOUT_S, headers={"Nats-Msg-Id": event.msg_id}
        )
        if event.subject in self._errors.accepted:
            await publish
            return
        ack = asyncio.ensure_future(publish)
        refusal = asyncio.ensure_future(self._errors.refusal(event.subject))
        try:
            await asyncio.wait((ack, refusal), return_when=asyncio.FIRST_COMPLETED)
        finally:
            refusal.cancel()
            if not ack.done():  # refused, or this task was cancelled
                ack.cancel()
        if not ack.done():
            raise BusUnavailableError(
                f"the bus refuses this agent {event.subject}: check its credentials and the "
                f"subjects its account may publish to (the bus said: {refusal.result()})"
            )
        ack.result()  # raises what the publish raised
        self._errors.accepted.add(event.subject)

    async def _tell_status(self, client: Any, counts: EventCounts) -> None:
        """The hub's fleet page shows each agent's backlog from these (best effort: plain NATS)."""
        status = AgentStatus(
            agent=self.agent_name,
            pending=counts.pending,
            awaitingReceipt=counts.awaiting_receipt,
            oldestPendingAt=counts.oldest_pending_at,
            sentAt=datetime.now(UTC).isoformat(timespec="milliseconds"),
        )
        with contextlib.suppress(Exception):
            await client.publish(status_subject(self.agent_name), status.model_dump_json().encode())

    async def _await_receipts(self, quiet_s: float) -> None:
        """Until every published event is receipted, or no receipt came for ``quiet_s`` (a hub that
        is down or far behind: what is missing is published again after receipt_timeout_s)."""
        while (await self.events.counts()).awaiting_receipt:
            self._receipted.clear()
            try:
                await asyncio.wait_for(self._receipted.wait(), quiet_s)
            except TimeoutError:
                return

    async def _on_receipt(self, message: Any) -> None:
        try:
            receipt = Receipt.model_validate_json(message.data)
        except ValueError:
            log.warning("a receipt that is not one was ignored", extra={"bytes": len(message.data)})
            return
        self.stats.receipts += await self.events.record_receipts(receipt.ids)
        self._receipted.set()

    async def _recovered(self) -> None:
        if self._failures:
            log.info("the bus is reachable again; publishing the backlog")
        self._failures = 0
        self.stats.bus_error = None
        await self.events.record_bus_result(None)

    async def _failed(self, exc: BusUnavailableError) -> None:
        self._failures += 1
        self.stats.failures += 1
        if self.stats.bus_error != str(exc):
            log.warning(f"bus unavailable: {exc}", extra={"error_class": type(exc).__name__})
        self.stats.bus_error = str(exc)
        await self.events.record_bus_result(str(exc))

    def _backoff_s(self) -> float:
        policy = RetryPolicy(attempts=1000, base_delay_s=1.0, max_delay_s=self.settings.retry_max_s)
        return backoff_delay(self._failures, policy)

    def _look_again_s(self) -> float:
        # Overdue receipts are looked for at a fraction of their timeout; news wakes it at once.
        return min(60.0, self.settings.receipt_timeout_s / 4)

    async def _wait(self, stop: asyncio.Event, seconds: float, *, wake: bool = True) -> None:
        waiters = [asyncio.ensure_future(stop.wait())]
        if wake:
            waiters.append(asyncio.ensure_future(self.wake.wait()))
        _, pending = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()
