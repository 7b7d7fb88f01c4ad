"""What ``fair-agent status`` reports: read from the ledger, whether or not the service runs."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.batch import Root
from ..core.config import AgentConfig
from ..fs.statelock import lock_holder
from ..ledger import Ledger
from ..service.livestatus import read_live_status
from ..service.watch import root_mode


@dataclass(slots=True)
class Status:
    state_dir: str
    service: str | None  # "pid 123 (run)" when an agent holds the state directory
    roots: list[dict[str, Any]]
    counts: dict[str, int]
    ledger_bytes: int
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    recent_batches: list[dict[str, Any]] = field(default_factory=list)
    #: From the running service (None when none runs): sessions waiting and why, work in flight.
    pending: list[dict[str, Any]] | None = None
    in_flight: list[dict[str, Any]] | None = None
    queue_depth: int | None = None
    metrics: str | None = None
    live_updated_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def gather_status(config: AgentConfig, ledger: Ledger, *, limit: int = 10) -> Status:
    holder = lock_holder(config.state_dir)
    live = read_live_status(config.state_dir, holder[0]) if holder else None
    roots = await ledger.roots()
    names = {r.id: r.name for r in roots}
    dead = await ledger.dead_letters()
    ledger_bytes = sum(
        p.stat().st_size for p in config.state_dir.glob(config.ledger_path.name + "*") if p.is_file()
    )
    return Status(
        state_dir=str(config.state_dir),
        service=f"pid {holder[0]} ({holder[1]})" if holder else None,
        roots=live["roots"] if live else await asyncio.to_thread(_configured_roots, config, roots),
        counts=await ledger.summary(),
        ledger_bytes=ledger_bytes,
        dead_letters=[
            {
                "root": names.get(d.root_id, "?"),
                "file": d.relpath,
                "category": d.category,
                "error_class": d.error_class,
                "message": d.message,
                "attempts": d.attempts,
                "batch_id": d.batch_id,
                "last_seen": d.last_seen,
            }
            for d in dead[:limit]
        ],
        recent_batches=[
            {
                "batch_id": b[0],
                "root": b[1],
                "session": b[2],
                "files": b[3],
                "bytes": b[4],
                "committed_at": b[5],
            }
            for b in await ledger.recent_batches(limit)
        ],
        pending=live["pending"] if live else None,
        in_flight=live["inFlight"] if live else None,
        queue_depth=live["queueDepth"] if live else None,
        metrics=live["metrics"] if live else None,
        live_updated_at=live["updatedAt"] if live else None,
    )


def _configured_roots(config: AgentConfig, known: list[Root]) -> list[dict[str, Any]]:
    """Without a service: the roots the ledger knows, and the mode each configured one would get."""
    modes: dict[str, tuple[str, str]] = {}
    for settings in config.roots:
        where = str(settings.path.expanduser().resolve())
        try:
            modes[where] = root_mode(settings)
        except OSError as exc:
            modes[where] = ("unavailable", str(exc))
    rows = [
        {"name": r.name, "path": str(r.path), "mode": modes.pop(str(r.path), ("not configured", ""))[0]}
        for r in known
    ]
    rows += [{"name": Path(p).name, "path": p, "mode": m} for p, (m, _) in modes.items()]
    return rows
