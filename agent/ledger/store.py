"""The ledger: SQLite through aiosqlite, in WAL mode, one transaction per batch.

It is the only state that outlives the process. A batch's rows are committed after its sidecars are
on disk, so a crash before the commit means the batch is redone (with byte-identical outputs) and a
crash after it means nothing is redone.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from ..batch import FileStat, Root, Skip
from ..errors import AgentError, LedgerError
from ..metadata import FileRecord
from .migrations import LATEST_VERSION, MIGRATIONS

DbText = str | bytes


def to_db(text: str) -> DbText:
    """Paths go in as TEXT; a name that is not valid UTF-8 goes in as its raw bytes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
    return text


def from_db(value: DbText) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class CurrentFile:
    relpath: str
    size: int
    mtime_ns: int
    inode: int
    version: int
    sha256: str
    entity: str  # the File entity of the session crate, as JSON

    def quick_key(self) -> tuple[int, int, int]:
        return (self.size, self.mtime_ns, self.inode)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    relpath: str
    session: str
    error: AgentError | BaseException
    attempts: int
    stat: FileStat | None = None
    batch_id: str | None = None

    @property
    def category(self) -> str:
        return str(getattr(self.error, "category", "terminal"))

    @property
    def advice(self) -> str:
        return str(getattr(self.error, "advice", ""))


@dataclass(slots=True)
class BatchCommit:
    """Everything one batch changes in the ledger, applied in a single transaction."""

    root: Root
    session: str
    batch_id: str | None
    records: list[FileRecord]
    entities: dict[str, str]  # relpath -> crate entity JSON, for records
    touched: list[FileStat]  # same bytes as the current version; only the quick-check fields move
    dead: list[DeadLetter]


class Ledger:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        # One connection serves every worker; its transactions must not interleave.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Ledger:
        """Open (creating if needed) and migrate the ledger; refuse anything that is not ours."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
        ledger = cls(db, path)
        try:
            await ledger._configure()
            await ledger._migrate()
        except BaseException:
            await db.close()
            raise
        return ledger

    async def close(self) -> None:
        await self._db.close()

    async def _configure(self) -> None:
        try:
            await self._db.execute("PRAGMA busy_timeout = 5000")
            mode = await self._scalar("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode is durable against a process crash; a power cut may lose the last
            # commit, and then the batch is redone with identical outputs.
            await self._db.execute("PRAGMA synchronous = NORMAL")
            await self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"the ledger {self.path} is not a readable SQLite database ({exc}). It was not "
                "changed. Move it aside to start a new ledger (every file is then hashed again), "
                "or restore it from a backup."
            ) from exc
        if str(mode).lower() != "wal":
            raise LedgerError(f"the ledger {self.path} cannot use WAL mode (journal_mode={mode})")

    async def _migrate(self) -> None:
        tables = {row[0] for row in await self._all("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "schema_migrations" not in tables:
            raise LedgerError(
                f"{self.path} is an SQLite database but not a fair-agent ledger; not touching it"
            )
        await self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        current = await self._scalar("SELECT coalesce(max(version), 0) FROM schema_migrations")
        if current > LATEST_VERSION:
            raise LedgerError(
                f"the ledger {self.path} has schema version {current}, newer than this agent "
                f"understands ({LATEST_VERSION}); upgrade fair-agent"
            )
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            async with self.transaction():
                for statement in migration.statements:
                    await self._db.execute(statement)
                await self._db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (migration.version, migration.name, now_iso()),
                )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def schema_version(self) -> int:
        return int(await self._scalar("SELECT max(version) FROM schema_migrations"))

    async def ensure_root(self, path: Path, name: str) -> Root:
        absolute = str(await asyncio.to_thread(path.resolve))
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO roots (path, name, added_at) VALUES (?, ?, ?) ON CONFLICT (path) DO NOTHING",
                (absolute, name, now_iso()),
            )
            async with db.execute("SELECT id, name FROM roots WHERE path = ?", (absolute,)) as cur:
                row = await cur.fetchone()
        assert row is not None
        return Root(id=row[0], name=row[1], path=Path(absolute))

    async def current_files(self, root_id: int, session: str) -> dict[str, CurrentFile]:
        rows = await self._all(
            "SELECT relpath, size, mtime_ns, inode, version, sha256, entity FROM files "
            "WHERE root_id = ? AND session = ? AND status = 'current'",
            (root_id, to_db(session)),
        )
        return {from_db(r[0]): CurrentFile(from_db(r[0]), *r[1:]) for r in rows}

    async def dead_letter_signatures(self, root_id: int, session: str) -> dict[str, tuple[int, ...] | None]:
        """Dead letters of a session, with the stat they were recorded against (None: unknown)."""
        rows = await self._all(
            "SELECT relpath, size, mtime_ns, inode, ctime_ns FROM dead_letters "
            "WHERE root_id = ? AND session = ?",
            (root_id, to_db(session)),
        )
        return {from_db(r[0]): (tuple(r[1:]) if r[1] is not None else None) for r in rows}

    async def commit_batch(self, commit: BatchCommit) -> None:
        stamp = now_iso()
        root_id, session = commit.root.id, to_db(commit.session)
        async with self.transaction() as db:
            if commit.batch_id is not None and commit.records:
                await db.execute(
                    "INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        commit.batch_id,
                        root_id,
                        session,
                        len(commit.records),
                        sum(r.size for r in commit.records),
                        stamp,
                    ),
                )
            await db.executemany(
                "UPDATE files SET status = 'superseded' "
                "WHERE root_id = ? AND relpath = ? AND status = 'current'",
                [(root_id, to_db(r.relpath)) for r in commit.records],
            )
            await db.executemany(
                "INSERT INTO files (root_id, relpath, session, version, size, mtime_ns, inode, sha256, "
                "batch_id, sequence, status, entity, sidecar_written_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'current', ?, ?)",
                [
                    (
                        root_id,
                        to_db(r.relpath),
                        session,
                        r.version,
                        r.size,
                        r.mtime_ns,
                        r.inode,
                        r.sha256,
                        r.batch_id,
                        r.sequence,
                        commit.entities[r.relpath],
                        stamp,
                    )
                    for r in commit.records
                ],
            )
            await db.executemany(
                "UPDATE files SET size = ?, mtime_ns = ?, inode = ? "
                "WHERE root_id = ? AND relpath = ? AND status = 'current'",
                [(f.size, f.mtime_ns, f.inode, root_id, to_db(f.relpath)) for f in commit.touched],
            )
            done = [r.relpath for r in commit.records] + [f.relpath for f in commit.touched]
            await db.executemany(
                "DELETE FROM dead_letters WHERE root_id = ? AND relpath = ?",
                [(root_id, to_db(p)) for p in done],
            )
            for dead in commit.dead:
                await self._upsert_dead_letter(db, root_id, dead, stamp)

    async def _upsert_dead_letter(
        self, db: aiosqlite.Connection, root_id: int, dead: DeadLetter, stamp: str
    ) -> None:
        st = dead.stat
        await db.execute(
            "INSERT INTO dead_letters (root_id, session, relpath, batch_id, category, error_class, "
            "message, advice, attempts, size, mtime_ns, inode, ctime_ns, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (root_id, relpath) DO UPDATE SET batch_id = excluded.batch_id, "
            "category = excluded.category, error_class = excluded.error_class, "
            "message = excluded.message, advice = excluded.advice, "
            "attempts = dead_letters.attempts + excluded.attempts, size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, inode = excluded.inode, ctime_ns = excluded.ctime_ns, "
            "last_seen = excluded.last_seen",
            (
                root_id,
                to_db(dead.session),
                to_db(dead.relpath),
                dead.batch_id,
                dead.category,
                type(dead.error).__name__,
                str(dead.error),
                dead.advice,
                dead.attempts,
                st.size if st else None,
                st.mtime_ns if st else None,
                st.inode if st else None,
                st.ctime_ns if st else None,
                stamp,
                stamp,
            ),
        )

    async def record_skips(self, root_id: int, session: str, skips: Iterable[Skip]) -> None:
        rows = [(root_id, to_db(s.relpath), to_db(session), s.reason) for s in skips]
        if not rows:
            return
        stamp = now_iso()
        async with self.transaction() as db:
            await db.executemany(
                "INSERT INTO skipped VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (root_id, relpath) "
                "DO UPDATE SET reason = excluded.reason, last_seen = excluded.last_seen",
                [(*row, stamp, stamp) for row in rows],
            )

    async def _scalar(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        async with self._db.execute(sql, params) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def _all(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        async with self._db.execute(sql, params) as cur:
            return list(await cur.fetchall())
