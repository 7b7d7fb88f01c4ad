"""``fair-agent replay``: try dead letters again after a person fixed the cause.

The selected dead letters forget the stat they failed with, so the next look at their session
tries them again. If a service runs on this state directory, it is asked to reconcile now (SIGHUP)
and replay waits for the outcome; otherwise replay ingests the affected sessions itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core.batch import Root
from ..core.config import AgentConfig
from ..core.errors import ConfigError
from ..core.naming import is_within
from ..fs.statelock import StateLock, lock_holder
from ..ledger import DeadLetterRow, Ledger
from ..service.scan import scan
from .common import Command, Exit, add_common
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


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    which = cmd.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dead letter")
    which.add_argument("--batch", metavar="ID", help="the dead letters of one batch")
    which.add_argument("--session", type=Path, metavar="PATH", help="the dead letters of one session folder")
    cmd.add_argument(
        "--wait", type=float, default=120.0, metavar="SECONDS", help="how long to wait for a running service"
    )
    add_common(cmd)


def run(args: argparse.Namespace, config: AgentConfig) -> int:
    results = asyncio.run(_replay(args, config))
    table = Table(title=f"replay of {len(results)} dead letter(s)", title_justify="left")
    for column in ("root", "file", "result"):
        table.add_column(column)
    for r in results:
        outcome = (
            "[green]ingested[/green]" if r.passed else f"[red]still failing:[/red] {escape(r.reason or '')}"
        )
        table.add_row(escape(r.root), escape(r.relpath), outcome)
    Console().print(table)
    return Exit.OK if all(r.passed for r in results) else Exit.PROBLEMS


async def _replay(args: argparse.Namespace, config: AgentConfig) -> list[ReplayResult]:
    holder = lock_holder(config.state_dir)
    if holder is not None and holder[1] != "run":
        raise ConfigError(
            f"a fair-agent {holder[1]} (pid {holder[0]}) is using {config.state_dir}; wait for it"
        )
    # A running service keeps the state directory; replay then only asks it to reconcile.
    with nullcontext() if holder else StateLock(config.state_dir, "replay"):
        async with Ledger.open(config.ledger_path) as ledger:
            selected = await select_dead_letters(ledger, batch_id=args.batch, session_path=args.session)
            if not selected and not args.all:
                raise ConfigError("no dead letter matches that batch or session (see fair-agent status)")
            return await replay(
                config, ledger, selected, service_pid=holder[0] if holder else None, wait_s=args.wait
            )


COMMAND = Command(
    description="Try dead-lettered files again (after a fix: permissions repaired, a file in "
    "the way renamed) and report which now pass. With a running service on the same state "
    "directory, it asks the service to reconcile now (SIGHUP) and waits for the outcome; "
    "otherwise it ingests the affected sessions itself. Exit status: 0 when all passed, 1 when "
    "some still fail.",
    examples=("fair-agent replay --all", "fair-agent replay --session /data/xrd/run-17"),
    add_arguments=add_arguments,
    run=run,
)
