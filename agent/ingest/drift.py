"""Metadata drift: has an instrument's export changed shape since the sessions we learnt from?

The drift step of curation, in one place: taking shapes, comparing them with a baseline, and
deciding per dataset type what a batch learns, reports or quarantines. The vocabulary (Shape,
Baseline, Drift) is in core.drift; the ledger stores baselines and reports.

A file's *shape* maps keys to type names: its validated fields (``field:<name>``), the extractor's
top-level keys (``key:<name>``), header lines (``header:<name>``) and, for tables, the columns
(``column:<name>``). A dataset type's baseline is learnt from its first N accepted sessions, or
declared in its rule. A key seen in every learnt file is *expected*; one seen in some is optional.
Compared with the baseline, a file shows new keys (never seen), missing ones (expected, absent) and
retyped ones.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from ..core.batch import Batch
from ..core.drift import Baseline, Drift, Shape
from ..core.errors import DriftQuarantinedError
from ..core.records import EXTRACTION_FAILURE, FileRecord
from ..fs.turns import Releasable, Turns, release_all
from ..ledger import DriftUpdate, Ledger
from ..rules import Rule, Validated
from ..rules.schema import DriftSettings

log = logging.getLogger("fair_agent.curate")

#: Keys of an extractor's output that say how the file was read, not what it holds.
_NOT_CONTENT = frozenset(
    {
        "extractor",
        "format",
        "header",
        "columns",
        "encoding",
        "note",
        "dates",
        # The keys every extractor may give (see extractors.base): summaries, not the export's shape.
        "acquisition",
        "description",
        "instrument",
        "warnings",
        EXTRACTION_FAILURE,
        "metadataTruncated",
    }
)


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


def declared_baseline(dataset_type: str, settings: DriftSettings) -> Baseline:
    baseline = Baseline(dataset_type, origin="declared", sessions_needed=0, files_seen=1)
    for name in settings.fields or ():
        baseline.keys[f"field:{name}"] = {"type": "any", "files": 1}
    for name, kind in (settings.columns or {}).items():
        baseline.keys[f"column:{name}"] = {"type": kind, "files": 1}
    return baseline


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


@dataclass(slots=True)
class DriftVerdict:
    """What the drift step decided for a batch's accepted files."""

    #: Each checked file's drift block for its sidecar (files of types with drift off have none).
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Baselines to learn from the batch, and drift to report, in the batch's own transaction.
    updates: list[DriftUpdate] = field(default_factory=list)
    drifted_types: list[str] = field(default_factory=list)
    #: Set when a rule quarantines drift: the session is rejected with it.
    quarantined: DriftQuarantinedError | None = None
    #: Held until the batch is committed: while a baseline learns, its sessions go one at a time.
    held: list[Releasable] = field(default_factory=list)


class DriftCheck:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        # One per dataset type (a handful): a baseline that is learning changes with every commit.
        self._learning: dict[str, asyncio.Lock] = {}
        # The same turns between processes: a backlog scanned by several (service.shards).
        self._turns = Turns(ledger.path.parent, "drift-learning")

    async def check(self, batch: Batch, checked: list[tuple[FileRecord, Rule, Validated]]) -> DriftVerdict:
        verdict = DriftVerdict()
        by_type: dict[str, tuple[Rule, list[tuple[FileRecord, Shape]]]] = {}
        for record, rule, validated in checked:
            # Shapes only for files whose drift is checked: most files of a site (the generic rule) are not.
            if rule.spec.drift.policy != "off":
                shape = shape_of(validated.values, record.metadata)
                by_type.setdefault(rule.dataset_type, (rule, []))[1].append((record, shape))
        quarantine: list[tuple[str, Drift]] = []
        try:
            for dataset_type, (rule, files) in sorted(by_type.items()):
                drift = await self._check_type(batch, dataset_type, rule, files, verdict)
                if drift and rule.spec.drift.policy == "quarantine":
                    quarantine.append((dataset_type, drift))
        except BaseException:
            # The verdict never reaches the caller, who would release what it holds after the commit.
            release_all(verdict.held)
            raise
        if quarantine:
            verdict.quarantined = _quarantine_error(quarantine)
        return verdict

    async def _baseline(self, dataset_type: str, rule: Rule) -> Baseline:
        settings = rule.spec.drift
        if settings.declared:
            return declared_baseline(dataset_type, settings)
        stored = await self.ledger.drift_baseline(dataset_type)
        return stored or Baseline(dataset_type, sessions_needed=settings.learn_sessions)

    async def _check_type(
        self,
        batch: Batch,
        dataset_type: str,
        rule: Rule,
        files: list[tuple[FileRecord, Shape]],
        verdict: DriftVerdict,
    ) -> Drift | None:
        """One dataset type's files: learnt while its baseline learns, else compared; the drift found."""
        settings = rule.spec.drift
        baseline = await self._baseline(dataset_type, rule)
        if baseline.learning:
            # Sessions learnt at once would each see the baseline before the other's commit:
            # from here to the commit, the type's sessions take turns, in this process and
            # between processes; then read it again.
            lock = self._learning.setdefault(dataset_type, asyncio.Lock())
            await lock.acquire()
            verdict.held.append(lock)
            verdict.held.append(await self._turns.take(dataset_type))
            baseline = await self._baseline(dataset_type, rule)
        if baseline.learning:
            for record, _ in files:
                verdict.blocks[record.relpath] = {
                    "status": "learning",
                    "datasetType": dataset_type,
                    "sessionsSeen": baseline.sessions_seen,
                    "sessionsNeeded": baseline.sessions_needed,
                }
            verdict.updates.append(
                DriftUpdate(dataset_type, settings.learn_sessions, [shape for _, shape in files])
            )
            return None
        session_drift = Drift()
        for record, shape in files:
            drift = compare(baseline, shape)
            session_drift = session_drift.merged(drift)
            verdict.blocks[record.relpath] = {
                "status": "drifted" if drift else "none",
                "datasetType": dataset_type,
                "policy": settings.policy,
                "baseline": baseline.origin,
                **(drift.to_json() if drift else {}),
            }
        if not session_drift:
            return None
        verdict.drifted_types.append(dataset_type)
        verdict.updates.append(
            DriftUpdate(
                dataset_type,
                settings.learn_sessions,
                [],
                session_drift,
                settings.policy,
                [shape for _, shape in files],
            )
        )
        log.warning(
            f"metadata drift in dataset type {dataset_type!r}: {session_drift.sentence()}",
            extra={"session": batch.session, "dataset_type": dataset_type, "policy": settings.policy},
        )
        return session_drift


def _quarantine_error(quarantine: list[tuple[str, Drift]]) -> DriftQuarantinedError:
    details: list[dict[str, object]] = [
        {"datasetType": t, "drift": d.to_json(), "baseline": "fair-agent drift"} for t, d in quarantine
    ]
    message = "; ".join(
        f"the metadata of dataset type {t!r} drifted from its baseline ({d.sentence()})"
        for t, d in quarantine
    )
    return DriftQuarantinedError(f"session quarantined: {message}", details=details)
