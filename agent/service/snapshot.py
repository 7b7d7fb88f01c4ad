"""What the running service is doing, as one value: for the metrics endpoint and the live status.

Neither of those imports the service; the service hands them a ``ServiceSnapshot`` (or a function
that takes one). A snapshot is a copy: it does not change as the service goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ingest.outcome import Tally
from ..ship.announcer import AnnounceStats
from ..ship.shipper import ShipStats
from .tracker import PendingSession, SessionKey
from .watch import WatchedRoot


@dataclass(frozen=True, slots=True)
class RootState:
    name: str
    path: str
    mode: str  # "events" or "polling"
    quiet_period_s: float
    marker: str | None
    #: Why the root's change notifications fail (None while they work).
    watcher_error: str | None

    @classmethod
    def of(cls, watched: WatchedRoot, watcher_error: str | None) -> RootState:
        root, policy = watched.root, watched.policy
        return cls(
            root.name, str(root.path), watched.mode, policy.quiet_period_s, policy.marker, watcher_error
        )


@dataclass(frozen=True, slots=True)
class PendingState:
    """A session waiting to be complete, and why."""

    root: str
    session: str
    reason: str
    quiet_for_s: float
    quiet_period_s: float

    @classmethod
    def of(cls, pending: PendingSession, root: str, now: float) -> PendingState:
        quiet_for = max(0.0, now - pending.last_change)
        return cls(root, pending.key[1], pending.reason, quiet_for, pending.policy.quiet_period_s)


@dataclass(frozen=True, slots=True)
class InFlightState:
    """A session with a batch queued, being processed, or waiting out a retry delay."""

    root: str
    session: str
    #: (attempt, seconds until it) while the batch waits to be tried again.
    retry: tuple[int, float] | None

    @classmethod
    def of(cls, root: str, session: str, retry_at: tuple[int, float] | None, now: float) -> InFlightState:
        """``retry_at``: the next attempt and the (monotonic) time it is due, while one waits."""
        retry = None if retry_at is None else (retry_at[0], max(0.0, retry_at[1] - now))
        return cls(root, session, retry)


@dataclass(frozen=True, slots=True)
class ServiceSnapshot:
    started_unix: float
    roots: tuple[RootState, ...]
    pending: tuple[PendingState, ...]
    in_flight: tuple[InFlightState, ...]
    queue_depth: int
    metrics_url: str | None
    tally: Tally
    #: inotify watches held by all roots together.
    inotify_watches: int = 0
    #: Helper processes sharing a burst (service.offload).
    helpers: int = 0
    #: The shipper's account (None: no [store]).
    store: ShipStats | None = None
    #: The announcer's account (None: no [bus]).
    bus: AnnounceStats | None = None

    @classmethod
    def take(
        cls,
        *,
        now: float,
        started_unix: float,
        roots: list[WatchedRoot],
        watcher_errors: dict[int, str],
        pending: list[PendingSession],
        in_flight: set[SessionKey],
        retrying: dict[SessionKey, tuple[int, float]],
        queue_depth: int,
        metrics_url: str | None,
        tally: Tally,
        inotify_watches: int,
        helpers: int = 0,
        store: ShipStats | None = None,
        bus: AnnounceStats | None = None,
    ) -> ServiceSnapshot:
        """From copies of the service's state (the caller copies each collection in one step)."""
        names = {w.root.id: w.root.name for w in roots}
        return cls(
            started_unix=started_unix,
            roots=tuple(RootState.of(w, watcher_errors.get(w.root.id)) for w in roots),
            pending=tuple(
                PendingState.of(p, names.get(p.key[0], "?"), now)
                for p in sorted(pending, key=lambda p: p.key)
            ),
            in_flight=tuple(
                InFlightState.of(names.get(key[0], "?"), key[1], retrying.get(key), now)
                for key in sorted(in_flight)
            ),
            queue_depth=queue_depth,
            metrics_url=metrics_url,
            tally=tally,
            inotify_watches=inotify_watches,
            helpers=helpers,
            store=store,
            bus=bus,
        )
