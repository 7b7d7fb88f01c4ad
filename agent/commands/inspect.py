"""``fair-agent inspect PATH``: what the agent knows of a data file, a sidecar or a session folder."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core.config import AgentConfig
from ..core.errors import ConfigError
from ..core.naming import CRATE_NAME, error_name, is_within, sidecar_name
from ..ledger import FileVersion, Ledger
from .common import Command, Exit, add_common
from .locate import locate


async def inspect_path(
    ledger: Ledger, path: Path, *, bucket: str | None = None, announces: bool = False
) -> dict[str, Any]:
    """A JSON-ready account: for a file its versions (where each is stored, ``bucket`` naming the
    store's; whether the hub's catalogue holds it, when the agent ``announces``), whether it is safe
    to delete, its sidecar and dead letter; for a folder, its files.

    What was deleted from disk is still inspected from the ledger, and said to be gone.
    """
    root, relpath = await locate(ledger, path)
    target = root.path / relpath
    exists = await asyncio.to_thread(os.path.lexists, target)
    below = await ledger.current_under(root.id, relpath) if relpath else []
    is_folder = (
        not relpath or await asyncio.to_thread(target.is_dir) or any(v.relpath != relpath for v in below)
    )
    if is_folder:
        account = await _folder(ledger, root.path, root.id, root.name, relpath)
    else:
        account = await _file(ledger, root.path, root.id, root.name, relpath)
        await _add_locations(ledger, root.id, relpath, account["history"], bucket)
        await _add_catalogue(
            ledger, root.id, relpath, account, stored=bucket is not None, announces=announces
        )
        if not exists and not account["history"] and "deadLetter" not in account:
            raise ConfigError(f"{path} does not exist, and the ledger knows nothing of it")
    account["onDisk"] = exists
    return account


async def _file(ledger: Ledger, root: Path, root_id: int, root_name: str, relpath: str) -> dict[str, Any]:
    versions = await ledger.file_versions(root_id, relpath)
    dead = [d for d in await ledger.dead_letters(root_id=root_id) if d.relpath == relpath]
    current = next((v for v in versions if v.status == "current"), None)
    sidecar = await asyncio.to_thread(_read_json, root / sidecar_name(relpath))
    if current:
        state = "ingested"
    elif dead:
        state = "dead-lettered"
    elif versions:
        state = "removed"
    else:
        state = "not ingested"
    account: dict[str, Any] = {
        "kind": "file",
        "root": root_name,
        "file": relpath,
        "session": (current or versions[-1]).session if versions else None,
        "state": state,
        "history": [_version(v) for v in versions],
    }
    if current:
        account["current"] = _version(current)
    if sidecar is not None:
        account["sidecar"] = {
            key: sidecar.get(key)
            for key in (
                "datasetType",
                "dataset",
                "validation",
                "drift",
                "encodingFormat",
                "sha256",
                "warnings",
            )
        }
        account["sidecar"]["metadata"] = sidecar.get("metadata")
        if current and sidecar.get("sha256") != current.sha256:
            account["sidecar"]["note"] = (
                "the sidecar names other bytes than the ledger; run fair-agent verify"
            )
    if dead:
        d = dead[0]
        account["deadLetter"] = {
            "category": d.category,
            "errorClass": d.error_class,
            "reason": d.message,
            "whatToDo": d.advice,
            "attempts": d.attempts,
            "firstSeen": d.first_seen,
            "lastSeen": d.last_seen,
        }
    return account


async def _folder(ledger: Ledger, root: Path, root_id: int, root_name: str, relpath: str) -> dict[str, Any]:
    versions = await ledger.current_under(root_id, relpath)
    dead = [d for d in await ledger.dead_letters(root_id=root_id) if is_within(d.relpath, relpath)]
    files = []
    for v in versions:
        sidecar = await asyncio.to_thread(_read_json, root / sidecar_name(v.relpath)) or {}
        files.append(
            {
                **_version(v),
                "file": v.relpath,
                "session": v.session,
                "datasetType": sidecar.get("datasetType"),
                "validation": (sidecar.get("validation") or {}).get("status"),
                "drift": (sidecar.get("drift") or {}).get("status"),
            }
        )
    folder = root / relpath
    session_error = (
        await asyncio.to_thread(_read_json, folder.with_name(error_name(folder.name))) if relpath else None
    )
    return {
        "kind": "root" if not relpath else "folder",
        "root": root_name,
        "folder": relpath or ".",
        "sessions": sorted({v.session for v in versions}),
        "crate": await asyncio.to_thread((folder / CRATE_NAME).is_file),
        "files": files,
        "deadLetters": [
            {"file": d.relpath, "errorClass": d.error_class, "reason": d.message, "attempts": d.attempts}
            for d in dead
        ],
        "sessionError": session_error,
    }


async def _add_locations(
    ledger: Ledger, root_id: int, relpath: str, history: list[dict[str, Any]], bucket: str | None
) -> None:
    """Each version's place in the object store: ``stored`` in the version's account."""
    locations = await ledger.outbox.locations(root_id, relpath)
    for version in history:
        where = locations.get(version["version"])
        if where is not None:
            version["stored"] = {
                "state": where.state,
                "uri": f"s3://{bucket}/{where.object_key}" if bucket and where.object_key else None,
                "storedAt": where.stored_at,
                "verifiedAt": where.verified_at,
                "problem": where.last_error,
            }


async def _add_catalogue(
    ledger: Ledger, root_id: int, relpath: str, account: dict[str, Any], *, stored: bool, announces: bool
) -> None:
    """``catalogued`` per version, and ``safeToDelete`` (with the reason when it is not)."""
    states = await ledger.announcements.catalogue_state(root_id, relpath)
    for version in account["history"]:
        state = states.get(version["version"])
        version["catalogued"] = bool(state and state.catalogued)
    current = account.get("current")
    if current is None:
        account["safeToDelete"], account["notSafeBecause"] = False, "no current version is ingested"
        return
    state = states.get(current["version"])
    where = next((v.get("stored") for v in account["history"] if v["version"] == current["version"]), None)
    reason = None
    if not stored:
        reason = "no [store] is configured: no second copy of the bytes exists"
    elif where is None or where["state"] != "stored":
        reason = "the current version is not stored and verified in the object store yet"
    elif not announces:
        reason = "no [bus] is configured: the catalogue cannot confirm it holds the file"
    elif not (state and state.stored_catalogued):
        reason = "the hub has not yet confirmed (receipted) that its catalogue knows where the bytes are"
    account["safeToDelete"] = reason is None
    if reason is not None:
        account["notSafeBecause"] = reason


def _version(v: FileVersion) -> dict[str, Any]:
    return {
        "version": v.version,
        "status": v.status,
        "sha256": v.sha256,
        "size": v.size,
        "batchId": v.batch_id,
        "sequence": v.sequence,
        "ingestedAt": v.ingested_at,
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("path", type=Path, metavar="PATH")
    cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_common(cmd)


def run(args: argparse.Namespace, config: AgentConfig) -> int:
    account = asyncio.run(_inspect(config, args.path))
    if args.json:
        print(json.dumps(account, indent=2, default=str))
        return Exit.OK
    console = Console()
    if account["kind"] == "file":
        _print_file(console, account)
    else:
        _print_folder(console, account)
    return Exit.OK


async def _inspect(config: AgentConfig, path: Path) -> dict[str, Any]:
    async with Ledger.open_readonly(config.ledger_path) as ledger:
        return await inspect_path(
            ledger,
            path,
            bucket=config.store.bucket if config.store else None,
            announces=config.bus is not None,
        )


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
    if "safeToDelete" in a:
        because = "" if a["safeToDelete"] else f" ({escape(a['notSafeBecause'])})"
        console.print(f"  safe to delete here: {'yes' if a['safeToDelete'] else 'no'}{because}")
    if a["history"]:
        table = Table(title="versions in the ledger", title_justify="left")
        for column in ("version", "status", "sha256", "size", "batch / seq", "ingested", "stored"):
            table.add_column(column)
        for v in a["history"]:
            table.add_row(
                str(v["version"]),
                v["status"],
                v["sha256"][:16] + "…",
                str(v["size"]),
                f"{v['batchId'][:8]} / {v['sequence']}",
                v["ingestedAt"],
                _stored(v.get("stored")),
            )
        console.print(table)


def _stored(stored: dict[str, Any] | None) -> str:
    if stored is None:
        return "-"
    if stored["state"] == "stored":
        return f"verified {stored['verifiedAt']}"
    return escape(stored["state"] + (f": {stored['problem']}" if stored["problem"] else ""))


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


COMMAND = Command(
    description="Show, for a data file (or its sidecar): its state, metadata, validation and "
    "drift status, hash, batch and sequence, and the ledger's history of its versions; for a "
    "folder: its sessions and files with their status, dead letters and the session's error file.",
    examples=("fair-agent inspect /data/plate-reader/EXP-000123_alice/OD600_kinetics.csv",),
    add_arguments=add_arguments,
    run=run,
)
