"""The shipper: drains the ledger's outbox to the store, oldest first, with bounded concurrency.

One pass ships every pending file a page at a time, then the documents of every session whose
data objects are all stored. When the store is unreachable (or refuses the agent) the pass stops,
the failure is recorded in words, and the next try waits with exponential backoff and full jitter;
while the store is failing, a pass tries one file only (one probe at a time) and widens again once
it succeeds. A file that fails alone (its bytes refused, unreadable for now) waits its own backoff
while the others go on; a file that no longer holds its recorded bytes is marked so and never
shipped under them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from ..core.config import AgentConfig, RetryPolicy, StoreSettings
from ..core.errors import AgentError
from ..core.events import OutgoingEvent, stored_events
from ..core.retry import backoff_delay
from ..ledger import Ledger
from ..ledger.outbox import Backlog, SessionDocuments, Shipment
from .credentials import Credentials, load_credentials
from .documents import named_hashes, put_documents, read_documents
from .errors import StoreUnavailableError
from .keys import data_key
from .objectstore import ObjectStore, UploadGoneError
from .upload import FileLostError, Uploader

log = logging.getLogger("fair_agent.ship")
T = TypeVar("T")

#: Pending shipments read from the ledger at a time: memory follows the page, not the backlog.
PAGE = 256
#: How long an idle service waits for news before it looks at the outbox again.
IDLE_LOOK_S = 60.0
#: A file that fails alone is tried again after this backoff (the store's own has retry_max_s).
_FILE_RETRY = RetryPolicy(attempts=1000, base_delay_s=1.0, max_delay_s=300.0)


@dataclass(slots=True)
class ShipStats:
    """What this process shipped, for the scan's summary, metrics and the service's log."""

    files: int = 0
    bytes_sent: int = 0
    already_stored: int = 0
    parts_sent: int = 0
    parts_resumed: int = 0
    sessions: int = 0
    lost: int = 0
    failures: int = 0
    #: The store's failure in words while it lasts; None when the last try worked.
    store_error: str | None = None
    backlog: Backlog | None = None


@dataclass(slots=True)
class _Deferred:
    """Files that failed alone: id -> monotonic time before which they are not tried."""

    until: dict[int, float] = field(default_factory=dict)

    def ready(self, shipment: Shipment, now: float) -> bool:
        return self.until.get(shipment.id, 0.0) <= now

    def next_due(self) -> float | None:
        return min(self.until.values(), default=None)


class Shipper:
    def __init__(
        self,
        config: AgentConfig,
        ledger: Ledger,
        *,
        credentials: Credentials | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        assert config.store is not None
        self.settings: StoreSettings = config.store
        self.agent_name = config.agent_name
        self.outbox = ledger.outbox
        self.announcements = ledger.announcements
        self._announce = config.bus is not None
        #: Called when events were recorded (the service wakes its announcer).
        self.on_announced: Callable[[], None] = lambda: None
        self.store = ObjectStore(self.settings, credentials or load_credentials(self.settings))
        self.stats = ShipStats()
        #: Set when a batch was committed: the service's shipper looks at the outbox at once.
        self.wake = asyncio.Event()
        self._threads = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="ship")
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._deferred = _Deferred()
        self._store_failures = 0
        self._uploader = Uploader(
            self.store, self.outbox, self._run, self._slots, on_bytes or (lambda n: None)
        )

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    async def drain(self, *, give_up_after_s: float | None) -> ShipStats:
        """Ship until the outbox is empty; returns early, with the backlog counted, when the store
        has failed for ``give_up_after_s`` (None: keep trying) or only files that failed alone are
        left and their next try is past that time."""
        deadline = None if give_up_after_s is None else time.monotonic() + give_up_after_s
        await self.outbox.enqueue_unshipped()
        while True:
            delay = await self.cycle()
            self.stats.backlog = await self.outbox.backlog()
            if self.stats.backlog.files == 0 and self.stats.backlog.sessions == 0:
                return self.stats
            if delay is None:
                # Documents that could not be read this time: look again shortly.
                delay = 1.0
            if deadline is not None and time.monotonic() + delay > deadline:
                return self.stats
            await asyncio.sleep(delay)

    async def run(self, stop: asyncio.Event) -> None:
        """The service's shipper: a pass whenever a batch commits, on a timer, or when a backoff
        ends; until ``stop``."""
        added = await self.outbox.enqueue_unshipped()
        if added:
            log.info(f"{added} file(s) ingested before [store] was set are queued for shipping")
        while not stop.is_set():
            # Cleared before the pass: a batch committed during it wakes the next one at once.
            self.wake.clear()
            try:
                delay = await self.cycle()
                self.stats.backlog = await self.outbox.backlog()
            except Exception:
                # A bug or a ledger error must not end shipping until the next restart.
                log.exception("shipping pass failed; trying again shortly")
                delay = 30.0
            failing = self._store_failures > 0
            waits = [asyncio.ensure_future(stop.wait())]
            if not failing:
                # While the store fails, new batches do not bring the next probe forward.
                waits.append(asyncio.ensure_future(self.wake.wait()))
            _, pending = await asyncio.wait(
                waits, timeout=IDLE_LOOK_S if delay is None else delay, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()

    async def cycle(self) -> float | None:
        """One pass; returns the seconds until the next is due (None: only when there is news)."""
        shipped_before = self.stats.files
        try:
            await self._ship_files(probe=self._store_failures > 0)
            await self._ship_documents()
        except StoreUnavailableError as exc:
            self._store_failures += 1
            self.stats.failures += 1
            if self.stats.store_error != str(exc):
                log.warning(f"store unavailable: {exc}", extra={"error_class": type(exc).__name__})
            self.stats.store_error = str(exc)
            await self.outbox.record_store_result(str(exc))
            policy = RetryPolicy(attempts=1000, base_delay_s=1.0, max_delay_s=self.settings.retry_max_s)
            return backoff_delay(self._store_failures, policy)
        if self._store_failures:
            log.info("the store is reachable again; shipping the backlog")
            self._store_failures = 0
            self.stats.store_error = None
            await self.outbox.record_store_result(None)
            return 0.0  # the probe worked: the full pass follows at once
        if self.stats.files != shipped_before:
            await self.outbox.record_store_result(None)
        due = self._deferred.next_due()
        return None if due is None else max(0.0, due - time.monotonic())

    async def _ship_files(self, *, probe: bool) -> None:
        cursor = 0
        while page := await self.outbox.pending(1 if probe else PAGE, cursor):
            cursor = page[-1].id
            now = time.monotonic()
            ready = [s for s in page if self._deferred.ready(s, now)]
            await self._ship_page(ready)
            if probe and ready:
                return

    async def _ship_page(self, shipments: list[Shipment]) -> None:
        """At most ``concurrency`` files at once; the first store failure ends the page after the
        files in flight have finished."""
        unavailable: list[StoreUnavailableError] = []
        files = asyncio.Semaphore(self.settings.concurrency)

        async def one(shipment: Shipment) -> None:
            async with files:
                if not unavailable:
                    try:
                        await self._ship_one(shipment)
                    except StoreUnavailableError as exc:
                        unavailable.append(exc)

        # Identical bytes go once: the first of each hash, then the others (found stored by HEAD).
        firsts: dict[str, Shipment] = {}
        for shipment in shipments:
            firsts.setdefault(shipment.sha256, shipment)
        for wave in (list(firsts.values()), [s for s in shipments if firsts[s.sha256] is not s]):
            await asyncio.gather(*(one(s) for s in wave))
            if unavailable:
                raise unavailable[0]

    async def _ship_one(self, shipment: Shipment) -> None:
        try:
            key, sent = await self._uploader.ship(shipment)
        except FileLostError as exc:
            await self._lose(shipment, exc)
            return
        except UploadGoneError:
            # The upload cannot be completed as recorded (expired, aborted elsewhere, a part the
            # server no longer accepts): it goes, and the next pass begins again.
            if shipment.upload_id is not None:
                key = data_key(self.settings.prefix, shipment.sha256)
                async with self._slots:
                    await self._run(partial(self.store.abort, key, shipment.upload_id))
            await self.outbox.forget_upload(shipment.id)
            return
        except StoreUnavailableError:
            raise
        except (AgentError, OSError) as exc:
            await self._defer(shipment, exc)
            return
        await self.outbox.mark_stored(shipment.id, key)
        self._deferred.until.pop(shipment.id, None)
        self.stats.files += 1
        self.stats.bytes_sent += sent.bytes
        self.stats.parts_sent += sent.parts
        self.stats.parts_resumed += sent.resumed_parts
        self.stats.already_stored += sent.parts == 0 and sent.resumed_parts == 0
        log.debug(
            "stored",
            extra={
                "file": shipment.relpath,
                "sha256": shipment.sha256,
                "bytes": sent.bytes,
                "parts": sent.parts,
            },
        )

    async def _lose(self, shipment: Shipment, exc: FileLostError) -> None:
        if shipment.upload_id is not None:
            key = data_key(self.settings.prefix, shipment.sha256)
            async with self._slots:
                await self._run(partial(self.store.abort, key, shipment.upload_id))
        await self.outbox.mark_lost(shipment, exc.state, str(exc))
        self.stats.lost += 1
        log.warning(f"not shipped: {exc}", extra={"file": shipment.relpath, "session": shipment.session})

    async def _defer(self, shipment: Shipment, exc: BaseException) -> None:
        message = str(exc)
        await self.outbox.record_failure([shipment.id], message)
        self._deferred.until[shipment.id] = time.monotonic() + backoff_delay(
            shipment.attempts + 1, _FILE_RETRY
        )
        log.warning(
            f"shipping {shipment.relpath!r} failed, tried again later: {message}",
            extra={
                "file": shipment.relpath,
                "attempt": shipment.attempts + 1,
                "error_class": type(exc).__name__,
            },
        )

    async def _ship_documents(self) -> None:
        """The documents of every ready session, ``concurrency`` sessions at once."""
        while ready := await self.outbox.sessions_ready(limit=PAGE):
            outcomes = await asyncio.gather(*(self._ship_session(d) for d in ready), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            if not all(outcomes):
                return  # a session's documents could not be read: the next pass tries again

    async def _ship_session(self, docs: SessionDocuments) -> bool:
        try:
            documents = await self._run(partial(read_documents, self.settings.prefix, self.agent_name, docs))
            missing = await self.outbox.not_stored(named_hashes(documents))
            if missing:
                # A newer crate than the ledger's state said: it waits for its objects.
                log.info(
                    f"the crate of session {docs.session!r} names {len(missing)} object(s) not stored "
                    "yet; its documents wait",
                    extra={"session": docs.session},
                )
                return False
            async with self._slots:
                await self._run(partial(put_documents, self.store, documents))
        except (AgentError, OSError, ValueError) as exc:
            if isinstance(exc, StoreUnavailableError):
                raise
            log.warning(
                f"the documents of session {docs.session!r} were not shipped: {exc}",
                extra={"session": docs.session},
            )
            return False
        await self.outbox.mark_session_shipped(docs, await self._stored_events(docs))
        self.stats.sessions += 1
        if self._announce:
            self.on_announced()
        return True

    async def _stored_events(self, docs: SessionDocuments) -> list[OutgoingEvent]:
        """With a [bus]: the events telling the hub where the session's new objects are."""
        if not self._announce:
            return []
        stored = await self.announcements.stored_unannounced(docs.root_id, docs.session)
        if not stored:
            return []
        files = [
            {
                "path": path,
                "version": version,
                "sha256": sha256,
                "uri": f"s3://{self.settings.bucket}/{key}",
                "verifiedAt": verified,
            }
            for path, version, sha256, key, verified in stored
        ]
        return stored_events(
            agent_name=self.agent_name,
            root_name=docs.root_name,
            session=docs.session,
            generation=docs.generation,
            files=files,
        )
