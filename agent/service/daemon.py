"""The live service: watchers and reconciliation feed the tracker; sealed sessions feed the pipeline.

    inotify or polling, reconcile ──► SessionTracker ──► bounded queue ──► workers ──► process_batch
                                                                           └─► helpers (a burst: offload)

The service owns start, run and stop. Signals are the CLI's business: it sets ``stop`` (and, on a
second signal, ``force``) and the service winds down: intake stops, queued batches are dropped
(the next start's reconciliation finds them again), in-flight batches get a grace period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from functools import partial

from ..core.batch import Batch, FileStat
from ..core.config import AgentConfig, CompletionPolicy
from ..core.errors import ConfigError
from ..core.naming import IgnoreRules, session_of, unit_of
from ..fs.outputs import OutputWriter
from ..ingest.curate import load_rule_set
from ..ingest.hashing import Hasher
from ..ingest.outcome import Retry, Tally
from ..ingest.pipeline import Pipeline
from ..ledger import Ledger
from ..ship.announcer import Announcer
from ..ship.shipper import Shipper
from .children import LogSettings
from .discover import SessionLister, SessionListing, list_sessions, split_sessions
from .inotify import WatchBudget, WatchLimitExceeded
from .livestatus import publish_live_status, remove_live_status
from .metrics import Metrics, MetricsEndpoint
from .notify import Notifier
from .offload import LOST, HelperProcess, Lost, Offload
from .quickcheck import plan_from_ledger
from .room import LOCAL, Room
from .scan import remove_orphans
from .snapshot import ServiceSnapshot
from .tracker import Action, SessionKey, SessionTracker, Verdict, has_marker
from .watch import EventSource, WatchedRoot, filesystem_events, register_roots
from .workers import WorkerPool

log = logging.getLogger("fair_agent.service")

#: Seconds between reconciliations while a root's watcher is failing: nothing waits for long.
DEGRADED_RECONCILE_S = 15.0


class Service:
    def __init__(
        self,
        config: AgentConfig,
        ledger: Ledger,
        *,
        notifier: Notifier | None = None,
        events: EventSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_settings: LogSettings = LogSettings(),
    ) -> None:
        if not config.roots:
            raise ConfigError("nothing to watch: add a [[roots]] table to the config, or pass --watch FOLDER")
        self.config = config
        self.ledger = ledger
        # Before any thread starts: a broken rule set stops the service here, with every error.
        self.rules = load_rule_set(config)
        self.notifier = notifier or Notifier(None)
        self.ignore = IgnoreRules(config.ignore)
        self._events = events
        self._clock = clock
        self.tracker = SessionTracker()
        self.metrics = Metrics()
        self.metrics_endpoint: MetricsEndpoint | None = None
        self.hasher = Hasher(
            config.hash_threads, config.read_chunk_bytes, on_wait=self.metrics.slot_wait_seconds.observe
        )
        self.writer = OutputWriter(config.workers, config.sync_strategy)
        self.pipeline = Pipeline(
            config, ledger, self.hasher, self.writer, self.rules, on_batch=self.metrics.batch_seconds.observe
        )
        self.metrics.watch(self.snapshot)
        #: Where each batch goes: this process's own workers first, then its helper processes (a
        #: burst), the batch that has waited longest first.
        self.room: Room[tuple[Batch, SessionKey], HelperProcess] = Room(config.workers, self._helper_for)
        self.offload = Offload(
            config, log_settings, on_batch=self.metrics.batch_seconds.observe, on_room=self.room.give
        )
        #: Batches that waited for room when the service stopped, or were taken off the queue
        #: after, and were not ingested.
        self._left_at_stop = 0
        #: Sessions whose helper ended while it held them: kept here from then on, so that a batch
        #: that ends every helper (memory, a crash) cannot loop.
        self._lost: set[SessionKey] = set()
        self.pool: WorkerPool[Batch] = WorkerPool(
            self._ingest,
            workers=config.workers + self.offload.slots,
            queue_size=config.queue_size,
            weight=lambda batch: len(batch.files),
        )
        self.roots: dict[int, WatchedRoot] = {}
        #: Each root's lister of sessions, for the looks and reconciliations (it knows whether the
        #: loop may list there, and which sessions it may not).
        self._listers: dict[int, SessionLister] = {}
        #: inotify watches of all roots together: a share of the system's, never all of them.
        self.watch_budget = WatchBudget.share_of_system(config.inotify_watch_share)
        self.ready = asyncio.Event()
        self.reconciliations = 0
        self._in_flight: set[SessionKey] = set()
        self._wake = asyncio.Event()
        self._stop_watching = asyncio.Event()
        self._started_ns = time.time_ns()
        self.started_unix = self._started_ns / 1e9
        #: Sessions whose batch waits out a retry delay: (attempt, monotonic time of the next try).
        self.retrying: dict[SessionKey, tuple[int, float]] = {}
        #: Roots whose watcher is failing, and why (status and metrics show it).
        self.watcher_errors: dict[int, str] = {}
        self._reconcile_now = asyncio.Event()
        #: Ships the outbox when a [store] is configured (its credentials are read now: a service
        #: without them does not start).
        self.shipper = Shipper(config, ledger) if config.store is not None else None
        #: Announces to the hub when a [bus] is configured.
        self.announcer = Announcer(config, ledger) if config.bus is not None else None
        if self.shipper is not None and self.announcer is not None:
            self.shipper.on_announced = self.announcer.wake.set

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, force: asyncio.Event | None = None) -> None:
        """Watch and ingest until ``stop`` is set, then shut down gracefully."""
        self.roots = await register_roots(self.config, self.ledger)
        if self.config.metrics.enabled:
            self.metrics_endpoint = self.metrics.serve(self.config.metrics.address, self.config.metrics.port)
        self.pool.start()
        tasks = [
            asyncio.create_task(self._watch(w), name=f"watch-{w.root.name}") for w in self.roots.values()
        ]
        tasks += [
            asyncio.create_task(self._schedule(), name="scheduler"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._reconcile_forever(), name="reconcile"),
        ]
        if self.shipper is not None:
            tasks.append(asyncio.create_task(self.shipper.run(self._stop_watching), name="shipper"))
        if self.announcer is not None:
            tasks.append(asyncio.create_task(self.announcer.run(self._stop_watching), name="announcer"))
        self.notifier.ready(self.status_line())
        self.ready.set()
        log.info(self.status_line())
        try:
            await stop.wait()
        finally:
            self.notifier.stopping()
            log.info("stopping: no new batches; in-flight batches get the grace period")
            self._stop_watching.set()
            self.room.close()  # batches waiting for a worker are dropped, not started
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            dropped = await self.pool.shutdown(self.config.shutdown_grace_s, force) + self._left_at_stop
            await self.offload.close()
            await asyncio.to_thread(self._close_threads)
            self.metrics.close()
            with suppress(OSError):
                remove_live_status(self.config.state_dir)
            tally = self.tally()
            log.info(
                f"stopped; {dropped} batch(es) left for the next start",
                extra={"files": tally.files_ingested, "bytes": tally.bytes_ingested},
            )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Service]:
        """Run in the background for the duration of a ``with`` block (for tests and embedding)."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.run(stop))
        ready = asyncio.create_task(self.ready.wait())
        await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            ready.cancel()
            task.result()  # startup failed: raise its error
        try:
            yield self
        finally:
            stop.set()
            await task

    def _close_threads(self) -> None:
        if self.shipper is not None:
            self.shipper.close()
        self.hasher.close()
        self.writer.close()
        self.pipeline.close()

    def reconcile_now(self) -> None:
        """Start a reconciliation scan now (SIGHUP; `fair-agent replay` sends one)."""
        self._reconcile_now.set()

    # -- observable state -------------------------------------------------------------------------

    @property
    def in_flight(self) -> set[SessionKey]:
        """Sessions with a batch queued, being processed, or waiting to retry."""
        return set(self._in_flight)

    @property
    def idle(self) -> bool:
        """Nothing pending, queued or in flight."""
        return not len(self.tracker) and not self.pool.depth and not self._in_flight

    def snapshot(self) -> ServiceSnapshot:
        """What the service is doing now, for the metrics endpoint and the live status.

        Safe to call from another thread (the metrics server's): each collection of the event
        loop's is copied in one step, atomic under the GIL, before it is read.
        """
        return ServiceSnapshot.take(
            now=self._clock(),
            started_unix=self.started_unix,
            roots=list(self.roots.values()),
            watcher_errors=dict(self.watcher_errors),
            pending=self.tracker.sessions(),
            in_flight=self.in_flight,
            retrying=dict(self.retrying),
            queue_depth=self.pool.depth,
            metrics_url=self.metrics_endpoint.url if self.metrics_endpoint else None,
            tally=self.tally(),
            inotify_watches=self.watch_budget.used,
            helpers=len(self.offload.pids),
            store=replace(self.shipper.stats) if self.shipper is not None else None,
            bus=replace(self.announcer.stats) if self.announcer is not None else None,
        )

    def status_line(self) -> str:
        return (
            f"watching {len(self.roots)} folder(s); {len(self.tracker)} session(s) pending; "
            f"{self.pool.depth} batch(es) queued, {len(self._in_flight)} in flight; "
            f"{self.tally().files_ingested} file(s) ingested"
        )

    def tally(self) -> Tally:
        """What this process and its helpers ingested (a copy: see Tally.copy)."""
        total = self.pipeline.tally.copy()
        total.add(self.offload.tally)
        return total

    # -- intake ---------------------------------------------------------------------------------

    async def _watch(self, watched: WatchedRoot) -> None:
        source = self._events or filesystem_events(
            self.ignore, poll_interval_ms=self.config.poll_interval_ms, budget=self.watch_budget
        )
        delay = 1.0
        while not self._stop_watching.is_set():
            try:
                async for relpaths in source(watched, self._stop_watching):
                    self._observe(watched, relpaths, self._clock())
                    self.watcher_errors.pop(watched.root.id, None)
                    delay = 1.0
                return
            except WatchLimitExceeded as exc:
                watched = self.roots[watched.root.id] = replace(watched, mode="polling")
                self._reconcile_now.set()
                log.warning(
                    f"polling {watched.root.name!r} instead of watching it by events: {exc}",
                    extra={"root": watched.root.name},
                )
            except Exception as exc:
                # Notifications can fail (a queue overflow, a share going away, the folder itself
                # removed): the changes of that moment are lost, so reconcile now, and often
                # while the watcher keeps failing; it comes back after a pause.
                cause = exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) and exc.exceptions else exc
                self.watcher_errors[watched.root.id] = f"{type(cause).__name__}: {cause}"
                self._reconcile_now.set()
                log.error(
                    f"watching {watched.root.name!r} failed: {self.watcher_errors[watched.root.id]}; "
                    f"reconciling every {DEGRADED_RECONCILE_S:.0f} s meanwhile; retrying in {delay:.0f} s",
                    extra={"root": watched.root.name, "error_class": type(cause).__name__},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    def _observe(self, watched: WatchedRoot, relpaths: list[str], at: float) -> None:
        for relpath in relpaths:
            # The tracker waits for a whole top-level folder; rules may split it into deeper
            # sessions once it is complete.
            unit, _ = session_of(relpath)
            policy = self.rules.completion_for(watched.root.name, relpath, watched.policy)
            self.tracker.observe((watched.root.id, unit), policy, at, polled=self._polled(watched))
        self._wake.set()

    def _polled(self, watched: WatchedRoot) -> bool:
        """Whether the root's changes are found by looking, not reported by events as they happen."""
        return watched.mode == "polling" or watched.root.id in self.watcher_errors

    async def _reconcile_forever(self) -> None:
        while True:
            # Cleared before the pass, not after: a request that arrives during it runs another.
            self._reconcile_now.clear()
            started = time.perf_counter()
            found = 0
            for watched in self.roots.values():
                try:
                    found += await self._reconcile(watched)
                except Exception:
                    log.exception("reconciliation failed", extra={"root": watched.root.name})
            self.reconciliations += 1
            log.info(
                f"reconciliation done in {time.perf_counter() - started:.2f} s; "
                f"{found} session(s) with new or changed files",
                extra={"task": "reconcile"},
            )
            interval = self.config.reconcile_interval_s
            if self.watcher_errors:
                interval = min(interval, DEGRADED_RECONCILE_S)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._reconcile_now.wait(), interval)

    async def _reconcile(self, watched: WatchedRoot) -> int:
        """Find what notifications missed; unchanged files cost a stat, not a hash."""
        root, found = watched.root, 0
        # Temp files older than this process are a crash's leftovers; newer ones are in use.
        lister = self._lister(watched)
        lister.look_at_mounts_again()  # a share mounted below the root since: never stat'ed on the loop
        async for listing in list_sessions(
            root.path,
            self.ignore,
            session_of=self._grouping(watched),
            on_temp_files=partial(remove_orphans, root.path, before_ns=self._started_ns),
            lister=lister,
        ):
            key = (root.id, unit_of(listing.session))
            if key in self._busy_units() or key in self.tracker:
                continue
            plan = await plan_from_ledger(self.ledger, root, listing)
            if plan.batch is None:
                continue
            # The quiet period runs from the newest change on disk, so files that lay there while
            # the agent was down are sealed after the stability look, not a whole quiet period.
            newest = max((f.mtime_ns for f in plan.batch.files), default=time.time_ns())
            age = max(0.0, (time.time_ns() - newest) / 1e9)
            policy = self._policy_for(watched, listing.files)
            self.tracker.observe(key, policy, self._clock() - age, polled=self._polled(watched))
            found += 1
        self._wake.set()
        return found

    # -- completion -----------------------------------------------------------------------------

    async def _schedule(self) -> None:
        while True:
            looks = []
            for pending, action in self.tracker.due(self._clock(), self._busy_units()):
                if action is Action.WARN_LONG:
                    log.warning(
                        f"session {pending.key[1]!r} has kept changing for over "
                        f"{pending.policy.max_session_s:.0f} s; still waiting for it to be complete",
                        extra={"session": pending.key[1], "root": self.roots[pending.key[0]].root.name},
                    )
                    self.tracker.warned(pending.key)
                else:
                    looks.append(self._look(pending.key))
            # Sessions due together are looked at together: slow writers finishing at once must not
            # each wait for the others' listings and ledger look-ups.
            await asyncio.gather(*looks)
            deadline = self.tracker.next_deadline(self._busy_units())
            self._wake.clear()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _lister(self, watched: WatchedRoot) -> SessionLister:
        """The root's lister, kept for the service's life: it remembers the sessions too large to
        list on the loop."""
        lister = self._listers.get(watched.root.id)
        if lister is None:
            lister = self._listers[watched.root.id] = SessionLister(watched.root.path, self.ignore)
        return lister

    async def _look(self, key: SessionKey) -> None:
        """Take one of a session's two looks, and seal it if the looks agree."""
        watched = self.roots[key[0]]
        # Dated before the listing: a change reported while it is taken makes it stale.
        looked_at = self._clock()
        listing = await self._lister(watched).look(key[1])
        if key not in self.tracker:
            return
        # Events may not have named every file yet: the files seen now decide the policy.
        if listing is not None and self.tracker.tighten(key, self._policy_for(watched, listing.files)):
            due = self.tracker.deadline_of(key)
            if due is None or due > self._clock():
                return
        files = listing.files if listing else None
        verdict = self.tracker.record_look(key, files, bool(listing and listing.is_folder), looked_at)
        if verdict is Verdict.SEALED and listing is not None:
            for part in split_sessions(listing, self._grouping(watched)):
                if self._lacks_marker(watched, part):
                    continue  # the marker's own arrival brings it back
                await self._seal(watched, part)
        elif verdict is Verdict.WAITING_FOR_MARKER:
            log.info(
                f"session {key[1]!r} is quiet but has no marker file yet",
                extra={"session": key[1], "root": watched.root.name},
            )

    def _policy_for(self, watched: WatchedRoot, files: list[FileStat]) -> CompletionPolicy:
        return self.rules.strictest_completion(watched.root.name, (f.relpath for f in files), watched.policy)

    def _lacks_marker(self, watched: WatchedRoot, part: SessionListing) -> bool:
        """A session (deeper than its folder, where rules group so) whose rule wants a marker it lacks."""
        marker = self._policy_for(watched, part.files).marker
        if not part.is_folder or not marker or has_marker(part.files, marker):
            return False
        log.info(
            f"session {part.session!r} has no marker file matching {marker!r} yet",
            extra={"session": part.session, "root": watched.root.name},
        )
        return True

    def _grouping(self, watched: WatchedRoot) -> Callable[[str], str]:
        return partial(self.rules.session_name, watched.root.name)

    def _busy_units(self) -> set[SessionKey]:
        """Top-level folders with a batch in flight: the tracker does not seal them meanwhile."""
        return {(root_id, unit_of(session)) for root_id, session in self._in_flight}

    async def _seal(self, watched: WatchedRoot, listing: SessionListing) -> None:
        root = watched.root
        await self.ledger.record_skips(root.id, listing.session, listing.skips)
        plan = await plan_from_ledger(self.ledger, root, listing)
        if plan.batch is None:
            return
        self._in_flight.add((root.id, listing.session))
        await self.pool.submit(plan.batch)  # waits while the queue is full: backpressure
        if self.room.waiting:
            self.room.give()  # a queue grown long enough starts a helper for the batches waiting

    async def _ingest(self, batch: Batch) -> None:
        key = (batch.root.id, batch.session)
        retry: Retry | Lost | None = None
        try:
            retry = await self._process(batch, key)
        finally:
            if retry is LOST:  # its helper ended: the ledger says what is still to do
                retry = None
                self._lost.add(key)
                self.reconcile_now()
            if retry is not None:
                # Still in flight: the session is not sealed again while its retry waits.
                self.pool.submit_later(retry.batch, retry.delay)
                self.retrying[key] = (retry.batch.attempt, self._clock() + retry.delay)
            else:
                self._in_flight.discard(key)
                self.retrying.pop(key, None)
            self._wake.set()
            if self.shipper is not None:
                self.shipper.wake.set()
            if self.announcer is not None:
                self.announcer.wake.set()

    async def _process(self, batch: Batch, key: SessionKey) -> Retry | Lost | None:
        """The batch ingested here, or by a helper while this process's workers are all busy:
        by whichever has room first (room.Room). None without ingesting it if the service stops
        meanwhile (a queued batch: the next start finds it again)."""
        while True:
            place = await self.room.place_for((batch, key))
            if place is None:
                self._left_at_stop += 1
                return None
            if place is LOCAL:
                try:
                    return await self.pipeline.process_batch(batch)
                finally:
                    self.room.free_local()
            if not place.ended:
                return await place.ingest(batch)
            place.give_back()  # it ended since its place was promised: the batch never went there

    def _helper_for(self, waiting: tuple[Batch, SessionKey]) -> HelperProcess | None:
        batch, key = waiting
        if key in self._lost:
            return None
        return self.offload.helper_for(batch, self.pool.queued_weight, self.pool.backlogged)

    # -- liveness -------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = min(self.notifier.watchdog_interval or 5.0, 5.0)
        writing: asyncio.Task[None] | None = None
        while True:
            # Runs on the event loop: if the loop is stuck, the pings stop and systemd steps in.
            self.notifier.watchdog()
            self.notifier.status(self.status_line())
            # Not awaited here: a hung state directory must not stop the pings.
            if writing is None or writing.done():
                writing = asyncio.create_task(
                    publish_live_status(self.config.state_dir, self.snapshot()), name="live-status"
                )
            await asyncio.sleep(interval)
