"""A batch's commit: every row it changes, written inside one transaction (the caller's).

New versions supersede the current ones, removed files leave the crate, files that now passed or
went away leave the dead-letter table, new failures enter it, and drift baselines learn. Nothing of a
batch is visible until all of it is. It runs in the ledger connection's thread, in one hand-off
(see inthread).
"""

from __future__ import annotations

import sqlite3

from ..core.records import DeadLetter
from .announcements import record_events
from .bulk import execute_for_each, insert_rows
from .drift import apply_updates
from .encoding import to_db
from .outbox import enqueue
from .rows import BatchCommit


def write_batch(db: sqlite3.Connection, commit: BatchCommit, stamp: str) -> None:
    root_id, session = commit.root.id, to_db(commit.session)
    if commit.batch_id is not None and commit.records:
        db.execute(
            "INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?, ?, ?)",
            (
                commit.batch_id,
                root_id,
                session,
                len(commit.records),
                sum(r.stat.size for r in commit.records),
                stamp,
            ),
        )
    _write_files(db, commit, stamp)
    done = [r.relpath for r in commit.records] + [f.relpath for f in commit.touched] + commit.cleared_dead
    execute_for_each(
        db,
        "DELETE FROM dead_letters WHERE root_id = ? AND relpath IN ({marks})",
        (root_id,),
        [to_db(p) for p in done],
    )
    for dead in commit.dead:
        _upsert_dead_letter(db, root_id, dead, stamp)
    apply_updates(db, commit.drift, root_id, session, commit.batch_id, stamp)
    if commit.crate == "pending":
        db.execute(
            "INSERT INTO pending_crates VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (root_id, session, stamp)
        )
    elif commit.crate == "written":
        db.execute("DELETE FROM pending_crates WHERE root_id = ? AND session = ?", (root_id, session))
    if commit.ship:
        enqueue(db, commit, stamp)
    record_events(db, root_id, commit.events)


def _write_files(db: sqlite3.Connection, commit: BatchCommit, stamp: str) -> None:
    root_id, session = commit.root.id, to_db(commit.session)
    execute_for_each(
        db,
        "UPDATE files SET status = 'superseded' "
        "WHERE root_id = ? AND status = 'current' AND relpath IN ({marks})",
        (root_id,),
        [to_db(r.relpath) for r in commit.records],
    )
    # Only this session's row: a file that moved to another session (rules changed) may
    # already have its current version there. "+session": found by path (files_one_current), not
    # by scanning the session (SQLite prefers the session's index once the list is ten long).
    execute_for_each(
        db,
        "UPDATE files SET status = 'removed' "
        "WHERE root_id = ? AND +session = ? AND status = 'current' AND relpath IN ({marks})",
        (root_id, session),
        [to_db(p) for p in commit.removed],
    )
    insert_rows(
        db,
        "INSERT INTO files (root_id, relpath, session, version, size, mtime_ns, ctime_ns, inode, "
        "sha256, batch_id, sequence, status, entity, sidecar_written_at)",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'current', ?, ?)",
        [
            (
                root_id,
                to_db(r.relpath),
                session,
                r.version,
                r.stat.size,
                r.stat.mtime_ns,
                r.stat.ctime_ns,
                r.stat.inode,
                r.sha256,
                r.batch_id,
                r.sequence,
                commit.entities[r.relpath],
                stamp,
            )
            for r in commit.records
        ],
    )
    db.executemany(
        "UPDATE files SET size = ?, mtime_ns = ?, ctime_ns = ?, inode = ? "
        "WHERE root_id = ? AND relpath = ? AND status = 'current'",
        [(f.size, f.mtime_ns, f.ctime_ns, f.inode, root_id, to_db(f.relpath)) for f in commit.touched],
    )


def _upsert_dead_letter(db: sqlite3.Connection, root_id: int, dead: DeadLetter, stamp: str) -> None:
    st = dead.stat
    db.execute(
        "INSERT INTO dead_letters (root_id, session, relpath, batch_id, category, error_class, "
        "message, advice, attempts, size, mtime_ns, ctime_ns, inode, first_seen, last_seen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (root_id, relpath) DO UPDATE SET batch_id = excluded.batch_id, "
        "category = excluded.category, error_class = excluded.error_class, "
        "message = excluded.message, advice = excluded.advice, "
        "attempts = dead_letters.attempts + excluded.attempts, size = excluded.size, "
        "mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, inode = excluded.inode, "
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
            *(st.signature() if st else (None, None, None, None)),
            stamp,
            stamp,
        ),
    )
