"""``fair-agent replay``: try dead letters again after a person fixed the cause.

The selected dead letters forget the stat they failed with, so the next look at their session
tries them again. If a service runs on this state directory, it is asked to reconcile now (SIGHUP)
and replay waits for the outcome; otherwise replay ingests the affected sessions itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..core.batch import Root
from ..core.config import AgentConfig
from ..core.errors import ConfigError
from ..core.naming import is_within
from ..ledger import DeadLetterRow, Ledger
from ..service.scan import scan
from .locate import locate


@dataclass(frozen=True, slots=True)
class ReplayResult:
    root: str
    relpath: str
    passed: bool
    #: Why it still fails (the new dead letter's message); None when it passed.
    reason: str | None


async def select_dead_letters(
    ledger: Ledger, *, batch_id: str | None = None, session_path: Path | None = None
) -> list[DeadLetterRow]:
    """Every dead letter (no filter), those of one batch, or those of one session folder or file."""
    if session_path is None:
        return await ledger.dead_letters(batch_id=batch_id)
    root, rel = await locate(ledger, session_path)
    if not rel:
        raise ConfigError(f"{session_path} is not inside any folder the ledger knows")
    rows = await ledger.dead_letters(batch_id=batch_id, root_id=root.id)
    # The folder may be a session, lie inside one, or hold several (rules that group deeper).
    return [r for r in rows if is_within(r.session, rel) or is_within(rel, r.session)]


async def replay(
    config: AgentConfig,
    ledger: Ledger,
    selected: list[DeadLetterRow],
    *,
    service_pid: int | None,
    wait_s: float = 120.0,
) -> list[ReplayResult]:
    if not selected:
        return []
    await ledger.request_replay(row.id for row in selected)
    roots = {root.id: root for root in await ledger.roots()}
    started = time.time()
    if service_pid is not None:
        os.kill(service_pid, signal.SIGHUP)  # the service reconciles now and finds them
        await _wait_for_outcomes(ledger, selected, started, wait_s)
    else:
        await _ingest_here(config, ledger, selected, roots)
    remaining = {(row.root_id, row.relpath): row for row in await ledger.dead_letters()}
    results = []
    for row in selected:
        again = remaining.get((row.root_id, row.relpath))
        reason = again.message if again is not None else None
        results.append(ReplayResult(roots[row.root_id].name, row.relpath, again is None, reason))
    return results


async def _ingest_here(
    config: AgentConfig, ledger: Ledger, selected: list[DeadLetterRow], roots: dict[int, Root]
) -> None:
    sessions: dict[int, set[str]] = {}
    for row in selected:
        sessions.setdefault(row.root_id, set()).add(row.session)
    for root_id, names in sessions.items():
        await scan(roots[root_id].path, config, ledger, sessions=names)


async def _wait_for_outcomes(
    ledger: Ledger, selected: list[DeadLetterRow], since: float, wait_s: float
) -> None:
    deadline = time.monotonic() + wait_s
    since_utc = datetime.fromtimestamp(since, UTC)
    wanted = {(row.root_id, row.relpath) for row in selected}
    while time.monotonic() < deadline:
        # Done when each is gone (ingested) or failed again after the replay was asked for.
        pending = [
            row
            for row in await ledger.dead_letters()
            if (row.root_id, row.relpath) in wanted and datetime.fromisoformat(row.last_seen) < since_utc
        ]
        if not pending:
            return
        await asyncio.sleep(0.2)
