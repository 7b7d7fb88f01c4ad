"""``fair-agent scan PATH``: ingest everything under a folder once (burst mode), then exit."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from ..core.config import AgentConfig
from ..fs.statelock import StateLock
from ..ledger import Ledger
from ..service.children import LogSettings
from ..service.scan import ScanReport
from ..service.shards import scan_backlog
from .common import Command, Exit, add_common, human_bytes

if TYPE_CHECKING:  # shipping and announcing are imported only when [store] or [bus] is set
    from .shipping import Delivery


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "path", type=Path, metavar="PATH", help="folder to ingest (its sub-folders are sessions)"
    )
    cmd.add_argument(
        "--retry-dead", action="store_true", help="try dead-lettered files again even if they did not change"
    )
    add_common(cmd)


def run(args: argparse.Namespace, config: AgentConfig) -> int:
    return asyncio.run(_scan(args, config))


async def _scan(args: argparse.Namespace, config: AgentConfig) -> int:
    delivery: Delivery | None = None
    with StateLock(config.state_dir, "scan"):
        async with Ledger.open(config.ledger_path) as ledger:
            console = Console(stderr=True)
            # The processes a large folder is shared among log as this one does.
            logs = LogSettings(args.log_level, True if args.json_logs else None)
            if console.is_terminal:
                with _ScanBar(console) as bar:
                    report = await scan_backlog(
                        args.path, config, ledger, progress=bar, retry_dead=args.retry_dead, log_settings=logs
                    )
            else:  # no one to show a bar to (a service, a pipe): no per-file updates to pay for
                report = await scan_backlog(
                    args.path, config, ledger, retry_dead=args.retry_dead, log_settings=logs
                )
            if config.store is not None or config.bus is not None:
                from .shipping import deliver

                delivery = await deliver(config, ledger, console, wait=False)
    Console().print(summary_table(report, delivery))
    if delivery is not None and not delivery.complete:
        return Exit.TEMPFAIL
    return Exit.OK if report.ok else Exit.PROBLEMS


class _ScanBar:
    """A rich progress bar of bytes and files; the totals grow as discovery finds sessions."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]scan"),
            BarColumn(),
            TextColumn("{task.fields[files]}/{task.fields[total_files]} files"),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._task: TaskID | None = None
        self._files = self._total_files = 0
        self._total_bytes = 0

    def __enter__(self) -> _ScanBar:
        self._progress.start()
        self._task = self._progress.add_task("scan", total=0, files=0, total_files=0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def found(self, files: int, size: int) -> None:
        assert self._task is not None
        self._total_files += files
        self._total_bytes += size
        self._progress.update(self._task, total=self._total_bytes, total_files=self._total_files)

    def advance(self, files: int, size: int) -> None:
        assert self._task is not None
        self._files += files
        self._progress.update(self._task, advance=size, files=self._files)


def summary_table(report: ScanReport, delivery: Delivery | None = None) -> Table:
    table = Table(title="fair-agent scan", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("sessions", str(report.sessions)),
        *(
            [("processes (sessions each)", f"{len(shares)} ({', '.join(map(str, shares))})")]
            if (shares := report.sessions_by_process)
            else []
        ),
        ("files seen", str(report.files_seen)),
        ("files ingested", str(report.files_ingested)),
        ("bytes hashed", human_bytes(report.bytes_hashed)),
        ("unchanged (not read)", str(report.unchanged)),
        ("skipped", str(report.skipped)),
        ("dead-lettered", f"[red]{report.dead_lettered}[/red]" if report.dead_lettered else "0"),
        ("not committed (run again)", f"[red]{report.uncommitted}[/red]" if report.uncommitted else "0"),
        *(
            [("processes that failed (run again)", f"[red]{report.lost_processes}[/red]")]
            if report.lost_processes
            else []
        ),
        ("elapsed", f"{report.elapsed_s:.2f} s"),
        ("throughput", f"{report.mb_per_s:.1f} MB/s"),
    ]
    if delivery is not None:
        from .shipping import delivery_rows

        rows += delivery_rows(delivery)
    for name, value in rows:
        table.add_row(name, value)
    return table


COMMAND = Command(
    description="Ingest every file under PATH through the service's pipeline (burst mode), then "
    "exit. Files already in the ledger and unchanged are not read again. Exit status: 0 when "
    "everything was ingested (and, with [store] or [bus], shipped and announced), 1 when anything "
    "is dead-lettered or not committed (or a process of a shared scan failed), 75 when the store "
    "or the bus stayed unreachable (the backlog is kept for the service or `fair-agent ship`), 3 on "
    "a configuration error or a state directory in use. A folder of at least 2,000 files per core "
    "is shared among one process per core (scan_processes).",
    examples=("fair-agent scan /data/plate-reader --config /etc/fair-agent/agent.toml",),
    add_arguments=add_arguments,
    run=run,
)
