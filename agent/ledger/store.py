"""The ledger: SQLite through aiosqlite, in WAL mode, one transaction per batch.

It is the only state that outlives the process. A batch's rows are committed after its sidecars are
on disk, so a crash before the commit means the batch is redone (with byte-identical outputs) and a
crash after it means nothing is redone.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite

from ..core.batch import Root, Skip
from ..core.drift import Baseline
from ..core.errors import REJECTION_CLASS_NAMES, LedgerBusyError, LedgerError
from ..core.naming import is_within
from .announcements import Announcements
from .commit import write_batch
from .derived import DerivedOutputs
from .drift import BASELINE_COLUMNS, DriftReport, baseline_from_row, save_baseline
from .encoding import below, from_db, now_iso, to_db
from .inthread import in_connection_thread, in_transaction, roll_back_if_open
from .migrations import LATEST_VERSION, apply, current_version, pending_migrations
from .outbox import Outbox
from .rows import VERSION_COLUMNS, BatchCommit, CurrentFile, DeadLetterRow, FileVersion

BUSY_TIMEOUT_MS = 5000


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


async def _connect(database: str | Path, **kwargs: Any) -> aiosqlite.Connection:
    """aiosqlite.connect, closed again if the caller is cancelled meanwhile: the connection opens
    in its own thread, which would otherwise finish after the event loop has closed (an
    interrupted start-up, a scan's process stopped as it starts)."""
    connecting = asyncio.ensure_future(aiosqlite.connect(database, **kwargs))
    try:
        return await asyncio.shield(connecting)
    except asyncio.CancelledError:
        with suppress(Exception):
            await (await connecting).close()
        raise


class Ledger:
    def __init__(self, db: aiosqlite.Connection, path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self._db = db
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        # One connection serves every worker; its transactions must not interleave.
        self._write_lock = asyncio.Lock()
        self.outbox = Outbox(self.transaction, self._all)
        self.announcements = Announcements(self.transaction, self._all)
        self.derived = DerivedOutputs(self.transaction, self._all)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> AsyncIterator[Ledger]:
        """``async with Ledger.open(path) as ledger``: open (creating if needed) and migrate the
        ledger, refusing anything that is not ours; closed when the block ends.

        ``busy_timeout_ms``: how long a write waits for another writer's lock before it counts as
        a (retryable) LedgerBusyError.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await _connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
        try:
            ledger = cls(db, path, busy_timeout_ms)
            await ledger._configure()
            await ledger._migrate()
            await ledger._check_writable()
            yield ledger
        finally:
            await db.close()

    @classmethod
    @asynccontextmanager
    async def open_readonly(cls, path: Path) -> AsyncIterator[Ledger]:
        """As ``open``, for reading only (status, inspect, verify): nothing is created, migrated or
        locked. A reader without permission is told so, not that the ledger is damaged.
        """
        if not await asyncio.to_thread(path.exists):
            raise LedgerError(f"no ledger at {path}: nothing has been ingested with this state directory")
        if not await asyncio.to_thread(os.access, path, os.R_OK):
            raise LedgerError(
                f"permission denied reading the ledger {path}; run as root, or as the service's "
                "user or a member of its group"
            )
        try:
            uri = (await asyncio.to_thread(path.absolute)).as_uri()
            db = await _connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the ledger {path}: {exc}") from exc
        try:
            ledger = cls(db, path)
            await ledger._check_readable()
            yield ledger
        finally:
            await db.close()

    async def _check_readable(self) -> None:
        try:
            await self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = await self._scalar("SELECT max(version) FROM schema_migrations")
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the ledger {self.path} ({exc}); it was not changed") from exc
        if version != LATEST_VERSION:
            raise LedgerError(
                f"the ledger {self.path} has schema version {version}, this agent reads {LATEST_VERSION}: "
                "start the service (or run a scan) once to bring it up to date"
            )

    async def _configure(self) -> None:
        try:
            await self._db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            # Before anything is changed (the journal mode is written into the file): a database
            # that is not ours stays exactly as it was.
            rows = await self._db.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = {row[0] for row in rows}
            if tables and "schema_migrations" not in tables:
                raise LedgerError(
                    f"{self.path} is an SQLite database but not a fair-agent ledger; not touching it"
                )
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
        current = await current_version(self._db)
        if current > LATEST_VERSION:
            raise LedgerError(
                f"the ledger {self.path} has schema version {current}, newer than this agent "
                f"understands ({LATEST_VERSION}); upgrade fair-agent"
            )
        for migration in pending_migrations(current):
            async with self.transaction() as db:
                await apply(db, migration, now_iso())

    async def _check_writable(self) -> None:
        try:
            async with self.transaction():
                pass
        except LedgerBusyError as exc:
            raise LedgerError(
                f"the ledger {self.path} is locked by another process ({exc}). Nothing was changed. "
                "Find the process holding it (fuser or lsof on the file) and stop it; a second "
                "fair-agent on the same state directory is refused before it gets this far."
            ) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error or cancellation.

        Writers queue on a lock (they share one connection). Readers do not: a read by one worker
        may see another worker's uncommitted rows, but workers never share a session, and every
        read is about one session.
        """
        async with self._write_lock:
            with self._named_errors():
                try:
                    await self._db.execute("BEGIN IMMEDIATE")
                    yield self._db
                    await self._db.execute("COMMIT")
                except BaseException:
                    # Shielded: a cancelled batch must not leave the shared connection inside a
                    # transaction (every later BEGIN would fail).
                    await asyncio.shield(self._rollback())
                    raise

    async def _in_one_transaction(self, work: Callable[[sqlite3.Connection], None]) -> None:
        """As ``transaction``, with its statements written as plain sqlite3 calls, and all of it
        (BEGIN to COMMIT) in one hand-off to the connection's thread (see inthread).

        Cancelled, it commits nothing (unless COMMIT had already run), and keeps the write lock
        until the thread has finished with it: the next writer never begins inside it."""
        abandoned = threading.Event()
        async with self._write_lock:
            with self._named_errors():
                done = asyncio.ensure_future(
                    in_connection_thread(self._db, partial(in_transaction, work=work, abandoned=abandoned))
                )
                try:
                    await asyncio.shield(done)
                except asyncio.CancelledError:
                    abandoned.set()
                    with suppress(Exception):
                        await done  # rolled back (Abandoned), or committed just before
                    raise

    @contextmanager
    def _named_errors(self) -> Iterator[None]:
        """A locked ledger as a (retryable) LedgerBusyError, a broken one as damaged."""
        try:
            yield
        except sqlite3.Error as exc:
            if _is_busy(exc):
                raise LedgerBusyError(
                    f"the ledger is locked by another writer (waited {self.busy_timeout_ms / 1000:.1f} s)"
                ) from exc
            if isinstance(exc, sqlite3.DatabaseError):
                raise self.damaged(exc) from exc
            raise

    async def _rollback(self) -> None:
        # In the connection's thread: a BEGIN still queued there when the caller was cancelled
        # has run by then, and is rolled back too.
        await in_connection_thread(self._db, roll_back_if_open)

    async def schema_version(self) -> int:
        return int(await self._scalar("SELECT max(version) FROM schema_migrations"))

    async def ensure_root(self, path: Path, name: str) -> Root:
        """The ledger's record of a watch root, registered on first sight (the only write here)."""
        absolute = to_db(str(await asyncio.to_thread(path.resolve)))
        rows = await self._all("SELECT id, name FROM roots WHERE path = ?", (absolute,))
        if not rows:
            async with self.transaction() as db:
                await db.execute(
                    "INSERT INTO roots (path, name, added_at) VALUES (?, ?, ?) ON CONFLICT (path) DO NOTHING",
                    (absolute, to_db(name), now_iso()),
                )
            rows = await self._all("SELECT id, name FROM roots WHERE path = ?", (absolute,))
        return Root(id=rows[0][0], name=from_db(rows[0][1]), path=Path(from_db(absolute)))

    async def current_files(
        self, root_id: int, session: str, relpaths: Collection[str] | None = None
    ) -> dict[str, CurrentFile]:
        """The session's current versions (of ``relpaths`` only, when given)."""
        sql = (
            "SELECT relpath, size, mtime_ns, ctime_ns, inode, version, sha256 FROM files "
            "WHERE root_id = ? AND session = ? AND status = 'current'"
        )
        rows = await self._in(sql, (root_id, to_db(session)), relpaths)
        return {from_db(r[0]): CurrentFile(from_db(r[0]), tuple(r[1:5]), *r[5:]) for r in rows}

    async def session_entities(self, root_id: int, session: str) -> AsyncIterator[tuple[str, str]]:
        """(path, crate entities as JSON) of the session's current files, read a chunk at a time."""
        async with self._db.execute(
            "SELECT relpath, entity FROM files WHERE root_id = ? AND session = ? AND status = 'current'",
            (root_id, to_db(session)),
        ) as cur:
            while rows := await cur.fetchmany(1000):
                for relpath, entity in rows:
                    yield from_db(relpath), entity

    async def crate_pending(self, root_id: int, session: str) -> bool:
        """Whether parts of a large session were committed but its crate not written yet."""
        return bool(
            await self._all(
                "SELECT 1 FROM pending_crates WHERE root_id = ? AND session = ?", (root_id, to_db(session))
            )
        )

    async def current_under(self, root_id: int, folder: str) -> list[FileVersion]:
        """The current version of every ingested file at or below ``folder`` ("" for the whole root)."""
        # A range on the index for text paths ('0' follows '/'); names stored as bytes are checked below.
        rows = await self._all(
            f"SELECT {VERSION_COLUMNS} FROM files f WHERE f.root_id = ? AND f.status = 'current' AND "
            "(? = '' OR f.relpath = ? OR (f.relpath >= ? AND f.relpath < ?) OR typeof(f.relpath) = 'blob') "
            "ORDER BY f.relpath",
            (root_id, to_db(folder), to_db(folder), *below(folder)),
        )
        versions = [FileVersion.from_row(r) for r in rows]
        return [v for v in versions if is_within(v.relpath, folder)]

    async def file_versions(self, root_id: int, relpath: str) -> list[FileVersion]:
        """Every version of one file the ledger knows, oldest first."""
        rows = await self._all(
            f"SELECT {VERSION_COLUMNS} FROM files f WHERE f.root_id = ? AND f.relpath = ? ORDER BY f.version",
            (root_id, to_db(relpath)),
        )
        return [FileVersion.from_row(r) for r in rows]

    async def latest_versions(self, root_id: int, relpaths: Collection[str]) -> dict[str, int]:
        """The highest version of each of these paths ever ingested, in any session.

        By path, not by session: a rule that groups sessions anew moves a file to another session,
        and its next version must still follow the last one.
        """
        rows = await self._in(
            "SELECT relpath, max(version) FROM files WHERE root_id = ?", (root_id,), relpaths, "relpath"
        )
        return {from_db(r[0]): r[1] for r in rows}

    async def _in(
        self,
        sql: str,
        params: tuple[object, ...],
        relpaths: Collection[str] | None,
        group_by: str | None = None,
    ) -> list[sqlite3.Row]:
        """``sql`` for all rows (``relpaths`` None), or for those paths, a few hundred at a time."""
        tail = f" GROUP BY {group_by}" if group_by else ""
        if relpaths is None:
            return await self._all(sql + tail, params)
        paths, rows = sorted(relpaths), []
        for start in range(0, len(paths), 500):
            chunk = [to_db(p) for p in paths[start : start + 500]]
            marks = ", ".join("?" * len(chunk))
            rows += await self._all(f"{sql} AND relpath IN ({marks}){tail}", (*params, *chunk))
        return rows

    async def rejected_files(self, root_id: int, session: str) -> set[str]:
        """Files of the session held back because its rules rejected the session."""
        rows = await self._all(
            "SELECT relpath FROM dead_letters WHERE root_id = ? AND session = ? AND error_class IN "
            f"({', '.join('?' * len(REJECTION_CLASS_NAMES))})",
            (root_id, to_db(session), *sorted(REJECTION_CLASS_NAMES)),
        )
        return {from_db(r[0]) for r in rows}

    async def dead_letter_signatures(self, root_id: int, session: str) -> dict[str, tuple[int, ...] | None]:
        """Dead letters of a session, with the stat they were recorded against (None: unknown)."""
        rows = await self._all(
            "SELECT relpath, size, mtime_ns, ctime_ns, inode FROM dead_letters "
            "WHERE root_id = ? AND session = ?",
            (root_id, to_db(session)),
        )
        return {from_db(r[0]): (tuple(r[1:]) if r[1] is not None else None) for r in rows}

    async def commit_batch(self, commit: BatchCommit) -> None:
        """Everything one batch changes, in one transaction."""
        # Stamped in the transaction, not before its wait for the lock: stamps follow commit order.
        await self._in_one_transaction(lambda connection: write_batch(connection, commit, now_iso()))

    async def roots(self) -> list[Root]:
        rows = await self._all("SELECT id, name, path FROM roots ORDER BY id")
        return [Root(id=r[0], name=from_db(r[1]), path=Path(from_db(r[2]))) for r in rows]

    async def dead_letters(
        self, *, batch_id: str | None = None, root_id: int | None = None, session: str | None = None
    ) -> list[DeadLetterRow]:
        """Dead letters, optionally only those of one batch, or of one session of one root."""
        sql = (
            "SELECT id, root_id, session, relpath, batch_id, category, error_class, message, advice, "
            "attempts, first_seen, last_seen FROM dead_letters WHERE 1 = 1"
        )
        params: list[object] = []
        if batch_id is not None:
            sql += " AND batch_id = ?"
            params.append(batch_id)
        if root_id is not None:
            sql += " AND root_id = ?"
            params.append(root_id)
        if session is not None:
            sql += " AND session = ?"
            params.append(to_db(session))
        rows = await self._all(sql + " ORDER BY root_id, relpath", tuple(params))
        return [DeadLetterRow(r[0], r[1], from_db(r[2]), from_db(r[3]), *r[4:]) for r in rows]

    async def request_replay(self, ids: Iterable[int]) -> None:
        """Forget the stat each dead letter failed with, so the next look tries the file again."""
        async with self.transaction() as db:
            await db.executemany(
                "UPDATE dead_letters SET size = NULL, mtime_ns = NULL, ctime_ns = NULL, inode = NULL "
                "WHERE id = ?",
                [(i,) for i in ids],
            )

    async def summary(self) -> dict[str, int]:
        """Counts for `fair-agent status`."""
        counts = {}
        for name, sql in (
            ("files", "SELECT count(*) FROM files WHERE status = 'current'"),
            ("file_versions", "SELECT count(*) FROM files"),
            ("bytes", "SELECT coalesce(sum(size), 0) FROM files WHERE status = 'current'"),
            ("batches", "SELECT count(*) FROM batches"),
            ("dead_letters", "SELECT count(*) FROM dead_letters"),
            ("skipped", "SELECT count(*) FROM skipped"),
        ):
            counts[name] = int(await self._scalar(sql))
        return counts

    async def recent_batches(self, limit: int = 10) -> list[tuple[str, str, str, int, int, str]]:
        rows = await self._all(
            "SELECT b.batch_id, r.name, b.session, b.file_count, b.byte_count, b.committed_at "
            "FROM batches b JOIN roots r ON r.id = b.root_id ORDER BY b.committed_at DESC LIMIT ?",
            (limit,),
        )
        return [(r[0], from_db(r[1]), from_db(r[2]), r[3], r[4], r[5]) for r in rows]

    async def drift_baseline(self, dataset_type: str) -> Baseline | None:
        rows = await self._all(
            f"SELECT {BASELINE_COLUMNS} FROM drift_baselines WHERE dataset_type = ?", (dataset_type,)
        )
        return baseline_from_row(rows[0]) if rows else None

    async def drift_baselines(self) -> list[Baseline]:
        rows = await self._all(f"SELECT {BASELINE_COLUMNS} FROM drift_baselines ORDER BY dataset_type")
        return [baseline_from_row(r) for r in rows]

    async def drift_reports(
        self, dataset_type: str | None = None, limit: int = 20, *, session: str | None = None
    ) -> list[DriftReport]:
        """The latest drift reports (of one dataset type, of one session), newest first."""
        rows = await self._all(
            "SELECT id, dataset_type, root_id, session, policy, diff, shape, reported_at FROM drift_reports "
            "WHERE (? IS NULL OR dataset_type = ?) AND (? IS NULL OR session = ?) ORDER BY id DESC LIMIT ?",
            (dataset_type, dataset_type, session, None if session is None else to_db(session), limit),
        )
        return [
            DriftReport(r[0], r[1], r[2], from_db(r[3]), r[4], json.loads(r[5]), json.loads(r[6]), r[7])
            for r in rows
        ]

    async def accept_drift(
        self, dataset_type: str, learn_sessions: int, session: str | None = None
    ) -> Baseline | None:
        """Accept the export's new shape: the files of the latest report (of ``session``, if
        given) become the baseline, each learnt as a file, so keys some of them lack are optional.

        Without a report, the baseline is forgotten and learnt again from the next sessions.
        Returns the new baseline (None: learning again).
        """
        reports = await self.drift_reports(dataset_type, limit=1, session=session)
        async with self.transaction() as db:
            await db.execute("DELETE FROM drift_baselines WHERE dataset_type = ?", (dataset_type,))
            await db.execute("DELETE FROM drift_sessions WHERE dataset_type = ?", (dataset_type,))
            if not reports:
                return None
            baseline = Baseline(dataset_type, sessions_seen=learn_sessions, sessions_needed=learn_sessions)
            for shape in reports[0].shapes:
                baseline.learn(shape)
            await in_connection_thread(db, partial(save_baseline, baseline=baseline, stamp=now_iso()))
            return baseline

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
        rows = await self._all(sql, params)
        return rows[0][0] if rows else None

    async def _all(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        try:
            # One round trip to the ledger's thread, not three (execute, fetch, close the cursor):
            # every hop is a thread hand-off, and batches make several reads each.
            return list(await self._db.execute_fetchall(sql, params))
        except sqlite3.DatabaseError as exc:
            raise self.damaged(exc) from exc

    def damaged(self, exc: sqlite3.DatabaseError) -> Exception:
        """What a database error means: a busy ledger is the caller's to retry; anything else
        but an operational error is damage, said in words, not a traceback."""
        if isinstance(exc, sqlite3.OperationalError):
            return exc
        return LedgerError(
            f"the ledger {self.path} is damaged ({exc}). Stop the agent, then move the ledger aside to "
            "start a new one (every file is then hashed again, outputs stay as they are), or restore "
            "it from a backup."
        )
