"""The outbox: what must still reach object storage, and what already did.

A batch's commit enqueues its new file versions and its session in the same transaction
(``enqueue``), so a committed batch is never left unshipped by a crash. The shipper reads the
outbox a page at a time, oldest first, and each transition it makes (upload id recorded, a part
done, stored and verified, a file that changed) is one transaction of its own. A row is a few
hundred bytes: a week's backlog of 100,000 files costs tens of megabytes of ledger, no memory.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Literal

import aiosqlite

from ..core.events import OutgoingEvent
from .announcements import record_events
from .encoding import from_db, now_iso, to_db
from .inthread import in_connection_thread
from .links import LinkState, link_state, record_link_result
from .rows import BatchCommit

#: How a file version that will never be shipped came to be so.
LostState = Literal["changed", "missing"]


@dataclass(frozen=True, slots=True)
class Shipment:
    """One file version waiting to be shipped."""

    id: int
    root_id: int
    root_path: Path
    root_name: str
    session: str
    relpath: str
    version: int
    sha256: str
    size: int
    attempts: int
    upload_id: str | None
    upload_part_size: int | None

    @property
    def path(self) -> Path:
        return self.root_path / self.relpath


@dataclass(frozen=True, slots=True)
class UploadedPart:
    """A part of a multipart upload the server confirmed."""

    number: int
    size: int
    etag: str
    checksum_sha256: str  # base64, as S3 writes it


@dataclass(frozen=True, slots=True)
class SessionDocuments:
    """A session whose data objects are all stored: its documents may follow."""

    root_id: int
    root_path: Path
    root_name: str
    session: str
    generation: int
    #: (shipment id, relpath) of current versions whose sidecar is not shipped yet.
    sidecars: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class Backlog:
    files: int
    bytes: int
    oldest_enqueued_at: str | None
    sessions: int  # sessions whose documents wait

    def oldest_age_s(self) -> float | None:
        """Seconds the oldest waiting file has waited (None: nothing waits)."""
        if self.oldest_enqueued_at is None:
            return None
        return max(0.0, time.time() - datetime.fromisoformat(self.oldest_enqueued_at).timestamp())


@dataclass(frozen=True, slots=True)
class Location:
    """Where one version of a file is (or is not yet) stored."""

    version: int
    state: str
    object_key: str | None
    stored_at: str | None
    verified_at: str | None
    last_error: str | None


def enqueue(db: sqlite3.Connection, commit: BatchCommit, stamp: str) -> None:
    """Inside the batch's transaction (in the connection's thread): its new versions, and its
    session's documents."""
    root_id, session = commit.root.id, to_db(commit.session)
    db.executemany(
        "INSERT INTO shipments (root_id, session, relpath, version, sha256, size, enqueued_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (root_id, session, to_db(r.relpath), r.version, r.sha256, r.stat.size, stamp)
            for r in commit.records
        ]
        # A derived table goes too, under its own sha256: the crate lists it, so the session's
        # documents wait for it as for the data.
        + [
            (root_id, session, to_db(path), r.version, r.derived["sha256"], r.derived["contentSize"], stamp)
            for r in commit.records
            if (path := r.derived_relpath) is not None
        ],
    )
    # Versions found again with the same bytes (a share back, a file copied over with itself)
    # whose shipment had been given up as changed or missing: they are shippable after all.
    db.executemany(
        "UPDATE shipments SET state = 'pending', last_error = NULL WHERE root_id = ? AND relpath = ? "
        "AND state IN ('changed', 'missing') AND version = (SELECT version FROM files "
        "WHERE root_id = ? AND relpath = ? AND status = 'current')",
        [(root_id, to_db(f.relpath), root_id, to_db(f.relpath)) for f in commit.touched],
    )
    if commit.records or commit.removed or commit.crate == "written":
        db.execute(
            "INSERT INTO session_shipments (root_id, session, generation, enqueued_at) VALUES (?, ?, 1, ?) "
            "ON CONFLICT (root_id, session) DO UPDATE SET generation = generation + 1, "
            "enqueued_at = CASE WHEN shipped_generation < generation THEN enqueued_at "
            "ELSE excluded.enqueued_at END",
            (root_id, session, stamp),
        )


_SHIPMENT_COLUMNS = (
    "s.id, s.root_id, r.path, r.name, s.session, s.relpath, s.version, s.sha256, s.size, s.attempts, "
    "s.upload_id, s.upload_part_size"
)


class Outbox:
    """The ledger's outbox tables; reached as ``ledger.outbox``."""

    def __init__(
        self,
        transaction: Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]],
        query: Callable[[str, tuple[object, ...]], Awaitable[list[sqlite3.Row]]],
    ) -> None:
        self._transaction = transaction
        self._all = query

    async def _write(self, sql: str, params: tuple[object, ...]) -> None:
        async with self._transaction() as db:
            await db.execute(sql, params)

    async def pending(self, limit: int, after_id: int = 0) -> list[Shipment]:
        """The oldest pending shipments after ``after_id``, at most ``limit`` of them."""
        rows = await self._all(
            f"SELECT {_SHIPMENT_COLUMNS} FROM shipments s JOIN roots r ON r.id = s.root_id "
            "WHERE s.state = 'pending' AND s.id > ? ORDER BY s.id LIMIT ?",
            (after_id, limit),
        )
        return [
            Shipment(r[0], r[1], Path(from_db(r[2])), from_db(r[3]), from_db(r[4]), from_db(r[5]), *r[6:])
            for r in rows
        ]

    async def enqueue_unshipped(self) -> int:
        """Enqueue current versions ingested before a store was configured; returns how many."""
        stamp = now_iso()
        async with self._transaction() as db:
            cur = await db.execute(
                "INSERT INTO shipments (root_id, session, relpath, version, sha256, size, enqueued_at) "
                "SELECT f.root_id, f.session, f.relpath, f.version, f.sha256, f.size, ? FROM files f "
                "WHERE f.status = 'current' AND NOT EXISTS (SELECT 1 FROM shipments s WHERE "
                "s.root_id = f.root_id AND s.relpath = f.relpath AND s.version = f.version) "
                "ORDER BY f.id",
                (stamp,),
            )
            added = cur.rowcount
            if added:
                await db.execute(
                    "INSERT INTO session_shipments (root_id, session, generation, enqueued_at) "
                    "SELECT DISTINCT root_id, session, 1, ? FROM shipments WHERE state = 'pending' "
                    "ON CONFLICT (root_id, session) DO UPDATE SET generation = generation + 1",
                    (stamp,),
                )
        return max(added, 0)

    async def record_upload(self, shipment_id: int, upload_id: str, part_size: int) -> None:
        """A multipart upload begun: recorded before its first part, so a restart continues it."""
        await self._write(
            "UPDATE shipments SET upload_id = ?, upload_part_size = ? WHERE id = ?",
            (upload_id, part_size, shipment_id),
        )

    async def record_part(self, shipment_id: int, upload_id: str, part: UploadedPart) -> None:
        await self._write(
            "INSERT OR REPLACE INTO shipment_parts VALUES (?, ?, ?, ?, ?, ?)",
            (shipment_id, upload_id, part.number, part.size, part.etag, part.checksum_sha256),
        )

    async def parts(self, shipment_id: int, upload_id: str) -> dict[int, UploadedPart]:
        rows = await self._all(
            "SELECT part_number, size, etag, checksum_sha256 FROM shipment_parts "
            "WHERE shipment_id = ? AND upload_id = ?",
            (shipment_id, upload_id),
        )
        return {r[0]: UploadedPart(*r) for r in rows}

    async def forget_upload(self, shipment_id: int) -> None:
        """The multipart upload is finished, aborted or gone from the server."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE shipments SET upload_id = NULL, upload_part_size = NULL WHERE id = ?", (shipment_id,)
            )
            await db.execute("DELETE FROM shipment_parts WHERE shipment_id = ?", (shipment_id,))

    async def mark_stored(self, shipment_id: int, object_key: str) -> None:
        """The server holds the bytes under ``object_key`` and its checksum of them was compared."""
        stamp = now_iso()
        async with self._transaction() as db:
            await db.execute(
                "UPDATE shipments SET state = 'stored', object_key = ?, stored_at = coalesce(stored_at, ?), "
                "verified_at = ?, last_error = NULL, upload_id = NULL, upload_part_size = NULL WHERE id = ?",
                (object_key, stamp, stamp, shipment_id),
            )
            await db.execute("DELETE FROM shipment_parts WHERE shipment_id = ?", (shipment_id,))

    async def mark_lost(self, shipment: Shipment, state: LostState, reason: str) -> None:
        """The file no longer holds the recorded bytes: it is never shipped under them.

        A changed file also loses its quick-check signature, so the next look hashes it again and
        ingests (and ships) it as a new version even if its size and times were kept.
        """
        async with self._transaction() as db:
            await db.execute(
                "UPDATE shipments SET state = ?, last_error = ?, upload_id = NULL, upload_part_size = NULL "
                "WHERE id = ?",
                (state, reason, shipment.id),
            )
            await db.execute("DELETE FROM shipment_parts WHERE shipment_id = ?", (shipment.id,))
            await db.execute(
                "UPDATE files SET mtime_ns = -1 WHERE root_id = ? AND relpath = ? AND version = ? "
                "AND status = 'current'",
                (shipment.root_id, to_db(shipment.relpath), shipment.version),
            )

    async def record_failure(self, shipment_ids: Collection[int], message: str) -> None:
        async with self._transaction() as db:
            await db.executemany(
                "UPDATE shipments SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                [(message, i) for i in shipment_ids],
            )

    async def sessions_ready(self, limit: int) -> list[SessionDocuments]:
        """Sessions with documents to ship whose data objects are all stored and whose crate is
        written (a large session's crate waits for its last part), oldest first: a crate in the
        store never names an object that is not there."""
        rows = await self._all(
            "SELECT q.root_id, r.path, r.name, q.session, q.generation FROM session_shipments q "
            "JOIN roots r ON r.id = q.root_id WHERE q.shipped_generation < q.generation "
            "AND NOT EXISTS (SELECT 1 FROM shipments s WHERE s.root_id = q.root_id "
            "AND s.session = q.session AND s.state = 'pending') "
            "AND NOT EXISTS (SELECT 1 FROM pending_crates p WHERE p.root_id = q.root_id "
            "AND p.session = q.session) "
            # A current version that changed or vanished before it was shipped: its crate names
            # bytes the store will never hold, until the file is ingested again (or its removal).
            "AND NOT EXISTS (SELECT 1 FROM shipments s JOIN files f ON f.root_id = s.root_id "
            "AND f.relpath = s.relpath AND f.version = s.version AND f.status = 'current' "
            "WHERE s.root_id = q.root_id AND s.session = q.session AND s.state IN ('changed', 'missing')) "
            "ORDER BY q.enqueued_at LIMIT ?",
            (limit,),
        )
        ready = []
        for root_id, path, name, session, generation in rows:
            sidecars = await self._all(
                "SELECT s.id, s.relpath FROM shipments s JOIN files f ON f.root_id = s.root_id "
                "AND f.relpath = s.relpath AND f.version = s.version AND f.status = 'current' "
                "WHERE s.root_id = ? AND s.session = ? AND s.state = 'stored' "
                "AND s.sidecar_stored_at IS NULL",
                (root_id, session),
            )
            ready.append(
                SessionDocuments(
                    root_id,
                    Path(from_db(path)),
                    from_db(name),
                    from_db(session),
                    generation,
                    tuple((i, from_db(p)) for i, p in sidecars),
                )
            )
        return ready

    async def mark_session_shipped(
        self, documents: SessionDocuments, events: Collection[OutgoingEvent] = ()
    ) -> None:
        """The session's documents are stored; ``events`` announce its stored objects."""
        stamp = now_iso()
        async with self._transaction() as db:
            await in_connection_thread(db, partial(record_events, root_id=documents.root_id, events=events))
            await db.executemany(
                "UPDATE shipments SET sidecar_stored_at = ? WHERE id = ?",
                [(stamp, i) for i, _ in documents.sidecars],
            )
            await db.execute(
                "UPDATE session_shipments SET shipped_generation = ?, shipped_at = ? "
                "WHERE root_id = ? AND session = ?",
                (documents.generation, stamp, documents.root_id, to_db(documents.session)),
            )

    async def not_stored(self, hashes: Collection[str]) -> set[str]:
        """Which of these hashes no stored shipment holds."""
        wanted, stored = sorted(hashes), set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = await self._all(
                f"SELECT DISTINCT sha256 FROM shipments WHERE state = 'stored' "
                f"AND sha256 IN ({', '.join('?' * len(chunk))})",
                tuple(chunk),
            )
            stored |= {r[0] for r in rows}
        return set(wanted) - stored

    async def backlog(self) -> Backlog:
        rows = await self._all(
            "SELECT count(*), coalesce(sum(size), 0), min(enqueued_at) FROM shipments "
            "WHERE state = 'pending'",
            (),
        )
        sessions = await self._all(
            "SELECT count(*) FROM session_shipments WHERE shipped_generation < generation", ()
        )
        files, size, oldest = rows[0]
        return Backlog(files, size, oldest, sessions[0][0])

    async def totals(self) -> dict[str, dict[str, int]]:
        """Files and bytes per shipment state."""
        rows = await self._all(
            "SELECT state, count(*), coalesce(sum(size), 0) FROM shipments GROUP BY state", ()
        )
        return {state: {"files": n, "bytes": size} for state, n, size in rows}

    async def record_store_result(self, error: str | None) -> None:
        """The store's last failure in words (None: it just worked)."""
        async with self._transaction() as db:
            await record_link_result(db, "store", error)

    async def store_state(self) -> LinkState:
        return await link_state(self._all, "store")

    async def locations(self, root_id: int, relpath: str) -> dict[int, Location]:
        """Each shipped (or waiting) version of a file, by version number."""
        rows = await self._all(
            "SELECT version, state, object_key, stored_at, verified_at, last_error FROM shipments "
            "WHERE root_id = ? AND relpath = ? ORDER BY version",
            (root_id, to_db(relpath)),
        )
        return {r[0]: Location(*r) for r in rows}
