"""What ``fair-agent status`` reports: read from the ledger, whether or not the service runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .config import AgentConfig
from .ledger import Ledger
from .statelock import lock_holder


@dataclass(slots=True)
class Status:
    state_dir: str
    service: str | None  # "pid 123 (run)" when an agent holds the state directory
    roots: list[dict[str, Any]]
    counts: dict[str, int]
    ledger_bytes: int
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    recent_batches: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def gather_status(config: AgentConfig, ledger: Ledger, *, limit: int = 10) -> Status:
    holder = lock_holder(config.state_dir)
    roots = await ledger.roots()
    names = {r.id: r.name for r in roots}
    dead = await ledger.dead_letters()
    ledger_bytes = sum(
        p.stat().st_size for p in config.state_dir.glob(config.ledger_path.name + "*") if p.is_file()
    )
    return Status(
        state_dir=str(config.state_dir),
        service=f"pid {holder[0]} ({holder[1]})" if holder else None,
        roots=[{"name": r.name, "path": str(r.path)} for r in roots],
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
    )
