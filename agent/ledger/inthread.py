"""Work on the ledger's connection in the connection's own thread: many statements, one hand-off.

aiosqlite runs each statement in its connection's thread and hands the result back to the event
loop. Each hand-off waits for the GIL in one direction and for the loop's next turn in the other;
with a busy loop that is up to a switch interval (5 ms) each way. A batch's commit made some ten
of them while it held the write lock, and every other worker's commit queued behind it: on the
50,000-file burst, the workers spent about half their time waiting to begin or finish a commit.
Written as plain ``sqlite3`` calls, the whole transaction is one hand-off.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

import aiosqlite

T = TypeVar("T")

# aiosqlite has no public call for this. Every public method of its Connection goes through
# _execute (a function queued to the connection's thread) and _conn (the sqlite3 connection), as
# in 0.20 to 0.22; a release without them is refused here, at import, not at the first commit.
if not (hasattr(aiosqlite.Connection, "_execute") and hasattr(aiosqlite.Connection, "_conn")):
    raise ImportError(
        f"aiosqlite {getattr(aiosqlite, '__version__', '?')} has no Connection._execute or _conn, "
        "which the ledger runs its commits through; install a release pyproject.toml allows"
    )


class Abandoned(Exception):
    """The transaction's caller stopped waiting (cancelled) before it was committed: rolled back."""


async def in_connection_thread(db: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work(connection)`` run in ``db``'s thread, after whatever was queued there before it."""
    return await db._execute(lambda: work(db._conn))  # type: ignore[no-untyped-call,no-any-return]


def in_transaction(
    connection: sqlite3.Connection,
    work: Callable[[sqlite3.Connection], T],
    abandoned: threading.Event | None = None,
) -> T:
    """``work`` between BEGIN IMMEDIATE and COMMIT, rolled back if it raises, or if ``abandoned`` is
    set by the time it is done (then Abandoned is raised): a caller cancelled while the work was
    queued or running commits nothing, as with a transaction made of awaited statements."""
    if abandoned is not None and abandoned.is_set():
        raise Abandoned
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work(connection)
        if abandoned is not None and abandoned.is_set():
            raise Abandoned
        connection.execute("COMMIT")
    except BaseException:
        roll_back_if_open(connection)
        raise
    return result


def roll_back_if_open(connection: sqlite3.Connection) -> None:
    """ROLLBACK if a transaction is open: asked in the connection's thread, after everything queued
    before (a BEGIN still queued when the caller was cancelled has run by then)."""
    if connection.in_transaction:
        connection.execute("ROLLBACK")
