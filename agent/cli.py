"""The ``fair-agent`` command. It owns argv, logging setup, terminal output and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from . import __version__
from .config import AgentConfig, load_config
from .errors import AgentError
from .ledger import Ledger
from .logs import setup_logging
from .scan import ScanReport, scan

EXIT_OK = 0
EXIT_DEAD_LETTERS = 1
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_CONFIG = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fair-agent",
        description="FAIR drop-folder agent: sidecars and RO-Crates next to instrument data, exactly once.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan_cmd = commands.add_parser(
        "scan",
        help="ingest everything under a folder once, then exit",
        description="Ingest every file under PATH through the service's pipeline (burst mode), then "
        "exit. Files already in the ledger and unchanged are not read again. Exit status: 0 when "
        "everything was ingested, 1 when anything is dead-lettered, 3 on a configuration error.",
        epilog="example: fair-agent scan /data/plate-reader --config /etc/fair-agent/agent.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scan_cmd.add_argument(
        "path", type=Path, metavar="PATH", help="folder to ingest (its sub-folders are sessions)"
    )
    _add_common(scan_cmd)
    scan_cmd.add_argument(
        "--retry-dead", action="store_true", help="try dead-lettered files again even if they did not change"
    )
    return parser


def _add_common(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML config file (default: built-in defaults)"
    )
    cmd.add_argument(
        "--state-dir", type=Path, metavar="DIR", help="where the ledger lives (overrides config)"
    )
    cmd.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    cmd.add_argument("--json-logs", action="store_true", help="log JSON lines even on a terminal")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True)
    setup_logging(args.log_level, stream=sys.stderr, json_lines=True if args.json_logs else None)
    overrides: dict[str, Any] = {}
    if args.state_dir is not None:
        overrides["state_dir"] = args.state_dir
    try:
        config = load_config(args.config, overrides=overrides)
        if args.command == "scan":
            return asyncio.run(_scan(args, config, err))
    except AgentError as exc:
        print(f"fair-agent: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("fair-agent: interrupted; work not committed is redone on the next run", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command}")


async def _scan(args: argparse.Namespace, config: AgentConfig, err: Console) -> int:
    ledger = await Ledger.open(config.ledger_path)
    try:
        with _ScanBar(err) as bar:
            report = await scan(args.path, config, ledger, progress=bar, retry_dead=args.retry_dead)
    finally:
        await ledger.close()
    Console().print(summary_table(report))
    return EXIT_OK if report.ok else EXIT_DEAD_LETTERS


class _ScanBar:
    """A rich progress bar of files and bytes; the totals grow as discovery finds sessions."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files"),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=False,
        )
        self._files: TaskID | None = None
        self._bytes: TaskID | None = None

    def __enter__(self) -> _ScanBar:
        self._progress.start()
        self._files = self._progress.add_task("files", total=0)
        self._bytes = self._progress.add_task("bytes", total=0, visible=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def found(self, files: int, size: int) -> None:
        assert self._files is not None
        task = self._progress.tasks[self._files]
        self._progress.update(self._files, total=(task.total or 0) + files)

    def advance(self, files: int, size: int) -> None:
        assert self._files is not None
        self._progress.advance(self._files, files)


def summary_table(report: ScanReport) -> Table:
    table = Table(title="fair-agent scan", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("sessions", str(report.sessions)),
        ("files seen", str(report.files_seen)),
        ("files ingested", str(report.files_ingested)),
        ("bytes hashed", _human_bytes(report.bytes_hashed)),
        ("unchanged (not read)", str(report.unchanged)),
        ("skipped", str(report.skipped)),
        ("dead-lettered", f"[red]{report.dead_lettered}[/red]" if report.dead_lettered else "0"),
        ("elapsed", f"{report.elapsed_s:.2f} s"),
        ("throughput", f"{report.mb_per_s:.1f} MB/s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


if __name__ == "__main__":
    sys.exit(main())
