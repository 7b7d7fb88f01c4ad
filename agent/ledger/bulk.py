"""Many rows in few statements.

``executemany`` steps its statement once per row, and Python's sqlite3 releases the GIL around
every step: a batch of 100 files made some 300 releases in the ledger's thread, each a hand-off
with the event loop when it is busy (the agent's threads spent more time switching than working).
One statement for many rows is one step. They run in that thread (see inthread), inside a batch's
transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

#: Bound parameters in one statement: SQLite before 3.32 allows at most 999.
MAX_PARAMETERS = 999


def insert_rows(db: sqlite3.Connection, head: str, row: str, rows: Sequence[Sequence[object]]) -> None:
    """``{head} VALUES {row}, {row}, ...`` for every row, as few statements as the parameters allow.

    ``row`` is the template of one row's values, e.g. ``(?, ?, 'current')``.
    """
    width = row.count("?")
    per = max(1, MAX_PARAMETERS // max(1, width))
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        db.execute(f"{head} VALUES {', '.join([row] * len(chunk))}", [v for r in chunk for v in r])


def execute_for_each(
    db: sqlite3.Connection, sql: str, params: Sequence[object], values: Sequence[object]
) -> None:
    """``sql`` once for all ``values`` at once: its ``{marks}`` is filled with one ``?`` per value
    (``... AND relpath IN ({marks})``), after ``params``; in as few statements as allowed."""
    per = MAX_PARAMETERS - len(params)
    for start in range(0, len(values), per):
        chunk = values[start : start + per]
        db.execute(sql.format(marks=", ".join("?" * len(chunk))), [*params, *chunk])
