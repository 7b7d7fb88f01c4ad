"""What `scan` and `ship` share: delivering to the centre (the outbox shipped to the store with a
progress bar of bytes, the events announced to the hub) and its summary."""

from __future__ import annotations

import logging
from dataclasses import dataclass

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
from ..ship.announcer import Announcer, AnnounceStats
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


@dataclass(slots=True)
class Delivery:
    shipped: ShipStats | None = None
    announced: AnnounceStats | None = None

    @property
    def complete(self) -> bool:
        """Nothing left to ship, no event left to publish."""
        backlog = self.shipped.backlog if self.shipped else None
        counts = self.announced.counts if self.announced else None
        return (
            self.shipped is None or (backlog is not None and backlog.files == 0 and backlog.sessions == 0)
        ) and (self.announced is None or (counts is not None and counts.pending == 0))


async def deliver(config: AgentConfig, ledger: Ledger, console: Console, *, wait: bool) -> Delivery:
    """Ship what the store lacks, then announce what the hub was not told (each when configured)."""
    delivery = Delivery()
    if config.store is not None:
        delivery.shipped = await ship_backlog(config, ledger, console, wait=wait)
    if config.bus is not None:
        announcer = Announcer(config, ledger)
        delivery.announced = await announcer.drain(
            give_up_after_s=None if wait else config.bus.give_up_after_s
        )
    return delivery


def delivery_rows(delivery: Delivery) -> list[tuple[str, str]]:
    rows = ship_rows(delivery.shipped) if delivery.shipped else []
    announced = delivery.announced
    if announced is not None:
        rows.append(("events published", str(announced.published)))
        counts = announced.counts
        if counts is not None and counts.pending:
            rows.append(("[red]events still to publish[/red]", f"[red]{counts.pending}[/red]"))
        if counts is not None:
            rows.append(("events awaiting the hub's receipt", str(counts.awaiting_receipt)))
        if announced.bus_error:
            rows.append(("bus", f"[red]{announced.bus_error}[/red]"))
    return rows


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


def delivery_table(delivery: Delivery) -> Table:
    table = Table(title="fair-agent ship", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for name, value in delivery_rows(delivery):
        table.add_row(name, value)
    return table
