"""``fair-agent inspect PATH``: what the agent knows of a data file, a sidecar or a session folder."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.naming import CRATE_NAME, error_name, is_within, sidecar_name
from ..ledger import FileVersion, Ledger
from .locate import locate


async def inspect_path(ledger: Ledger, path: Path) -> dict[str, Any]:
    """A JSON-ready account: for a file its versions, sidecar and dead letter; for a folder, its files.

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
