"""The events outbox: what must still be announced to the hub, what awaits its receipt, and what
the catalogue holds, per file version.

Events enter in the transaction that made them (``record_events``): a committed batch in its own
commit, a session's stored objects with the mark that they are stored. The announcer reads them a
page at a time, oldest first; the hub's receipts close them. A file version is *catalogued* once the
event announcing it was receipted, and *safe to delete* once its bytes are stored and verified and
the event announcing that was receipted too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Collection, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import aiosqlite

from ..core.events import OutgoingEvent
from .encoding import from_db, now_iso, to_db
from .links import LinkState, link_state, record_link_result

Query = Callable[[str, tuple[object, ...]], Awaitable[list[sqlite3.Row]]]


@dataclass(frozen=True, slots=True)
class PendingEvent:
    id: int
    msg_id: str
    subject: str
    payload: bytes
    publish_count: int


@dataclass(frozen=True, slots=True)
class EventCounts:
    #: Not yet accepted by the bus.
    pending: int
    oldest_pending_at: str | None
    #: Accepted by the bus, no receipt from the hub yet.
    awaiting_receipt: int
    oldest_awaiting_at: str | None
    #: Refused by the bus for good (see their last error).
    refused: int


@dataclass(frozen=True, slots=True)
class CatalogueState:
    """What the centre holds of one file version."""

    catalogued: bool
    stored_catalogued: bool


def record_events(db: sqlite3.Connection, root_id: int, events: Iterable[OutgoingEvent]) -> None:
    """Inside the caller's transaction, in the connection's thread (see inthread): the events, and
    the file versions each announces."""
    stamp = now_iso()
    for event in events:
        cur = db.execute(
            "INSERT INTO events (msg_id, kind, subject, payload, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (msg_id) DO NOTHING",
            (event.msg_id, event.kind, event.subject, event.payload, stamp),
        )
        if not cur.rowcount:
            continue  # the same event again (a redone commit): already recorded
        event_id = cur.lastrowid
        db.executemany(
            "INSERT OR REPLACE INTO announced_files VALUES (?, ?, ?, ?, ?)",
            [(root_id, to_db(path), version, event.kind, event_id) for path, version in event.files],
        )


class Announcements:
    """The ledger's events tables; reached as ``ledger.announcements``."""

    def __init__(
        self, transaction: Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]], query: Query
    ) -> None:
        self._transaction = transaction
        self._all = query

    async def unpublished(self, limit: int, after_id: int = 0) -> list[PendingEvent]:
        rows = await self._all(
            "SELECT id, msg_id, subject, payload, publish_count FROM events "
            "WHERE published_at IS NULL AND refused IS NULL AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [PendingEvent(*r) for r in rows]

    async def unreceipted(self, published_before: str, limit: int) -> list[PendingEvent]:
        """Published before that time and never receipted: to be published again (same id)."""
        rows = await self._all(
            "SELECT id, msg_id, subject, payload, publish_count FROM events "
            "WHERE published_at IS NOT NULL AND receipt_at IS NULL AND published_at < ? "
            "ORDER BY published_at LIMIT ?",
            (published_before, limit),
        )
        return [PendingEvent(*r) for r in rows]

    async def mark_published(self, ids: Collection[int]) -> None:
        stamp = now_iso()
        async with self._transaction() as db:
            await db.executemany(
                "UPDATE events SET published_at = ?, publish_count = publish_count + 1, last_error = NULL "
                "WHERE id = ?",
                [(stamp, i) for i in ids],
            )

    async def mark_refused(self, event_id: int, reason: str) -> None:
        await self._write(
            "UPDATE events SET refused = ?, last_error = ? WHERE id = ?", (reason, reason, event_id)
        )

    async def record_receipts(self, msg_ids: Collection[str]) -> int:
        """The hub committed these events to its catalogue; returns how many were new to us."""
        stamp = now_iso()
        async with self._transaction() as db:
            cur = await db.executemany(
                "UPDATE events SET receipt_at = ?, payload = x'' WHERE msg_id = ? AND receipt_at IS NULL",
                [(stamp, m) for m in msg_ids],
            )
            return max(cur.rowcount, 0)

    async def stored_unannounced(self, root_id: int, session: str) -> list[tuple[str, int, str, str, str]]:
        """(relpath, version, sha256, object key, verified at) of the session's stored versions of
        ingested files that no 'stored' event announced yet (derived tables are shipped too, but
        the hub catalogues the files; the crate tells it where the tables are)."""
        rows = await self._all(
            "SELECT s.relpath, s.version, s.sha256, s.object_key, s.verified_at FROM shipments s "
            "WHERE s.root_id = ? AND s.session = ? AND s.state = 'stored' AND NOT EXISTS ("
            "SELECT 1 FROM announced_files a WHERE a.root_id = s.root_id AND a.relpath = s.relpath "
            "AND a.version = s.version AND a.kind = 'stored') AND EXISTS (SELECT 1 FROM files f "
            "WHERE f.root_id = s.root_id AND f.relpath = s.relpath AND f.version = s.version) "
            "ORDER BY s.id",
            (root_id, to_db(session)),
        )
        return [(from_db(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    async def counts(self) -> EventCounts:
        pending = await self._all(
            "SELECT count(*), min(created_at) FROM events WHERE published_at IS NULL AND refused IS NULL", ()
        )
        awaiting = await self._all(
            "SELECT count(*), min(published_at) FROM events WHERE published_at IS NOT NULL "
            "AND receipt_at IS NULL",
            (),
        )
        refused = await self._all("SELECT count(*) FROM events WHERE refused IS NOT NULL", ())
        return EventCounts(pending[0][0], pending[0][1], awaiting[0][0], awaiting[0][1], refused[0][0])

    async def file_counts(self) -> dict[str, int]:
        """Current file versions by where their announcement is (pending, awaiting the hub's
        receipt, catalogued), and those safe to delete here."""
        states = await self._all(
            "SELECT sum(e.published_at IS NULL), sum(e.published_at IS NOT NULL AND e.receipt_at IS NULL), "
            "sum(e.receipt_at IS NOT NULL) FROM files f JOIN announced_files a ON a.root_id = f.root_id "
            "AND a.relpath = f.relpath AND a.version = f.version AND a.kind = 'batch' "
            "JOIN events e ON e.id = a.event_id WHERE f.status = 'current'",
            (),
        )
        safe = await self._all(
            "SELECT count(*) FROM files f JOIN announced_files a ON a.root_id = f.root_id "
            "AND a.relpath = f.relpath AND a.version = f.version AND a.kind = 'stored' "
            "JOIN events e ON e.id = a.event_id JOIN shipments s ON s.root_id = f.root_id "
            "AND s.relpath = f.relpath AND s.version = f.version AND s.state = 'stored' "
            "WHERE f.status = 'current' AND e.receipt_at IS NOT NULL",
            (),
        )
        pending, awaiting, catalogued = (int(n or 0) for n in states[0])
        return {
            "pending_announcement": pending,
            "awaiting_receipt": awaiting,
            "catalogued": catalogued,
            "safe_to_delete": safe[0][0],
        }

    async def catalogue_state(self, root_id: int, relpath: str) -> dict[int, CatalogueState]:
        """Per version of a file: whether the catalogue holds it, and holds it as stored."""
        rows = await self._all(
            "SELECT a.version, a.kind FROM announced_files a JOIN events e ON e.id = a.event_id "
            "WHERE a.root_id = ? AND a.relpath = ? AND e.receipt_at IS NOT NULL",
            (root_id, to_db(relpath)),
        )
        kinds: dict[int, set[str]] = {}
        for version, kind in rows:
            kinds.setdefault(version, set()).add(kind)
        return {v: CatalogueState("batch" in k, "stored" in k) for v, k in kinds.items()}

    async def record_bus_result(self, error: str | None) -> None:
        async with self._transaction() as db:
            await record_link_result(db, "bus", error)

    async def bus_state(self) -> LinkState:
        return await link_state(self._all, "bus")

    async def _write(self, sql: str, params: tuple[object, ...]) -> None:
        async with self._transaction() as db:
            await db.execute(sql, params)
