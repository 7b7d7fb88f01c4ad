"""The ledger: migrations recorded in the database, and refusal to touch what is not ours."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.core.errors import LedgerError
from agent.ledger import Ledger
from agent.ledger.migrations import LATEST_VERSION


async def test_new_ledger_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite3"
    async with Ledger.open(path) as ledger:
        assert await ledger.schema_version() == LATEST_VERSION
    with sqlite3.connect(path) as db:
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
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(LedgerError, match="not a fair-agent ledger"):
        async with Ledger.open(path):
            pass


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    async with Ledger.open(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    with pytest.raises(LedgerError, match="newer than this agent"):
        async with Ledger.open(path):
            pass
