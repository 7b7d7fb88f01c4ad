"""Work on the ledger's connection in the connection's own thread: many statements, one hand-off.

aiosqlite runs each statement in its connection's thread and hands the result back to the event
loop. Each hand-off waits for the GIL in one direction and for the loop's next turn in the other;
with a busy loop that is up to a switch interval (5 ms) each way. A batch's commit made some ten
of them while it held the write lock, and every other worker's commit queued behind it: on the
50,000-file burst, workers spent a third of their time waiting to begin or finish a commit.
Written as plain ``sqlite3`` calls, the whole transaction is one hand-off.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

import aiosqlite

T = TypeVar("T")


async def in_connection_thread(db: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work(connection)`` run in ``db``'s thread, after whatever was queued there before it."""
    # aiosqlite has no public call for this. Every public method of its Connection goes through
    # _execute (a function queued to the connection's thread) and _conn (the sqlite3 connection),
    # in every release from 0.17 to 0.22; pyproject keeps it below 1.0, and the ledger's tests run
    # this path with every commit.
    return await db._execute(lambda: work(db._conn))  # type: ignore[no-untyped-call,no-any-return]


def in_transaction(connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work`` between BEGIN IMMEDIATE and COMMIT, rolled back if it raises (in the connection's
    thread: once begun, it ends with one or the other even if the awaiting task is cancelled)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work(connection)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return result
