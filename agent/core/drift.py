"""The vocabulary of metadata drift: a file's shape, a dataset type's baseline, and a drift between them.

Values only: how shapes are taken and compared is the curation stage's business (ingest.drift); the
ledger stores baselines and reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: A file's shape: key ("field:<name>", "key:<name>", "header:<name>", "column:<name>") -> type name.
Shape = dict[str, str]


@dataclass(slots=True)
class Baseline:
    dataset_type: str
    origin: str = "learned"  # or "declared"
    sessions_seen: int = 0
    sessions_needed: int = 3
    files_seen: int = 0
    #: key -> {"type": ..., "files": how many learnt files had it}
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: When the ledger last changed it (ISO 8601; "" for one not stored).
    updated_at: str = ""

    @property
    def learning(self) -> bool:
        return self.origin == "learned" and self.sessions_seen < self.sessions_needed

    def learn(self, shape: Shape) -> None:
        self.files_seen += 1
        for key, kind in shape.items():
            entry = self.keys.setdefault(key, {"type": kind, "files": 0})
            entry["files"] += 1

    def expected(self) -> set[str]:
        return {k for k, v in self.keys.items() if v["files"] >= self.files_seen}

    def to_json(self) -> dict[str, Any]:
        return {
            "datasetType": self.dataset_type,
            "origin": self.origin,
            "sessionsSeen": self.sessions_seen,
            "sessionsNeeded": self.sessions_needed,
            "filesSeen": self.files_seen,
            "keys": self.keys,
            "updatedAt": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Drift:
    new: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    #: (key, type in the baseline, type now)
    retyped: tuple[tuple[str, str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.new or self.missing or self.retyped)

    def merged(self, other: Drift) -> Drift:
        return Drift(
            tuple(sorted(set(self.new) | set(other.new))),
            tuple(sorted(set(self.missing) | set(other.missing))),
            tuple(sorted(set(self.retyped) | set(other.retyped))),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "new": list(self.new),
            "missing": list(self.missing),
            "retyped": [{"key": k, "was": was, "now": now} for k, was, now in self.retyped],
        }

    def sentence(self) -> str:
        parts = []
        if self.new:
            parts.append("new: " + ", ".join(self.new))
        if self.missing:
            parts.append("missing: " + ", ".join(self.missing))
        if self.retyped:
            parts.append("retyped: " + ", ".join(f"{k} ({was} -> {now})" for k, was, now in self.retyped))
        return "; ".join(parts)
