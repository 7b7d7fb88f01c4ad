"""The ``fair-agent`` command. It owns argv, logging setup, terminal output and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
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

from . import __version__, cli_ops
from .commands import drift as cli_rules
from .commands.replay import replay, select_dead_letters
from .commands.status import gather_status
from .core.config import AgentConfig, load_config
from .core.errors import AgentError, ConfigError, RootUnavailableError, StateLockedError
from .fs.statelock import StateLock, lock_holder
from .ledger import Ledger
from .service.daemon import Service
from .service.logs import setup_logging
from .service.notify import Notifier
from .service.scan import ScanReport, scan

EXIT_OK = 0
EXIT_DEAD_LETTERS = 1
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_CONFIG = 3
EXIT_FORCED = 4
#: `run` could not start for a reason that may pass (a share not mounted yet, the state directory
#: held by a scan): systemd restarts it, while a configuration error (3) is not retried.
EXIT_TEMPFAIL = 75
FORCED_EXIT_AFTER_S = 5.0

log = logging.getLogger("fair_agent.cli")


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
        "everything was ingested, 1 when anything is dead-lettered or not committed, 3 on a "
        "configuration error or a state directory in use.",
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

    run_cmd = commands.add_parser(
        "run",
        help="the service: watch folders and ingest each session once it is complete",
        description="Watch every configured root (inotify, or polling on network shares), wait until "
        "each session is complete (quiet period, stable sizes and mtimes, marker file if asked for), "
        "and ingest it. Reconciles at start-up and on a timer so nothing is missed. Logs JSON lines "
        "on stdout. SIGTERM or SIGINT stops it gracefully; a second signal forces the exit. Speaks "
        "systemd's notify protocol (READY, WATCHDOG, STATUS, STOPPING) when $NOTIFY_SOCKET is set.",
        epilog="example: fair-agent run --config /etc/fair-agent/agent.toml\n"
        "example: fair-agent run --watch /data/plate-reader --state-dir /var/lib/fair-agent",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_cmd.add_argument(
        "--watch",
        type=Path,
        action="append",
        default=[],
        metavar="FOLDER",
        help="also watch FOLDER (repeatable)",
    )
    _add_common(run_cmd)

    status_cmd = commands.add_parser(
        "status",
        help="roots and their mode, sessions pending and why, counts, dead letters, recent batches",
        description="Report from the ledger, whether or not the service runs: the watch roots and "
        "their mode (events or polling), files and batches ingested, dead letters with their "
        "reasons, recent batches, the ledger's size, and which process (if any) holds the state "
        "directory. With a service running, also the sessions it waits for and why, and the batches "
        "in flight or waiting to retry.",
        epilog="example: fair-agent status --json --state-dir /var/lib/fair-agent",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status_cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    _add_common(status_cmd)

    replay_cmd = commands.add_parser(
        "replay",
        help="try dead letters again after their cause was fixed",
        description="Try dead-lettered files again (after a fix: permissions repaired, a file in "
        "the way renamed) and report which now pass. With a running service on the same state "
        "directory, it asks the service to reconcile now (SIGHUP) and waits for the outcome; "
        "otherwise it ingests the affected sessions itself. Exit status: 0 when all passed, 1 when "
        "some still fail.",
        epilog="example: fair-agent replay --all\nexample: fair-agent replay --session /data/xrd/run-17",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = replay_cmd.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dead letter")
    which.add_argument("--batch", metavar="ID", help="the dead letters of one batch")
    which.add_argument("--session", type=Path, metavar="PATH", help="the dead letters of one session folder")
    replay_cmd.add_argument(
        "--wait", type=float, default=120.0, metavar="SECONDS", help="how long to wait for a running service"
    )
    _add_common(replay_cmd)

    demo_cmd = commands.add_parser(
        "demo",
        help="watch a new folder while sample sessions are copied into it, then show the results",
        description="Start the service on DROP (created if needed) with a 2 s quiet period, copy the "
        "sessions from SAMPLES into it file by file as an instrument would, wait until every file "
        "has its sidecar, print what was written, and stop. The ledger goes to DROP-state beside it.",
        epilog="example: fair-agent demo sample_data demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo_cmd.add_argument("samples", type=Path, metavar="SAMPLES", help="folder of sample sessions to copy")
    demo_cmd.add_argument(
        "drop", type=Path, metavar="DROP", help="the watched folder to create and copy into"
    )
    demo_cmd.add_argument(
        "--give-up-after", type=float, default=120.0, metavar="SECONDS", help="fail if not done by then"
    )
    _add_common(demo_cmd)
    cli_rules.register(commands, _add_common)
    cli_ops.register(commands, _add_common)
    return parser


def _add_common(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML config file (default: built-in defaults)"
    )
    cmd.add_argument(
        "--state-dir", type=Path, metavar="DIR", help="where the ledger lives (overrides config)"
    )
    cmd.add_argument("--rules", type=Path, metavar="DIR", help="folder of rule files (overrides config)")
    cmd.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    cmd.add_argument("--json-logs", action="store_true", help="log JSON lines even on a terminal")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True)
    # The service logs to stdout, where journald collects it; the one-shot commands keep stdout
    # for their results.
    log_stream = sys.stdout if args.command == "run" else sys.stderr
    setup_logging(args.log_level, stream=log_stream, json_lines=True if args.json_logs else None)
    overrides: dict[str, Any] = {}
    if args.rules is not None:
        overrides["rules_dir"] = args.rules
    if args.state_dir is not None:
        overrides["state_dir"] = args.state_dir
    elif args.command == "demo":
        overrides["state_dir"] = args.drop.with_name(args.drop.name + "-state")
    try:
        config = load_config(args.config, overrides=overrides)
        if args.command == "scan":
            return asyncio.run(_scan(args, config, err))
        if args.command == "run":
            return asyncio.run(_run(with_roots(config, args.watch)))
        if args.command == "status":
            return asyncio.run(_status(args, config))
        if args.command == "replay":
            return asyncio.run(_replay(args, config))
        if args.command == "inspect":
            return asyncio.run(cli_ops.run_inspect(args, config))
        if args.command == "verify":
            return asyncio.run(cli_ops.run_verify(args, config))
        if args.command == "init":
            return cli_ops.run_init(args)
        if args.command == "rules":
            return cli_rules.run_rules(args, config)
        if args.command == "drift":
            return asyncio.run(cli_rules.run_drift(args, config))
        if args.command == "demo":
            from .commands.demo import run_demo

            return asyncio.run(run_demo(args.samples, args.drop, config, give_up_after_s=args.give_up_after))
    except AgentError as exc:
        print(f"fair-agent: error: {exc}", file=sys.stderr)
        if args.command == "run" and isinstance(exc, RootUnavailableError | StateLockedError):
            return EXIT_TEMPFAIL
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("fair-agent: interrupted; work not committed is redone on the next run", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command}")


def with_roots(config: AgentConfig, folders: Sequence[Path]) -> AgentConfig:
    """The configuration with extra watch roots from the command line (validated again)."""
    if not folders:
        return config
    data = config.model_dump()
    data["roots"] = [*data["roots"], *({"path": folder} for folder in folders)]
    try:
        return AgentConfig.model_validate(data)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


async def _run(config: AgentConfig) -> int:
    """The service until a signal; signal handlers only set events, the service does the rest."""
    loop = asyncio.get_running_loop()
    stop, force = asyncio.Event(), asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info(f"{sig.name} received: shutting down")
            stop.set()
            return
        log.warning(f"second {sig.name}: forcing exit")
        force.set()
        # A safety net: whatever still runs after a few seconds is cut short.
        loop.call_later(FORCED_EXIT_AFTER_S, os._exit, EXIT_FORCED)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    # SIGHUP asks for a reconciliation now (fair-agent replay sends it). Installed before the lock
    # names this process, so an early SIGHUP can never kill it; one before the service exists is
    # moot, the start-up reconciliation comes anyway.
    services: list[Service] = []

    def on_hangup() -> None:
        for service in services:
            service.reconcile_now()

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    notifier = Notifier.from_env()
    try:
        with StateLock(config.state_dir, "run"):
            async with Ledger.open(config.ledger_path) as ledger:
                service = Service(config, ledger, notifier=notifier)
                services.append(service)
                await service.run(stop, force)
    finally:
        notifier.close()
    return EXIT_FORCED if force.is_set() else EXIT_OK


async def _scan(args: argparse.Namespace, config: AgentConfig, err: Console) -> int:
    with StateLock(config.state_dir, "scan"), _ScanBar(err) as bar:
        async with Ledger.open(config.ledger_path) as ledger:
            report = await scan(args.path, config, ledger, progress=bar, retry_dead=args.retry_dead)
    Console().print(summary_table(report))
    return EXIT_OK if report.ok else EXIT_DEAD_LETTERS


async def _status(args: argparse.Namespace, config: AgentConfig) -> int:
    async with Ledger.open_readonly(config.ledger_path) as ledger:
        status = await gather_status(config, ledger)
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
        return EXIT_OK
    console = Console()
    console.print(
        f"[bold]state directory[/bold] {status.state_dir}  ({_human_bytes(status.ledger_bytes)} of ledger)"
    )
    console.print(f"[bold]service[/bold] {status.service or 'not running'}")
    overview = Table(title="ledger", show_header=False, title_justify="left")
    for name, value in status.counts.items():
        overview.add_row(name.replace("_", " "), _human_bytes(value) if name == "bytes" else str(value))
    console.print(overview)
    if status.roots:
        roots = Table(title="watch roots", title_justify="left")
        for column in ("name", "path", "mode", "watcher"):
            roots.add_column(column)
        for root in status.roots:
            watcher = root.get("watcher", "")
            shown = f"[red]{escape(watcher)}[/red]" if watcher.startswith("failing") else watcher
            roots.add_row(escape(root["name"]), escape(root["path"]), root.get("mode", ""), shown)
        console.print(roots)
    if status.pending is not None:
        console.print(
            f"[bold]live[/bold] as of {status.live_updated_at}: {len(status.pending)} session(s) pending, "
            f"{len(status.in_flight or [])} in flight, {status.queue_depth} batch(es) queued"
            + (f"; metrics at {status.metrics}" if status.metrics else "")
        )
        waiting = Table(title="sessions pending and in flight", title_justify="left")
        for column in ("root", "session", "why"):
            waiting.add_column(column)
        for p in status.pending:
            why = f"{p['reason']} (quiet for {p['quietForS']:.0f} of {p['quietPeriodS']:.0f} s)"
            waiting.add_row(escape(p["root"]), escape(p["session"]), why)
        for f in status.in_flight or []:
            waiting.add_row(escape(f["root"]), escape(f["session"]), f["state"])
        if waiting.row_count:
            console.print(waiting)
    if status.recent_batches:
        batches = Table(title="recent batches", title_justify="left")
        for column in ("committed", "root", "session", "files", "bytes", "batch"):
            batches.add_column(column)
        for b in status.recent_batches:
            batches.add_row(
                b["committed_at"],
                escape(b["root"]),
                escape(b["session"]),
                str(b["files"]),
                _human_bytes(b["bytes"]),
                b["batch_id"],
            )
        console.print(batches)
    if status.dead_letters:
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
        console.print(dead)
    return EXIT_OK


async def _replay(args: argparse.Namespace, config: AgentConfig) -> int:
    holder = lock_holder(config.state_dir)
    if holder is not None and holder[1] != "run":
        raise ConfigError(
            f"a fair-agent {holder[1]} (pid {holder[0]}) is using {config.state_dir}; wait for it"
        )
    lock = None if holder else StateLock(config.state_dir, "replay")
    if lock is not None:
        lock.acquire()
    try:
        async with Ledger.open(config.ledger_path) as ledger:
            selected = await select_dead_letters(ledger, batch_id=args.batch, session_path=args.session)
            if not selected and not args.all:
                raise ConfigError("no dead letter matches that batch or session (see fair-agent status)")
            results = await replay(
                config, ledger, selected, service_pid=holder[0] if holder else None, wait_s=args.wait
            )
    finally:
        if lock is not None:
            lock.release()
    table = Table(title=f"replay of {len(results)} dead letter(s)", title_justify="left")
    for column in ("root", "file", "result"):
        table.add_column(column)
    for r in results:
        outcome = (
            "[green]ingested[/green]" if r.passed else f"[red]still failing:[/red] {escape(r.reason or '')}"
        )
        table.add_row(escape(r.root), escape(r.relpath), outcome)
    Console().print(table)
    return EXIT_OK if all(r.passed for r in results) else EXIT_DEAD_LETTERS


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
            disable=not console.is_terminal,
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
        ("not committed (run again)", f"[red]{report.uncommitted}[/red]" if report.uncommitted else "0"),
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
