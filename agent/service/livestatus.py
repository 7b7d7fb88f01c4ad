"""What a running service is doing now, for ``fair-agent status`` in another process.

The ledger knows what was done; only the service knows what it waits for. Every few seconds (on
its heartbeat) it replaces ``live-status.json`` in the state directory, and removes it on a clean
stop. A reader trusts the file only while the process named in it holds the state lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .snapshot import ServiceSnapshot

log = logging.getLogger("fair_agent.service")

LIVE_STATUS_NAME = "live-status.json"


def live_status(snapshot: ServiceSnapshot) -> dict[str, Any]:
    """The live-status document of a service snapshot."""
    tally = snapshot.tally
    return {
        "pid": os.getpid(),
        "updatedAt": _iso(time.time()),
        "startedAt": _iso(snapshot.started_unix),
        "roots": [
            {
                "name": r.name,
                "path": r.path,
                "mode": r.mode,
                "quietPeriodS": r.quiet_period_s,
                "marker": r.marker,
                "watcher": "ok" if r.watcher_error is None else f"failing: {r.watcher_error}",
            }
            for r in snapshot.roots
        ],
        "pending": [
            {
                "root": p.root,
                "session": p.session,
                "reason": p.reason,
                "quietForS": round(p.quiet_for_s, 1),
                "quietPeriodS": p.quiet_period_s,
            }
            for p in snapshot.pending
        ],
        "inFlight": [
            {
                "root": f.root,
                "session": f.session,
                "state": f"retrying: attempt {f.retry[0]} in {f.retry[1]:.1f} s"
                if f.retry
                else "being ingested or queued",
            }
            for f in snapshot.in_flight
        ],
        "queueDepth": snapshot.queue_depth,
        "helperProcesses": snapshot.helpers,
        "metrics": snapshot.metrics_url,
        "sinceStart": {
            "filesIngested": tally.files_ingested,
            "bytesIngested": tally.bytes_ingested,
            "deadLettered": tally.dead_lettered,
            "retries": tally.retries,
        },
    }


async def publish_live_status(state_dir: Path, snapshot: ServiceSnapshot) -> None:
    """Replace the live-status file (in a thread); a failure is only worth a warning."""
    try:
        await asyncio.to_thread(write_live_status, state_dir, live_status(snapshot))
    except OSError as exc:
        log.warning(f"could not write the live status for `fair-agent status`: {exc}")


def write_live_status(state_dir: Path, status: dict[str, Any]) -> None:
    target = state_dir / LIVE_STATUS_NAME
    temp = target.with_name(f".{LIVE_STATUS_NAME}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(status, indent=1), encoding="utf-8")
    os.replace(temp, target)  # readers see the old file or the new one, never half of one


def read_live_status(state_dir: Path, holder_pid: int) -> dict[str, Any] | None:
    try:
        status: dict[str, Any] = json.loads((state_dir / LIVE_STATUS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return status if status.get("pid") == holder_pid else None


def remove_live_status(state_dir: Path) -> None:
    (state_dir / LIVE_STATUS_NAME).unlink(missing_ok=True)


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=UTC).isoformat(timespec="seconds")
