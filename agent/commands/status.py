"""``fair-agent status``: what the ledger holds and, with a service running, what it waits for.

Read from the ledger (read-only), whether or not the service runs; the running service's own view
comes from the live-status file it keeps in the state directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core.batch import Root
from ..core.config import AgentConfig
from ..fs.statelock import lock_holder
from ..ledger import Ledger
from ..service.livestatus import read_live_status
from ..service.watch import root_mode
from .common import Command, Exit, add_common, human_bytes


@dataclass(slots=True)
class Status:
    state_dir: str
    service: str | None  # "pid 123 (run)" when an agent holds the state directory
    roots: list[dict[str, Any]]
    counts: dict[str, int]
    ledger_bytes: int
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    recent_batches: list[dict[str, Any]] = field(default_factory=list)
    #: From the running service (None when none runs): sessions waiting and why, work in flight.
    pending: list[dict[str, Any]] | None = None
    in_flight: list[dict[str, Any]] | None = None
    queue_depth: int | None = None
    #: Helper processes sharing a burst with the service.
    helpers: int | None = None
    metrics: str | None = None
    live_updated_at: str | None = None
    #: The object store's account (None: no [store]): backlog, what is stored, the last error.
    store: dict[str, Any] | None = None
    #: The event bus's account (None: no [bus]): events pending, awaiting receipt, files catalogued
    #: and safe to delete, the last error.
    bus: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def gather_status(config: AgentConfig, ledger: Ledger, *, limit: int = 10) -> Status:
    holder = lock_holder(config.state_dir)
    live = read_live_status(config.state_dir, holder[0]) if holder else None
    roots = await ledger.roots()
    names = {r.id: r.name for r in roots}
    dead = await ledger.dead_letters()
    ledger_bytes = sum(
        p.stat().st_size for p in config.state_dir.glob(config.ledger_path.name + "*") if p.is_file()
    )
    return Status(
        state_dir=str(config.state_dir),
        service=f"pid {holder[0]} ({holder[1]})" if holder else None,
        roots=live["roots"] if live else await asyncio.to_thread(_configured_roots, config, roots),
        counts=await ledger.summary(),
        ledger_bytes=ledger_bytes,
        dead_letters=[
            {
                "root": names.get(d.root_id, "?"),
                "file": d.relpath,
                "category": d.category,
                "error_class": d.error_class,
                "message": d.message,
                "attempts": d.attempts,
                "batch_id": d.batch_id,
                "last_seen": d.last_seen,
            }
            for d in dead[:limit]
        ],
        recent_batches=[
            {
                "batch_id": b[0],
                "root": b[1],
                "session": b[2],
                "files": b[3],
                "bytes": b[4],
                "committed_at": b[5],
            }
            for b in await ledger.recent_batches(limit)
        ],
        pending=live["pending"] if live else None,
        in_flight=live["inFlight"] if live else None,
        queue_depth=live["queueDepth"] if live else None,
        helpers=live.get("helperProcesses", 0) if live else None,
        metrics=live["metrics"] if live else None,
        live_updated_at=live["updatedAt"] if live else None,
        store=await _store(config, ledger),
        bus=await _bus(config, ledger),
    )


async def _bus(config: AgentConfig, ledger: Ledger) -> dict[str, Any] | None:
    if config.bus is None:
        return None
    counts = await ledger.announcements.counts()
    files = await ledger.announcements.file_counts()
    state = await ledger.announcements.bus_state()
    return {
        "url": config.bus.url,
        "agentName": config.agent_name,
        "events": {
            "pendingAnnouncement": counts.pending,
            "oldestPendingAt": counts.oldest_pending_at,
            "awaitingReceipt": counts.awaiting_receipt,
            "oldestAwaitingAt": counts.oldest_awaiting_at,
            "refused": counts.refused,
        },
        "files": {
            "pendingAnnouncement": files["pending_announcement"],
            "awaitingReceipt": files["awaiting_receipt"],
            "catalogued": files["catalogued"],
            "safeToDelete": files["safe_to_delete"],
        },
        "lastError": state.last_error,
        "lastErrorAt": state.last_error_at,
        "lastSuccessAt": state.last_success_at,
    }


async def _store(config: AgentConfig, ledger: Ledger) -> dict[str, Any] | None:
    if config.store is None:
        return None
    backlog = await ledger.outbox.backlog()
    state = await ledger.outbox.store_state()
    totals = await ledger.outbox.totals()
    age = backlog.oldest_age_s()
    return {
        "endpoint": config.store.endpoint,
        "bucket": config.store.bucket,
        "backlog": {
            "files": backlog.files,
            "bytes": backlog.bytes,
            "sessions": backlog.sessions,
            "oldestEnqueuedAt": backlog.oldest_enqueued_at,
            "oldestAgeSeconds": None if age is None else round(age, 1),
        },
        "stored": totals.get("stored", {"files": 0, "bytes": 0}),
        "changedBeforeShipping": totals.get("changed", {"files": 0, "bytes": 0}),
        "removedBeforeShipping": totals.get("missing", {"files": 0, "bytes": 0}),
        "lastError": state.last_error,
        "lastErrorAt": state.last_error_at,
        "lastSuccessAt": state.last_success_at,
    }


def _configured_roots(config: AgentConfig, known: list[Root]) -> list[dict[str, Any]]:
    """Without a service: the roots the ledger knows, and the mode each configured one would get."""
    modes: dict[str, tuple[str, str]] = {}
    for settings in config.roots:
        where = str(settings.path.expanduser().resolve())
        try:
            modes[where] = root_mode(settings)
        except OSError as exc:
            modes[where] = ("unavailable", str(exc))
    rows = [
        {"name": r.name, "path": str(r.path), "mode": modes.pop(str(r.path), ("not configured", ""))[0]}
        for r in known
    ]
    rows += [{"name": Path(p).name, "path": p, "mode": m} for p, (m, _) in modes.items()]
    return rows


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_common(cmd)


def run(args: argparse.Namespace, config: AgentConfig) -> int:
    status = asyncio.run(_gather(config))
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
        return Exit.OK
    console = Console()
    console.print(
        f"[bold]state directory[/bold] {status.state_dir}  ({human_bytes(status.ledger_bytes)} of ledger)"
    )
    console.print(f"[bold]service[/bold] {status.service or 'not running'}")
    overview = Table(title="ledger", show_header=False, title_justify="left")
    for name, value in status.counts.items():
        overview.add_row(name.replace("_", " "), human_bytes(value) if name == "bytes" else str(value))
    console.print(overview)
    _print_rows(console, _roots(status))
    if status.pending is not None:
        console.print(
            f"[bold]live[/bold] as of {status.live_updated_at}: {len(status.pending)} session(s) pending, "
            f"{len(status.in_flight or [])} in flight, {status.queue_depth} batch(es) queued"
            + (f", {status.helpers} helper process(es) sharing a burst" if status.helpers else "")
            + (f"; metrics at {status.metrics}" if status.metrics else "")
        )
        _print_rows(console, _waiting(status.pending, status.in_flight or []))
    if status.store is not None:
        _print_store(console, status.store)
    if status.bus is not None:
        _print_bus(console, status.bus)
    _print_rows(console, _batches(status))
    _print_rows(console, _dead_letters(status))
    return Exit.OK


def _print_store(console: Console, store: dict[str, Any]) -> None:
    backlog = store["backlog"]
    line = (
        f"[bold]store[/bold] {store['endpoint']} bucket {store['bucket']}: "
        f"{store['stored']['files']} file(s) stored; backlog {backlog['files']} file(s), "
        f"{human_bytes(backlog['bytes'])}, {backlog['sessions']} session(s)"
    )
    if backlog["oldestAgeSeconds"] is not None:
        line += f", oldest waiting {backlog['oldestAgeSeconds']:.0f} s"
    console.print(line)
    if store["lastError"]:
        console.print(f"  [red]failing since {store['lastErrorAt']}:[/red] {escape(store['lastError'])}")


def _print_bus(console: Console, bus: dict[str, Any]) -> None:
    events, files = bus["events"], bus["files"]
    console.print(
        f"[bold]bus[/bold] {bus['url']} as {bus['agentName']}: {events['pendingAnnouncement']} event(s) "
        f"to publish, {events['awaitingReceipt']} awaiting the hub's receipt; {files['catalogued']} "
        f"file(s) catalogued, {files['safeToDelete']} safe to delete"
    )
    if bus["lastError"]:
        console.print(f"  [red]failing since {bus['lastErrorAt']}:[/red] {escape(bus['lastError'])}")


def _print_rows(console: Console, table: Table) -> None:
    if table.row_count:
        console.print(table)


async def _gather(config: AgentConfig) -> Status:
    async with Ledger.open_readonly(config.ledger_path) as ledger:
        return await gather_status(config, ledger)


def _roots(status: Status) -> Table:
    roots = Table(title="watch roots", title_justify="left")
    for column in ("name", "path", "mode", "watcher"):
        roots.add_column(column)
    for root in status.roots:
        watcher = root.get("watcher", "")
        shown = f"[red]{escape(watcher)}[/red]" if watcher.startswith("failing") else watcher
        roots.add_row(escape(root["name"]), escape(root["path"]), root.get("mode", ""), shown)
    return roots


def _waiting(pending: list[dict[str, Any]], in_flight: list[dict[str, Any]]) -> Table:
    """The sessions a running service waits for, and those it works on."""
    waiting = Table(title="sessions pending and in flight", title_justify="left")
    for column in ("root", "session", "why"):
        waiting.add_column(column)
    for p in pending:
        why = f"{p['reason']} (quiet for {p['quietForS']:.0f} of {p['quietPeriodS']:.0f} s)"
        waiting.add_row(escape(p["root"]), escape(p["session"]), why)
    for f in in_flight:
        waiting.add_row(escape(f["root"]), escape(f["session"]), f["state"])
    return waiting


def _batches(status: Status) -> Table:
    batches = Table(title="recent batches", title_justify="left")
    for column in ("committed", "root", "session", "files", "bytes", "batch"):
        batches.add_column(column)
    for b in status.recent_batches:
        batches.add_row(
            b["committed_at"],
            escape(b["root"]),
            escape(b["session"]),
            str(b["files"]),
            human_bytes(b["bytes"]),
            b["batch_id"],
        )
    return batches


def _dead_letters(status: Status) -> Table:
    dead = Table(title="dead letters", title_justify="left")
    for column in ("root", "file", "category", "reason", "attempts", "batch"):
        dead.add_column(column)
    for d in status.dead_letters:
        dead.add_row(
            escape(d["root"]),
            escape(d["file"]),
            d["category"],
            escape(d["message"]),
            str(d["attempts"]),
            d["batch_id"] or "",
        )
    return dead


COMMAND = Command(
    description="Report from the ledger, whether or not the service runs: the watch roots and "
    "their mode (events or polling), files and batches ingested, dead letters with their "
    "reasons, recent batches, the ledger's size, and which process (if any) holds the state "
    "directory. With a service running, also the sessions it waits for and why, and the batches "
    "in flight or waiting to retry.",
    examples=("fair-agent status --json --state-dir /var/lib/fair-agent",),
    add_arguments=add_arguments,
    run=run,
)
