"""The state of each link to the centre ('store', 'bus'): its last failure in words, its last success."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosqlite

from .encoding import now_iso


@dataclass(frozen=True, slots=True)
class LinkState:
    """A link to the centre (the store, the bus): its last failure, and its last success."""

    last_error: str | None
    last_error_at: str | None
    last_success_at: str | None


async def record_link_result(db: aiosqlite.Connection, link: str, error: str | None) -> None:
    stamp = now_iso()
    params: tuple[object, ...]
    if error is None:
        sql, params = "last_error = NULL, last_error_at = NULL, last_success_at = ?", (stamp, link)
    else:
        sql, params = "last_error = ?, last_error_at = ?", (error, stamp, link)
    await db.execute("INSERT INTO link_state (link) VALUES (?) ON CONFLICT DO NOTHING", (link,))
    await db.execute(f"UPDATE link_state SET {sql} WHERE link = ?", params)


async def link_state(
    query: Callable[[str, tuple[object, ...]], Awaitable[list[sqlite3.Row]]], link: str
) -> LinkState:
    rows = await query(
        "SELECT last_error, last_error_at, last_success_at FROM link_state WHERE link = ?", (link,)
    )
    return LinkState(*rows[0]) if rows else LinkState(None, None, None)
