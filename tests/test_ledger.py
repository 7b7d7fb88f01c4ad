"""The ledger: migrations recorded in the database, refusal to touch what is not ours, and a
batch's commit whole or not at all."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from agent.core.batch import Root
from agent.core.errors import LedgerBusyError, LedgerError
from agent.core.records import DeadLetter
from agent.ledger import Ledger
from agent.ledger.inthread import in_connection_thread
from agent.ledger.migrations import LATEST_VERSION
from agent.ledger.rows import BatchCommit

from .conftest import opened_db


async def test_new_ledger_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite3"
    async with Ledger.open(path) as ledger:
        assert await ledger.schema_version() == LATEST_VERSION
    with opened_db(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        versions = db.execute("SELECT version FROM schema_migrations").fetchall()
        assert versions == [(v,) for v in range(1, LATEST_VERSION + 1)]
    async with Ledger.open(path):  # reopening migrates nothing twice
        pass


async def test_roots_are_registered_once(tmp_path: Path) -> None:
    async with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        a = await ledger.ensure_root(tmp_path / "drop", "drop")
        b = await ledger.ensure_root(tmp_path / "drop", "drop")
        assert a == b


async def test_corrupt_ledger_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"this is not a database at all" * 100)
    before = path.read_bytes()
    with pytest.raises(LedgerError, match="not a readable SQLite database"):
        async with Ledger.open(path):
            pass
    assert path.read_bytes() == before


async def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    with opened_db(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(LedgerError, match="not a fair-agent ledger"):
        async with Ledger.open(path):
            pass


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    async with Ledger.open(path):
        pass
    with opened_db(path) as db:
        db.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    with pytest.raises(LedgerError, match="newer than this agent"):
        async with Ledger.open(path):
            pass


# --- a batch's commit: one transaction, in one hand-off to the connection's thread -------------


class _Refusal(Exception):
    """A dead letter's error whose text is slow to give, or cannot be given at all."""

    def __init__(self, delay: float = 0.0, fails: bool = False) -> None:
        super().__init__("refused")
        self.delay, self.fails = delay, fails

    def __str__(self) -> str:
        time.sleep(self.delay)  # in the connection's thread, inside the transaction
        if self.fails:
            raise RuntimeError("the error cannot be told")
        return "refused"


def _dead_letters_commit(root: Root, *errors: Exception) -> BatchCommit:
    dead = [DeadLetter(f"s/f{i}.raw", "s", error, attempts=1) for i, error in enumerate(errors)]
    return BatchCommit(root, "s", None, [], {}, [], dead)


async def test_a_commit_that_fails_half_way_leaves_nothing(tmp_path: Path) -> None:
    async with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        root = await ledger.ensure_root(tmp_path, "drop")
        with pytest.raises(RuntimeError, match="cannot be told"):
            await ledger.commit_batch(_dead_letters_commit(root, _Refusal(), _Refusal(fails=True)))
        assert await ledger.dead_letters() == []  # the first row went with the second's failure
        await ledger.commit_batch(_dead_letters_commit(root, _Refusal()))
        assert [d.relpath for d in await ledger.dead_letters()] == ["s/f0.raw"]


async def test_a_commit_behind_another_writer_is_busy_then_lands(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    async with Ledger.open(path, busy_timeout_ms=200) as ledger:
        root = await ledger.ensure_root(tmp_path, "drop")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(LedgerBusyError, match="locked by another writer"):
                await ledger.commit_batch(_dead_letters_commit(root, _Refusal()))
        finally:
            other.execute("ROLLBACK")
            other.close()
        await ledger.commit_batch(_dead_letters_commit(root, _Refusal()))
        assert len(await ledger.dead_letters()) == 1


async def test_a_cancelled_commit_commits_nothing_and_leaves_no_transaction_open(tmp_path: Path) -> None:
    async with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        root = await ledger.ensure_root(tmp_path, "drop")
        # Cancelled while its work runs in the connection's thread, and while queued behind it.
        running = asyncio.create_task(
            ledger.commit_batch(_dead_letters_commit(root, _Refusal(0.3), _Refusal()))
        )
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(ledger.commit_batch(_dead_letters_commit(root, _Refusal(), _Refusal())))
        await asyncio.sleep(0.05)
        for task in (running, queued):
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await ledger.dead_letters() == []  # rolled back, as an awaited transaction would be
        # Nothing was left open for the next writers, of either kind.
        async with ledger.transaction() as db:
            await db.execute("DELETE FROM dead_letters")
        await ledger.commit_batch(_dead_letters_commit(root, _Refusal()))
        assert [d.relpath for d in await ledger.dead_letters()] == ["s/f0.raw"]


async def test_a_writer_cancelled_before_its_begin_ran_leaves_no_transaction_open(tmp_path: Path) -> None:
    async with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        root = await ledger.ensure_root(tmp_path, "drop")
        # A slow read holds the connection's thread; a writer's BEGIN queues behind it, and the
        # writer is cancelled before the BEGIN has run.
        reading = asyncio.create_task(in_connection_thread(ledger._db, lambda connection: time.sleep(0.3)))

        async def write() -> None:
            async with ledger.transaction() as db:
                await db.execute("DELETE FROM dead_letters")

        writer = asyncio.create_task(write())
        await asyncio.sleep(0.05)
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
        await reading
        await ledger.commit_batch(_dead_letters_commit(root, _Refusal()))
        assert len(await ledger.dead_letters()) == 1
