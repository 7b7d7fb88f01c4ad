"""The ledger's side of drift detection: baselines learnt in the batch's own transaction, reports.

The writes run in the ledger connection's thread, as part of a batch's commit (see inthread).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ..core.drift import Baseline, Drift, Shape


@dataclass(frozen=True, slots=True)
class DriftUpdate:
    """What one batch teaches a dataset type's baseline, or reports against it."""

    dataset_type: str
    sessions_needed: int
    #: Shapes of the batch's files, learnt while the baseline is still learning.
    learn: list[Shape] = field(default_factory=list)
    report: Drift | None = None
    policy: str = ""
    #: Each file's shape, kept with a report so that ``drift --accept`` can learn from them.
    shapes: list[Shape] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DriftReport:
    id: int
    dataset_type: str
    root_id: int
    session: str
    policy: str
    diff: dict[str, Any]
    shapes: list[Shape]
    reported_at: str


def baseline_from_row(row: Any) -> Baseline:
    return Baseline(
        dataset_type=row[0],
        sessions_seen=row[1],
        sessions_needed=row[2],
        files_seen=row[3],
        keys=json.loads(row[4]),
        updated_at=row[5],
    )


BASELINE_COLUMNS = "dataset_type, sessions_seen, sessions_needed, files_seen, keys, updated_at"


def apply_updates(
    db: sqlite3.Connection,
    updates: list[DriftUpdate],
    root_id: int,
    session: str | bytes,
    batch_id: str | None,
    stamp: str,
) -> None:
    """Inside the batch's transaction: a crash before the commit teaches the baseline nothing."""
    for update in updates:
        if update.learn:
            _learn(db, update, root_id, session, stamp)
        if update.report is not None:
            db.execute(
                "INSERT INTO drift_reports (dataset_type, root_id, session, batch_id, policy, diff, shape, "
                "reported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    update.dataset_type,
                    root_id,
                    session,
                    batch_id,
                    update.policy,
                    json.dumps(update.report.to_json()),
                    json.dumps(update.shapes, sort_keys=True),
                    stamp,
                ),
            )


def _learn(
    db: sqlite3.Connection, update: DriftUpdate, root_id: int, session: str | bytes, stamp: str
) -> None:
    rows = db.execute(
        f"SELECT {BASELINE_COLUMNS} FROM drift_baselines WHERE dataset_type = ?", (update.dataset_type,)
    ).fetchall()
    baseline = (
        baseline_from_row(next(iter(rows)))
        if rows
        else Baseline(update.dataset_type, sessions_needed=update.sessions_needed)
    )
    if not baseline.learning:
        return  # another session completed it while this batch was on its way
    cursor = db.execute(
        "INSERT INTO drift_sessions VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (update.dataset_type, root_id, session),
    )
    if cursor.rowcount == 1:
        baseline.sessions_seen += 1
    for shape in update.learn:
        baseline.learn(shape)
    save_baseline(db, baseline, stamp)


def save_baseline(db: sqlite3.Connection, baseline: Baseline, stamp: str) -> None:
    db.execute(
        "INSERT INTO drift_baselines VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dataset_type) DO UPDATE SET "
        "sessions_seen = excluded.sessions_seen, sessions_needed = excluded.sessions_needed, "
        "files_seen = excluded.files_seen, keys = excluded.keys, updated_at = excluded.updated_at",
        (
            baseline.dataset_type,
            baseline.sessions_seen,
            baseline.sessions_needed,
            baseline.files_seen,
            json.dumps(baseline.keys, sort_keys=True),
            stamp,
        ),
    )
