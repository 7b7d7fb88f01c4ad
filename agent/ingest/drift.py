"""Metadata drift: has an instrument's export changed shape since the sessions we learnt from?

A file's *shape* maps keys to type names: its validated fields (``field:<name>``), the extractor's
top-level keys (``key:<name>``), header lines (``header:<name>``) and, for tables, the columns
(``column:<name>``). A dataset type's baseline is learnt from its first N accepted sessions, or
declared in its rule. A key seen in every learnt file is *expected*; one seen in some is optional.
Compared with the baseline, a file shows new keys (never seen), missing ones (expected, absent) and
retyped ones. Pure functions; the ledger stores baselines and reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..rules.schema import DriftSettings

Shape = dict[str, str]
#: Keys of an extractor's output that say how the file was read, not what it holds.
_NOT_CONTENT = frozenset({"extractor", "format", "header", "columns", "encoding", "note", "dates"})


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__


def shape_of(values: dict[str, Any], metadata: dict[str, Any]) -> Shape:
    shape: Shape = {}
    for name, value in values.items():
        if name in ("parameters", "tags"):
            continue
        # Validated dates are ISO strings by now; the field's declared type is what matters.
        shape[f"field:{name}"] = type_name(value)
    for name, value in values.get("parameters", {}).items():
        shape[f"field:{name}"] = type_name(value)
    for key, value in metadata.items():
        if key not in _NOT_CONTENT:
            shape[f"key:{key}"] = type_name(value)
    header = metadata.get("header")
    if isinstance(header, dict):
        for key in header:
            shape[f"header:{key}"] = "string"
    for column in metadata.get("columns", []):
        if isinstance(column, dict) and "name" in column:
            shape[f"column:{column['name']}"] = str(column.get("type", "unknown"))
    return shape


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


def declared_baseline(dataset_type: str, settings: DriftSettings) -> Baseline:
    baseline = Baseline(dataset_type, origin="declared", sessions_needed=0, files_seen=1)
    for name in settings.fields or ():
        baseline.keys[f"field:{name}"] = {"type": "any", "files": 1}
    for name, kind in (settings.columns or {}).items():
        baseline.keys[f"column:{name}"] = {"type": kind, "files": 1}
    return baseline


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


def compare(baseline: Baseline, shape: Shape) -> Drift:
    if baseline.origin == "declared":
        # A declared baseline speaks only of the kinds of keys it names.
        kinds = {key.split(":", 1)[0] for key in baseline.keys}
        shape = {k: v for k, v in shape.items() if k.split(":", 1)[0] in kinds}
    known = baseline.keys
    new = sorted(k for k in shape if k not in known)
    missing = sorted(k for k in baseline.expected() if k not in shape)
    retyped = sorted(
        (k, known[k]["type"], kind)
        for k, kind in shape.items()
        if k in known and known[k]["type"] not in ("any", kind) and not _widening(known[k]["type"], kind)
    )
    return Drift(tuple(new), tuple(missing), tuple(retyped))


def _widening(was: str, now: str) -> bool:
    # An integer column that now holds a decimal is the same measurement, not a new template; a
    # column left empty in this file has no type to compare.
    return {was, now} == {"integer", "number"} or "empty" in (was, now)
