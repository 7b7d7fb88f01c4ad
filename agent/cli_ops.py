"""The ``inspect``, ``verify`` and ``init`` commands: argv in, tables or JSON out, exit codes."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from .commands.init import starter_config
from .commands.inspect import inspect_path
from .commands.verify import PROBLEMS, summary, verify
from .core.config import AgentConfig, load_config
from .core.errors import ConfigError
from .ledger import Ledger

EXIT_OK, EXIT_PROBLEMS, EXIT_ERRORS = 0, 1, 3


def register(commands: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    inspect_cmd = commands.add_parser(
        "inspect",
        help="what the agent knows of a file, a sidecar or a session folder",
        description="Show, for a data file (or its sidecar): its state, metadata, validation and "
        "drift status, hash, batch and sequence, and the ledger's history of its versions; for a "
        "folder: its sessions and files with their status, dead letters and the session's error file.",
        epilog="example: fair-agent inspect /data/plate-reader/EXP-000123_alice/OD600_kinetics.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect_cmd.add_argument("path", type=Path, metavar="PATH")
    inspect_cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_common(inspect_cmd)

    verify_cmd = commands.add_parser(
        "verify",
        help="fixity check: hash every ingested file under PATH again and compare",
        description="Hash every ingested file under PATH again and compare it with the ledger and "
        "its sidecar; report changed, missing and never-ingested files, and sidecars that are gone "
        "or disagree. Read-only; may run beside the service. Exit status: 0 when all is intact, 1 "
        "when anything differs, 3 when files could not be read or PATH is not known.",
        epilog="example: fair-agent verify /data/plate-reader --json > fixity-report.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify_cmd.add_argument("path", type=Path, metavar="PATH")
    verify_cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_common(verify_cmd)

    init_cmd = commands.add_parser(
        "init",
        help="write a commented starter configuration",
        description="Write a commented starter configuration to FILE (watch roots, state directory, "
        "rules folder, metrics, site) that loads as it is. An existing file is kept unless --force.",
        epilog="example: fair-agent init /etc/fair-agent/agent.toml --watch /data/plate-reader "
        "--rules /etc/fair-agent/rules",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init_cmd.add_argument("file", type=Path, metavar="FILE")
    init_cmd.add_argument("--watch", type=Path, action="append", default=[], metavar="FOLDER")
    init_cmd.add_argument("--force", action="store_true", help="replace an existing file")
    add_common(init_cmd)


async def run_inspect(args: argparse.Namespace, config: AgentConfig) -> int:
    async with Ledger.open_readonly(config.ledger_path) as ledger:
        account = await inspect_path(ledger, args.path)
    if args.json:
        print(json.dumps(account, indent=2, default=str))
        return EXIT_OK
    console = Console()
    if account["kind"] == "file":
        _print_file(console, account)
    else:
        _print_folder(console, account)
    return EXIT_OK


def _print_file(console: Console, a: dict[str, Any]) -> None:
    console.print(f"[bold]{escape(a['file'])}[/bold] in {escape(a['root'])}: {a['state']}")
    if a.get("current"):
        c = a["current"]
        console.print(f"  sha256 {c['sha256']}  ({c['size']} bytes)")
        console.print(
            f"  version {c['version']}, batch {c['batchId']} / sequence {c['sequence']}, at {c['ingestedAt']}"
        )
    sidecar = a.get("sidecar")
    if sidecar:
        console.print(
            f"  dataset type {sidecar['datasetType']}; validation {json.dumps(sidecar['validation'])}"
        )
        console.print(f"  drift {json.dumps(sidecar['drift'])}")
        if sidecar.get("dataset"):
            console.print("  fields of its dataset type:")
            console.print_json(json.dumps(sidecar["dataset"], default=str))
        if sidecar.get("metadata"):
            console.print("  metadata read from the file:")
            console.print_json(json.dumps(sidecar["metadata"], default=str))
        if sidecar.get("note"):
            console.print(f"  [red]{sidecar['note']}[/red]")
    if a.get("deadLetter"):
        d = a["deadLetter"]
        what = f"{d['category']}, {d['errorClass']}, {d['attempts']} attempt(s)"
        console.print(f"  [red]dead letter[/red] ({what}): {escape(d['reason'])}")
        console.print(f"  what to do: {escape(d['whatToDo'])}")
    if a["history"]:
        table = Table(title="versions in the ledger", title_justify="left")
        for column in ("version", "status", "sha256", "size", "batch / seq", "ingested"):
            table.add_column(column)
        for v in a["history"]:
            table.add_row(
                str(v["version"]),
                v["status"],
                v["sha256"][:16] + "…",
                str(v["size"]),
                f"{v['batchId'][:8]} / {v['sequence']}",
                v["ingestedAt"],
            )
        console.print(table)


def _print_folder(console: Console, a: dict[str, Any]) -> None:
    console.print(
        f"[bold]{escape(a['folder'])}[/bold] in {escape(a['root'])}: {len(a['files'])} file(s) ingested in "
        f"{len(a['sessions'])} session(s); crate {'present' if a['crate'] else 'absent'}"
    )
    if a["files"]:
        table = Table(title="files", title_justify="left")
        for column in ("file", "version", "sha256", "batch / seq", "dataset type", "validation", "drift"):
            table.add_column(column)
        for f in a["files"]:
            table.add_row(
                escape(f["file"]),
                str(f["version"]),
                f["sha256"][:16] + "…",
                f"{f['batchId'][:8]} / {f['sequence']}",
                str(f["datasetType"]),
                str(f["validation"]),
                str(f["drift"]),
            )
        console.print(table)
    for d in a["deadLetters"]:
        console.print(f"[red]dead letter[/red] {escape(d['file'])}: {escape(d['reason'])}")
    if a.get("sessionError"):
        console.print(f"[red]the session was rejected:[/red] {escape(a['sessionError'].get('reason', ''))}")


async def run_verify(args: argparse.Namespace, config: AgentConfig) -> int:
    err = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]verify"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    task = progress.add_task("verify", total=0)
    async with Ledger.open_readonly(config.ledger_path) as ledger:
        with progress:
            findings = await verify(
                args.path,
                config,
                ledger,
                on_total=lambda files, size: progress.update(task, total=size),
                on_advance=lambda files, size: progress.update(task, advance=size),
            )
    counts = summary(findings)
    problems = [f for f in findings if f.status != "ok"]
    if args.json:
        print(
            json.dumps(
                {"path": str(args.path), "counts": counts, "findings": [f.to_json() for f in problems]},
                indent=2,
            )
        )
    else:
        console = Console()
        if problems:
            table = Table(title="fixity problems", title_justify="left")
            for column in ("file", "status", "detail"):
                table.add_column(column)
            for f in problems:
                table.add_row(escape(f.relpath), f"[red]{f.status}[/red]", escape(f.detail))
            console.print(table)
        console.print(
            ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing ingested here"
        )
    if counts.get("unreadable"):
        return EXIT_ERRORS
    return EXIT_PROBLEMS if any(counts.get(p) for p in PROBLEMS) else EXIT_OK


def run_init(args: argparse.Namespace) -> int:
    if args.file.exists() and not args.force:
        raise ConfigError(f"{args.file} exists; keep it, or pass --force to replace it")
    text = starter_config(args.watch, args.state_dir, args.rules)
    args.file.parent.mkdir(parents=True, exist_ok=True)
    args.file.write_text(text, encoding="utf-8")
    load_config(args.file, env={})  # what it wrote must load as it is
    Console().print(f"wrote {args.file}; check it with: fair-agent rules check --config {args.file}")
    return EXIT_OK
