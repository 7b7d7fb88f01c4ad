"""Which derived tables the agent wrote where: so that it replaces its own and never a person's."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager

import aiosqlite

from .encoding import now_iso, to_db

Transaction = Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]]
Query = Callable[[str, tuple[object, ...]], Awaitable[list[sqlite3.Row]]]


class DerivedOutputs:
    def __init__(self, transaction: Transaction, query: Query) -> None:
        self._transaction = transaction
        self._query = query

    async def record(self, root_id: int, tables: Iterable[tuple[str, str]]) -> None:
        """Remember (path, sha256) of derived tables about to be renamed into place."""
        stamp = now_iso()
        async with self._transaction() as db:
            await db.executemany(
                "INSERT OR IGNORE INTO derived_outputs VALUES (?, ?, ?, ?)",
                [(root_id, to_db(relpath), sha256, stamp) for relpath, sha256 in tables],
            )

    async def written(self, root_id: int, relpath: str) -> set[str]:
        """The SHA-256 of every derived table the agent ever put at this path."""
        rows = await self._query(
            "SELECT sha256 FROM derived_outputs WHERE root_id = ? AND relpath = ?", (root_id, to_db(relpath))
        )
        return {str(row[0]) for row in rows}
