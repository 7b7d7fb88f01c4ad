"""The hub's loop: events from the durable consumer to the catalogue, then acks, then receipts.

Order per batch: fetch up to ``batch_size`` events; write them all in one catalogue transaction;
acknowledge each; publish one receipt per agent naming the message ids it can close. A crash before
the commit redelivers the batch (after the consumer's ack wait) and nothing was written; a crash
after it redelivers events whose ids the catalogue already holds, which are skipped and receipted
again. Several hub processes on the same durable consumer share the work: JetStream gives each
fetch different messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ..core.errors import RetryableError
from ..core.eventmodels import AgentStatus, Receipt, parse_event
from ..core.events import STATUS_SUBJECTS, receipt_subject, status_subject, stream_subjects
from ..ship.credentials import bus_credentials, private_text
from .catalogue import Catalogue
from .config import HubSettings, WebSettings

log = logging.getLogger("fair_agent.hub")


class CentreUnavailableError(RetryableError):
    """The bus or the catalogue cannot be reached at start: may pass (exit 75, systemd restarts)."""


#: Seconds a fetched event may stay unacknowledged before JetStream delivers it again.
ACK_WAIT_S = 60.0
#: Seconds a fetch waits for events when there are none.
FETCH_WAIT_S = 1.0


@dataclass(slots=True)
class HubStats:
    events: int = 0
    duplicates: int = 0
    files: int = 0
    rejected: int = 0
    batches: int = 0
    redeliveries: int = 0
    commit_seconds_total: float = 0.0
    last_commit_s: float = 0.0
    #: Messages the consumer has not delivered yet (JetStream's own figure), after the last fetch.
    lag: int = 0


class Hub:
    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self.stats = HubStats()
        self.catalogue: Catalogue | None = None
        self.ready = asyncio.Event()
        self._failures = 0
        #: The web page, when [hub.web] is set (its port once started: web.port).
        self.web: Any = None

    async def run(self, stop: asyncio.Event) -> None:
        password = (
            private_text(self.settings.catalogue_password_file, "catalogue password").strip()
            if self.settings.catalogue_password_file
            else None
        )
        self.catalogue = await Catalogue.connect(self.settings.catalogue_dsn, password=password, size=8)
        try:
            version = await self.catalogue.migrate()
            if self.settings.web is not None:
                await self._serve_web(self.settings.web)
            client = await self._connect()
            try:
                js = client.jetstream()
                subscription = await self._consumer(js)
                await client.subscribe(STATUS_SUBJECTS, cb=self._on_status)
                log.info(
                    f"hub ready: stream {self.settings.stream}, consumer {self.settings.consumer}, "
                    f"catalogue schema {version}"
                )
                self.ready.set()
                while not stop.is_set():
                    await self._one_batch(client, subscription)
            finally:
                # Not drain(): it waits out the pull subscription's pending request (up to 30 s).
                # Everything acknowledged was flushed with the receipts.
                with contextlib.suppress(Exception):
                    await client.close()
        finally:
            if self.web is not None:
                await self.web.stop()
            await self.catalogue.close()

    async def _serve_web(self, settings: WebSettings) -> None:
        from .web.app import create_app
        from .web.queries import WebQueries
        from .web.server import WebServer

        assert self.catalogue is not None
        self.web = WebServer(
            create_app(WebQueries(self.catalogue.pool), settings), settings.address, settings.port
        )
        await self.web.start()

    async def _connect(self) -> Any:
        import nats

        async def on_error(exc: Exception) -> None:
            log.warning(f"bus: {exc}")

        credentials = {}
        if self.settings.bus_credentials_file is not None:
            from ..core.config import BusSettings

            credentials = bus_credentials(
                BusSettings(url=self.settings.bus_url, credentials_file=self.settings.bus_credentials_file),
                env={},
            )
        try:
            return await nats.connect(
                servers=self.settings.servers,
                name="fair-agent hub",
                connect_timeout=5,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                error_cb=on_error,
                **credentials,
            )
        except Exception as exc:
            raise CentreUnavailableError(
                f"cannot connect to the bus at {self.settings.bus_url}: {exc}"
            ) from exc

    async def _consumer(self, js: Any) -> Any:
        """The stream and its durable pull consumer, created when missing."""
        from nats.js.api import AckPolicy, ConsumerConfig, DiscardPolicy, RetentionPolicy, StreamConfig
        from nats.js.errors import NotFoundError

        s = self.settings
        config = StreamConfig(
            name=s.stream,
            subjects=stream_subjects(),
            max_bytes=s.stream_max_bytes,
            max_msgs=s.stream_max_msgs,
            # An event leaves the stream once a hub acknowledged it (after its catalogue commit),
            # so the limits bound the backlog, not the history.
            retention=RetentionPolicy.WORK_QUEUE,
            # Full: refuse new events (agents keep them and try again) rather than drop old ones.
            discard=DiscardPolicy.NEW,
            duplicate_window=s.duplicate_window_s,
        )
        try:
            await js.stream_info(s.stream)
        except NotFoundError:
            with contextlib.suppress(Exception):  # another hub made it meanwhile
                await js.add_stream(config)
        return await js.pull_subscribe(
            "",
            durable=s.consumer,
            stream=s.stream,
            config=ConsumerConfig(
                durable_name=s.consumer,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ACK_WAIT_S,
                max_ack_pending=max(10_000, 4 * s.batch_size),
            ),
        )

    async def _one_batch(self, client: Any, subscription: Any) -> None:
        from nats.errors import Error as NatsError
        from nats.errors import TimeoutError as NatsTimeout

        try:
            messages = await subscription.fetch(self.settings.batch_size, timeout=FETCH_WAIT_S)
        except (NatsTimeout, TimeoutError):  # nats-py raises either when no event came
            return
        except NatsError as exc:
            # The bus restarting or unreachable: the client reconnects by itself; wait for it.
            log.warning(f"cannot fetch events: {type(exc).__name__}: {exc}")
            await asyncio.sleep(1.0)
            return
        events, bad = [], []
        for message in messages:
            if message.metadata.num_delivered > 1:
                self.stats.redeliveries += 1
            try:
                events.append(parse_event(message.data))
            except ValueError as exc:
                bad.append(message)
                log.error(
                    f"an event that is not one was set aside: {exc}", extra={"bytes": len(message.data)}
                )
        started = time.perf_counter()
        assert self.catalogue is not None
        try:
            fresh = set(await self.catalogue.write(events))
        except Exception as exc:
            # The catalogue is down or refused the batch: nothing was committed. The events go
            # back to the stream (redelivered after a pause) and the hub carries on.
            self._failures += 1
            log.error(f"catalogue write failed, the batch is redelivered: {type(exc).__name__}: {exc}")
            for message in messages:
                with contextlib.suppress(Exception):
                    await message.nak(delay=min(30.0, 2.0**self._failures))
            await asyncio.sleep(min(30.0, 0.5 * 2.0**self._failures))
            return
        self._failures = 0
        took = time.perf_counter() - started
        for message in messages:
            if message in bad:
                await message.term()  # never deliver it again: it cannot be read
            else:
                await message.ack()
        await self._receipt(client, events)
        self.stats.batches += 1
        self.stats.events += len(fresh)
        self.stats.duplicates += len(events) - len(fresh)
        self.stats.files += sum(len(e.files) for e in events if e.id in fresh)
        self.stats.rejected += len(bad)
        self.stats.commit_seconds_total += took
        self.stats.last_commit_s = took
        if messages:
            self.stats.lag = int(messages[-1].metadata.num_pending)
        log.debug(
            f"catalogued {len(fresh)} event(s), {len(events) - len(fresh)} seen before",
            extra={"files": self.stats.files},
        )

    async def _on_status(self, message: Any) -> None:
        try:
            status = AgentStatus.model_validate_json(message.data)
        except ValueError:
            return
        # An agent may speak only for itself: the subject's token must be its own.
        if message.subject != status_subject(status.agent) or self.catalogue is None:
            return
        with contextlib.suppress(Exception):
            await self.catalogue.record_status(status)

    async def _receipt(self, client: Any, events: list[Any]) -> None:
        by_agent: dict[str, list[str]] = defaultdict(list)
        for event in events:
            by_agent[event.agent].append(event.id)
        for agent, ids in by_agent.items():
            await client.publish(receipt_subject(agent), Receipt(ids=ids).model_dump_json().encode())
        await client.flush()
