"""What a running service is doing now, for ``fair-agent status`` in another process.

The ledger knows what was done; only the service knows what it waits for. Every few seconds (on
its heartbeat) it replaces ``live-status.json`` in the state directory, and removes it on a clean
stop. A reader trusts the file only while the process named in it holds the state lock.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .daemon import Service

LIVE_STATUS_NAME = "live-status.json"


def snapshot(service: Service) -> dict[str, Any]:
    now_mono, names = time.monotonic(), {w.root.id: w.root.name for w in service.roots.values()}
    pending = [
        {
            "root": names.get(p.key[0], "?"),
            "session": p.key[1],
            "reason": p.reason,
            "quietForS": round(max(0.0, now_mono - p.last_change), 1),
            "quietPeriodS": p.policy.quiet_period_s,
        }
        for p in sorted(service.tracker.sessions(), key=lambda p: p.key)
    ]
    in_flight = []
    for key in sorted(service.in_flight):
        retry = service.retrying.get(key)
        state = (
            f"retrying: attempt {retry[0]} in {max(0.0, retry[1] - now_mono):.1f} s"
            if retry
            else "being ingested or queued"
        )
        in_flight.append({"root": names.get(key[0], "?"), "session": key[1], "state": state})
    tally = service.pipeline.tally
    return {
        "pid": os.getpid(),
        "updatedAt": _iso(time.time()),
        "startedAt": _iso(service.started_unix),
        "roots": [
            {
                "name": w.root.name,
                "path": str(w.root.path),
                "mode": w.mode,
                "quietPeriodS": w.policy.quiet_period_s,
                "marker": w.policy.marker,
                "watcher": f"failing: {service.watcher_errors[w.root.id]}"
                if w.root.id in service.watcher_errors
                else "ok",
            }
            for w in service.roots.values()
        ],
        "pending": pending,
        "inFlight": in_flight,
        "queueDepth": service.pool.depth,
        "metrics": service.metrics_endpoint.url if service.metrics_endpoint else None,
        "sinceStart": {
            "filesIngested": tally.files_ingested,
            "bytesIngested": tally.bytes_ingested,
            "deadLettered": tally.dead_lettered,
            "retries": tally.retries,
        },
    }


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
