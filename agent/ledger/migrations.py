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
)

LATEST_VERSION = MIGRATIONS[-1].version


async def current_version(db: aiosqlite.Connection) -> int:
    """The version the ledger has reached (0 for a new one), recording versions from now on."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    async with db.execute("SELECT coalesce(max(version), 0) FROM schema_migrations") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def pending_migrations(current: int) -> Iterator[Migration]:
    return (m for m in MIGRATIONS if m.version > current)


async def apply(db: aiosqlite.Connection, migration: Migration, stamp: str) -> None:
    """One migration, inside the caller's transaction, and its record."""
    for statement in migration.statements:
        await db.execute(statement)
    await db.execute(
        "INSERT INTO schema_migrations VALUES (?, ?, ?)", (migration.version, migration.name, stamp)
    )
