"""The ledger's schema, as an ordered list of migrations recorded in the database itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import aiosqlite


class Migration(NamedTuple):
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "files, batches, dead letters and skips",
        (
            """CREATE TABLE roots (
                id INTEGER PRIMARY KEY,
                path TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                added_at TEXT NOT NULL
            )""",
            # One row per batch id. The id is deterministic, so a batch redone after a crash cannot
            # produce a second row; a later batch with the very same files and bytes (a file
            # changed and changed back) shares the first one's row, and its files rows carry
            # their own commit time.
            """CREATE TABLE batches (
                batch_id TEXT PRIMARY KEY,
                root_id INTEGER NOT NULL REFERENCES roots(id),
                session NOT NULL,
                file_count INTEGER NOT NULL,
                byte_count INTEGER NOT NULL,
                committed_at TEXT NOT NULL
            )""",
            # Every version of every ingested file; at most one is 'current' per path.
            """CREATE TABLE files (
                id INTEGER PRIMARY KEY,
                root_id INTEGER NOT NULL REFERENCES roots(id),
                relpath NOT NULL,
                session NOT NULL,
                version INTEGER NOT NULL,
                size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL,
                ctime_ns INTEGER NOT NULL,
                inode INTEGER NOT NULL,
                sha256 TEXT NOT NULL,
                batch_id TEXT NOT NULL REFERENCES batches(batch_id),
                sequence INTEGER NOT NULL,
                -- 'removed': the file was ingested, then deleted from the folder.
                status TEXT NOT NULL CHECK (status IN ('current', 'superseded', 'removed')),
                entity TEXT NOT NULL,
                sidecar_written_at TEXT NOT NULL,
                UNIQUE (root_id, relpath, version)
            )""",
            "CREATE UNIQUE INDEX files_one_current ON files(root_id, relpath) WHERE status = 'current'",
            "CREATE INDEX files_current_by_session ON files(root_id, session) WHERE status = 'current'",
            """CREATE TABLE dead_letters (
                id INTEGER PRIMARY KEY,
                root_id INTEGER NOT NULL REFERENCES roots(id),
                session NOT NULL,
                relpath NOT NULL,
                batch_id TEXT,
                category TEXT NOT NULL,
                error_class TEXT NOT NULL,
                message TEXT NOT NULL,
                advice TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                size INTEGER,
                mtime_ns INTEGER,
                inode INTEGER,
                ctime_ns INTEGER,
                first_seen TEXT NOT NULL,
                last_seen TEXT NOT NULL,
                UNIQUE (root_id, relpath)
            )""",
            "CREATE INDEX dead_letters_by_session ON dead_letters(root_id, session)",
            """CREATE TABLE skipped (
                root_id INTEGER NOT NULL REFERENCES roots(id),
                relpath NOT NULL,
                session NOT NULL,
                reason TEXT NOT NULL,
                first_seen TEXT NOT NULL,
                last_seen TEXT NOT NULL,
                PRIMARY KEY (root_id, relpath)
            )""",
        ),
    ),
    Migration(
        2,
        "drift baselines and reports",
        (
            # One baseline per dataset type, learnt from its first accepted sessions; ``keys`` is
            # JSON: key -> {"type": ..., "files": how many learnt files had it}.
            """CREATE TABLE drift_baselines (
                dataset_type TEXT PRIMARY KEY,
                sessions_seen INTEGER NOT NULL,
                sessions_needed INTEGER NOT NULL,
                files_seen INTEGER NOT NULL,
                keys TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            # The sessions a baseline learnt from: a session's later batches do not count it twice.
            """CREATE TABLE drift_sessions (
                dataset_type TEXT NOT NULL,
                root_id INTEGER NOT NULL REFERENCES roots(id),
                session NOT NULL,
                PRIMARY KEY (dataset_type, root_id, session)
            )""",
            """CREATE TABLE drift_reports (
                id INTEGER PRIMARY KEY,
                dataset_type TEXT NOT NULL,
                root_id INTEGER NOT NULL REFERENCES roots(id),
                session NOT NULL,
                batch_id TEXT,
                policy TEXT NOT NULL,
                diff TEXT NOT NULL,
                shape TEXT NOT NULL,
                reported_at TEXT NOT NULL
            )""",
            "CREATE INDEX drift_reports_by_type ON drift_reports(dataset_type, id)",
        ),
    ),
    Migration(
        3,
        "sessions whose crate waits for the last part of a large session",
        (
            # A session of more files than batch_max_files is committed part by part; the crate is
            # written with the last part. Until then its row here says the crate is behind.
            """CREATE TABLE pending_crates (
                root_id INTEGER NOT NULL REFERENCES roots(id),
                session NOT NULL,
                since TEXT NOT NULL,
                PRIMARY KEY (root_id, session)
            )""",
        ),
    ),
    Migration(
        4,
        "the outbox of files and session documents to ship to object storage",
        (
            # One row per ingested version to ship, written in the batch's own transaction (a
            # transactional outbox). state: pending -> stored (the server verified the bytes), or
            # changed / missing (the file no longer holds those bytes; never stored under them).
            """CREATE TABLE shipments (
                id INTEGER PRIMARY KEY,
                root_id INTEGER NOT NULL REFERENCES roots(id),
                session NOT NULL,
                relpath NOT NULL,
                version INTEGER NOT NULL,
                sha256 TEXT NOT NULL,
                size INTEGER NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'stored', 'changed', 'missing')),
                enqueued_at TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                -- A multipart upload in progress, recorded before its first part is sent.
                upload_id TEXT,
                upload_part_size INTEGER,
                object_key TEXT,
                stored_at TEXT,
                verified_at TEXT,
                sidecar_stored_at TEXT,
                UNIQUE (root_id, relpath, version)
            )""",
            "CREATE INDEX shipments_pending ON shipments(id) WHERE state = 'pending'",
            "CREATE INDEX shipments_by_session ON shipments(root_id, session, state)",
            "CREATE INDEX shipments_by_sha256 ON shipments(sha256) WHERE state = 'stored'",
            # The backlog's count, bytes and age read from the index alone.
            "CREATE INDEX shipments_backlog ON shipments(enqueued_at, size) WHERE state = 'pending'",
            # Each part of a multipart upload as the server confirmed it: ListParts does not return
            # part checksums on every server, and completing the upload needs them.
            """CREATE TABLE shipment_parts (
                shipment_id INTEGER NOT NULL REFERENCES shipments(id) ON DELETE CASCADE,
                upload_id TEXT NOT NULL,
                part_number INTEGER NOT NULL,
                size INTEGER NOT NULL,
                etag TEXT NOT NULL,
                checksum_sha256 TEXT NOT NULL,
                PRIMARY KEY (shipment_id, upload_id, part_number)
            )""",
            # A session whose documents (crate, preview, sidecars) must be shipped once all its
            # data objects are stored. ``generation`` counts the batches that changed it, so a
            # shipping that raced with a new batch does not mark the newer documents shipped.
            """CREATE TABLE session_shipments (
                root_id INTEGER NOT NULL REFERENCES roots(id),
                session NOT NULL,
                generation INTEGER NOT NULL,
                enqueued_at TEXT NOT NULL,
                shipped_generation INTEGER NOT NULL DEFAULT 0,
                shipped_at TEXT,
                PRIMARY KEY (root_id, session)
            )""",
            "CREATE INDEX session_shipments_pending ON session_shipments(enqueued_at) "
            "WHERE shipped_generation < generation",
            # Per link to the centre ('store', 'bus'): its last failure in words, and the last
            # success, for `status`.
            """CREATE TABLE link_state (
                link TEXT PRIMARY KEY,
                last_error TEXT,
                last_error_at TEXT,
                last_success_at TEXT
            )""",
        ),
    ),
    Migration(
        5,
        "the outbox of events announced to the hub, and their receipts",
        (
            # An event for the bus, written in the transaction that made it (a committed batch, a
            # session's objects stored). Published oldest first with its message id; the hub's
            # receipt closes it (and empties its payload: a receipted event is kept as a record).
            """CREATE TABLE events (
                id INTEGER PRIMARY KEY,
                msg_id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL,
                subject TEXT NOT NULL,
                payload BLOB NOT NULL,
                created_at TEXT NOT NULL,
                published_at TEXT,
                publish_count INTEGER NOT NULL DEFAULT 0,
                receipt_at TEXT,
                -- The bus refused it for good (larger than the server allows): why, in words.
                refused TEXT,
                last_error TEXT
            )""",
            "CREATE INDEX events_unpublished ON events(id) WHERE published_at IS NULL AND refused IS NULL",
            "CREATE INDEX events_awaiting_receipt ON events(published_at) "
            "WHERE published_at IS NOT NULL AND receipt_at IS NULL",
            # Which event announced which file version, as ingested ('batch') or as stored ('stored').
            """CREATE TABLE announced_files (
                root_id INTEGER NOT NULL REFERENCES roots(id),
                relpath NOT NULL,
                version INTEGER NOT NULL,
                kind TEXT NOT NULL,
                event_id INTEGER NOT NULL REFERENCES events(id),
                PRIMARY KEY (root_id, relpath, version, kind)
            )""",
            "CREATE INDEX announced_by_event ON announced_files(event_id)",
        ),
    ),
    Migration(
        6,
        "derived tables the agent wrote",
        (
            # Every derived table (<file>.tidy.parquet) the agent put at a path, by its bytes: a file
            # found there later is replaced only if it is one of these. Recorded before the rename.
            """CREATE TABLE derived_outputs (
                root_id INTEGER NOT NULL REFERENCES roots(id),
                relpath NOT NULL,
                sha256 TEXT NOT NULL,
                written_at TEXT NOT NULL,
                PRIMARY KEY (root_id, relpath, sha256)
            ) WITHOUT ROWID""",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


async def current_version(db: aiosqlite.Connection) -> int:
    """The version the ledger has reached (0 for a new one), recording versions from now on."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    rows = list(await db.execute_fetchall("SELECT coalesce(max(version), 0) FROM schema_migrations"))
    return int(rows[0][0]) if rows else 0


def pending_migrations(current: int) -> Iterator[Migration]:
    return (m for m in MIGRATIONS if m.version > current)


async def apply(db: aiosqlite.Connection, migration: Migration, stamp: str) -> None:
    """One migration, inside the caller's transaction, and its record."""
    for statement in migration.statements:
        await db.execute(statement)
    await db.execute(
        "INSERT INTO schema_migrations VALUES (?, ?, ?)", (migration.version, migration.name, stamp)
    )
