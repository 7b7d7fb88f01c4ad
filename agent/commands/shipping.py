"""What `scan` and `ship` share: shipping the outbox with a progress bar of bytes, and its summary."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from ..core.config import AgentConfig
from ..ledger import Ledger
from ..ship.shipper import Shipper, ShipStats
from .common import human_bytes

log = logging.getLogger("fair_agent.ship")


async def ship_backlog(config: AgentConfig, ledger: Ledger, console: Console, *, wait: bool) -> ShipStats:
    """Ship everything in the outbox; ``wait``: keep trying an unreachable store until it answers."""
    assert config.store is not None
    backlog = await ledger.outbox.backlog()
    progress = Progress(
        TextColumn("[bold]ship"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    task = progress.add_task("ship", total=backlog.bytes)
    shipper = Shipper(config, ledger, on_bytes=lambda n: progress.advance(task, n))
    try:
        with progress:
            stats = await shipper.drain(give_up_after_s=None if wait else config.store.give_up_after_s)
    finally:
        shipper.close()
    log.info(
        f"shipped {stats.files} file(s), {stats.sessions} session(s)",
        extra={
            "files": stats.files,
            "bytes": stats.bytes_sent,
            "parts_sent": stats.parts_sent,
            "parts_resumed": stats.parts_resumed,
            "already_stored": stats.already_stored,
            "lost": stats.lost,
            "backlog_files": stats.backlog.files if stats.backlog else None,
        },
    )
    return stats


def shipped(stats: ShipStats) -> bool:
    """Whether nothing is left to ship."""
    return stats.backlog is not None and stats.backlog.files == 0 and stats.backlog.sessions == 0


def ship_rows(stats: ShipStats) -> list[tuple[str, str]]:
    rows = [
        ("files stored", str(stats.files)),
        ("  of which already in the store", str(stats.already_stored)),
        ("bytes sent", human_bytes(stats.bytes_sent)),
        ("sessions' documents stored", str(stats.sessions)),
    ]
    if stats.lost:
        rows.append(("changed or removed before shipping", f"[yellow]{stats.lost}[/yellow]"))
    backlog = stats.backlog
    if backlog is not None and (backlog.files or backlog.sessions):
        left = f"{backlog.files} files, {human_bytes(backlog.bytes)}, {backlog.sessions} sessions"
        rows.append(("[red]still to ship[/red]", f"[red]{left}[/red]"))
    if stats.store_error:
        rows.append(("store", f"[red]{stats.store_error}[/red]"))
    return rows


def ship_table(stats: ShipStats) -> Table:
    table = Table(title="fair-agent ship", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for name, value in ship_rows(stats):
        table.add_row(name, value)
    return table
