"""``fair-agent verify``: a fixity check of what was ingested, against the ledger and the sidecars.

Every ingested file under a path is hashed again and compared with its ledger record and its
sidecar; files that are there but were never ingested are reported too. Read-only: it may run
beside the service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import dataclass
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

from ..core import jsontext
from ..core.config import AgentConfig
from ..core.errors import ConfigError, FileChangedError, FileVanishedError
from ..core.naming import IgnoreRules, is_within, sidecar_name
from ..ingest.hashing import Hashed, Hasher, hash_groups
from ..ingest.reading import ProgressCallback
from ..ledger import FileVersion, Ledger
from ..service.discover import list_session, list_top_level
from .common import Command, Exit, add_common
from .locate import locate

#: Statuses that mean the data and its records disagree.
PROBLEMS = ("changed", "missing", "not-ingested", "dead-lettered", "sidecar-missing", "sidecar-mismatch")


@dataclass(frozen=True, slots=True)
class Finding:
    relpath: str
    status: str  # ok, one of PROBLEMS, or "unreadable"
    detail: str = ""
    expected: str | None = None
    actual: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in {
                "file": self.relpath,
                "status": self.status,
                "detail": self.detail or None,
                "expectedSha256": self.expected,
                "actualSha256": self.actual,
            }.items()
            if v is not None
        }


async def verify(
    path: Path,
    config: AgentConfig,
    ledger: Ledger,
    *,
    on_total: ProgressCallback | None = None,
    on_advance: ProgressCallback | None = None,
) -> list[Finding]:
    root, folder = await locate(ledger, path)
    known = await ledger.current_under(root.id, folder)
    on_disk = await asyncio.to_thread(_files_on_disk, root.path, folder, IgnoreRules(config.ignore))
    if not known and not on_disk and not await asyncio.to_thread(os.path.lexists, root.path / folder):
        raise ConfigError(f"{path} does not exist, and the ledger knows nothing under it")
    by_path = {v.relpath: v for v in known}
    dead = {d.relpath: d.message for d in await ledger.dead_letters(root_id=root.id)}
    findings = [
        Finding(p, "dead-lettered", dead[p])
        if p in dead
        else Finding(p, "not-ingested", "on disk, but not in the ledger (new since the last look?)")
        for p in sorted(on_disk - by_path.keys())
    ]
    present = [v for v in known if v.relpath in on_disk]
    findings += [
        Finding(v.relpath, "missing", "in the ledger, but not on disk", v.sha256)
        for v in known
        if v.relpath not in on_disk
    ]
    (on_total or _ignore)(len(present), sum(v.size for v in present))
    hasher = Hasher(config.hash_threads, config.read_chunk_bytes)
    try:
        groups = list(hash_groups(present))
        results = await asyncio.gather(
            *(_check_group(hasher, root.path, g, on_advance or _ignore) for g in groups)
        )
    finally:
        await asyncio.to_thread(hasher.close)
    findings += [f for group in results for f in group]
    return sorted(findings, key=lambda f: f.relpath)


async def _check_group(
    hasher: Hasher, root: Path, group: list[FileVersion], advance: ProgressCallback
) -> list[Finding]:
    results = await hasher.hash_group(root, group)
    findings = []
    for version, result in zip(group, results, strict=True):
        advance(1, version.size)
        if isinstance(result, FileChangedError):
            findings.append(
                Finding(version.relpath, "changed", f"changing while it was read: {result}", version.sha256)
            )
            continue
        if isinstance(result, FileVanishedError):
            findings.append(
                Finding(version.relpath, "missing", "vanished while it was checked", version.sha256)
            )
            continue
        if not isinstance(result, Hashed):
            findings.append(Finding(version.relpath, "unreadable", str(result), version.sha256))
            continue
        if result.sha256 != version.sha256:
            findings.append(
                Finding(
                    version.relpath,
                    "changed",
                    f"the bytes differ from version {version.version} ingested at {version.ingested_at}",
                    version.sha256,
                    result.sha256,
                )
            )
            continue
        findings.append(await asyncio.to_thread(_check_sidecar, root, version))
    return findings


def _check_sidecar(root: Path, version: FileVersion) -> Finding:
    try:
        sidecar = jsontext.loads((root / sidecar_name(version.relpath)).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Finding(
            version.relpath, "sidecar-missing", "the data is intact; its sidecar is gone", version.sha256
        )
    except (OSError, ValueError) as exc:
        return Finding(
            version.relpath, "sidecar-mismatch", f"the sidecar cannot be read: {exc}", version.sha256
        )
    if sidecar.get("sha256") != version.sha256:
        return Finding(
            version.relpath,
            "sidecar-mismatch",
            "the sidecar names other bytes than the ledger",
            version.sha256,
            str(sidecar.get("sha256")),
        )
    return Finding(version.relpath, "ok", "", version.sha256, version.sha256)


def _files_on_disk(root: Path, folder: str, ignore: IgnoreRules) -> set[str]:
    """Regular files at or below ``folder`` that the agent would take for data."""
    target = root / folder
    if folder and not target.is_dir():
        return (
            {folder}
            if target.is_file() and not target.is_symlink() and not ignore.ignores_path(folder)
            else set()
        )
    top = folder.split("/", 1)[0]
    if folder:
        listings = [list_session(root, top, ignore)]
    else:
        level = list_top_level(root, ignore)
        listings = level.loose + [list_session(root, f, ignore) for f in level.folders]
    found = {f.relpath for listing in listings for f in listing.files}
    return {p for p in found if is_within(p, folder)}


def _ignore(files: int, size: int) -> None:
    pass


def summary(findings: list[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.status] = counts.get(finding.status, 0) + 1
    return counts


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("path", type=Path, metavar="PATH")
    cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_common(cmd)


def run(args: argparse.Namespace, config: AgentConfig) -> int:
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
    with progress:
        findings = asyncio.run(
            _verify(
                args.path,
                config,
                on_total=lambda files, size: progress.update(task, total=size),
                on_advance=lambda files, size: progress.update(task, advance=size),
            )
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
        return Exit.ERROR
    return Exit.PROBLEMS if any(counts.get(p) for p in PROBLEMS) else Exit.OK


async def _verify(
    path: Path, config: AgentConfig, *, on_total: ProgressCallback, on_advance: ProgressCallback
) -> list[Finding]:
    async with Ledger.open_readonly(config.ledger_path) as ledger:
        return await verify(path, config, ledger, on_total=on_total, on_advance=on_advance)


COMMAND = Command(
    description="Hash every ingested file under PATH again and compare it with the ledger and "
    "its sidecar; report changed, missing and never-ingested files, and sidecars that are gone "
    "or disagree. Read-only; may run beside the service. Exit status: 0 when all is intact, 1 "
    "when anything differs, 3 when files could not be read or PATH is not known.",
    examples=("fair-agent verify /data/plate-reader --json > fixity-report.json",),
    add_arguments=add_arguments,
    run=run,
)
