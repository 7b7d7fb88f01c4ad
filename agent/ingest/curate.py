"""The curation stage: each new file's rule, its validated dataset fields, and drift, per batch.

Runs after extraction and before anything is written. A session whose files fail validation, or
whose drift its rule quarantines, is rejected whole: every new file of the batch becomes a dead
letter, and the person at the instrument gets one error file beside the session that says, file by
file and field by field, what is wrong. Otherwise each record gets its dataset type, its validated
fields, its rule's enrichment and a drift block, and the ledger learns from the accepted session.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.batch import Batch
from ..core.config import AgentConfig
from ..core.errors import DriftQuarantinedError, SessionRejectedError, ValidationFailedError
from ..extractors import load_extractors
from ..ledger import DriftUpdate, Ledger
from ..rules import DatasetTypes, Rule, RuleSet, Validated, load_rules
from .drift import Baseline, Drift, compare, declared_baseline, shape_of
from .metadata import FileRecord

log = logging.getLogger("fair_agent.curate")


def load_rule_set(config: AgentConfig) -> RuleSet:
    """The configured rule set, checked against the extractors installed here. Raises RuleError."""
    return load_rules(config.rules_dir, [e.name for e in load_extractors()])


@dataclass(slots=True)
class Review:
    records: list[FileRecord] = field(default_factory=list)
    #: Set when the session is rejected: every new file of the batch is dead-lettered with it.
    rejected: SessionRejectedError | None = None
    updates: list[DriftUpdate] = field(default_factory=list)
    #: Counts for metrics, by dataset type.
    invalid_types: list[str] = field(default_factory=list)
    drifted_types: list[str] = field(default_factory=list)
    #: Held until the batch is committed: while a baseline learns, its sessions go one at a time.
    held: list[asyncio.Lock] = field(default_factory=list)

    def release(self) -> None:
        while self.held:
            self.held.pop().release()


class Curator:
    def __init__(self, rules: RuleSet, ledger: Ledger, site_timezone: str | None = None) -> None:
        self.rules = rules
        self.ledger = ledger
        self.types = DatasetTypes(rules.all, site_timezone)
        # One per dataset type (a handful): a baseline that is learning changes with every commit.
        self._learning: dict[str, asyncio.Lock] = {}

    def extractor_for(self, root_name: str, relpath: str) -> str:
        return self.rules.rule_for(root_name, relpath).spec.extractor

    async def review(self, batch: Batch, records: list[FileRecord]) -> Review:
        review = Review()
        if not records:
            return review
        ruled = [(r, self.rules.rule_for(batch.root.name, r.relpath)) for r in records]
        checked = [(r, rule, self.types.validate(rule, r.relpath, r.metadata)) for r, rule in ruled]
        invalid = [(r, v) for r, _, v in checked if not v.ok]
        if invalid:
            review.rejected = _validation_error(batch, checked)
            review.invalid_types = sorted({v.dataset_type for _, v in invalid})
            return review
        # Shapes only for files whose drift is checked: most files of a site (the generic rule) are not.
        shapes = {
            r.relpath: shape_of(v.values, r.metadata)
            for r, rule, v in checked
            if rule.spec.drift.policy != "off"
        }
        drift_blocks, quarantined = await self._drift(batch, checked, shapes, review)
        if quarantined:
            review.rejected = quarantined
            return review
        review.records = [
            replace(
                record,
                dataset_type=validated.dataset_type,
                dataset=validated.values,
                validation=validated.report(),
                drift=drift_blocks.get(record.relpath, {"status": "off"}),
                enrichment=rule.spec.enrich,
            )
            for record, rule, validated in checked
        ]
        return review

    async def _baseline(self, dataset_type: str, rule: Rule) -> Baseline:
        settings = rule.spec.drift
        if settings.declared:
            return declared_baseline(dataset_type, settings)
        stored = await self.ledger.drift_baseline(dataset_type)
        return stored or Baseline(dataset_type, sessions_needed=settings.learn_sessions)

    async def _drift(
        self,
        batch: Batch,
        checked: list[tuple[FileRecord, Rule, Validated]],
        shapes: dict[str, dict[str, str]],
        review: Review,
    ) -> tuple[dict[str, dict[str, Any]], DriftQuarantinedError | None]:
        blocks: dict[str, dict[str, Any]] = {}
        by_type: dict[str, tuple[Rule, list[FileRecord]]] = {}
        for record, rule, _ in checked:
            if rule.spec.drift.policy != "off":
                by_type.setdefault(rule.dataset_type, (rule, []))[1].append(record)
        quarantine: list[tuple[str, Drift]] = []
        for dataset_type, (rule, records) in sorted(by_type.items()):
            settings = rule.spec.drift
            baseline = await self._baseline(dataset_type, rule)
            if baseline.learning:
                # Sessions learnt at once would each see the baseline before the other's commit:
                # from here to the commit, the type's sessions take turns; then read it again.
                lock = self._learning.setdefault(dataset_type, asyncio.Lock())
                await lock.acquire()
                review.held.append(lock)
                baseline = await self._baseline(dataset_type, rule)
            if baseline.learning:
                for record in records:
                    blocks[record.relpath] = {
                        "status": "learning",
                        "datasetType": dataset_type,
                        "sessionsSeen": baseline.sessions_seen,
                        "sessionsNeeded": baseline.sessions_needed,
                    }
                review.updates.append(
                    DriftUpdate(dataset_type, settings.learn_sessions, [shapes[r.relpath] for r in records])
                )
                continue
            session_drift = Drift()
            for record in records:
                drift = compare(baseline, shapes[record.relpath])
                session_drift = session_drift.merged(drift)
                blocks[record.relpath] = {
                    "status": "drifted" if drift else "none",
                    "datasetType": dataset_type,
                    "policy": settings.policy,
                    "baseline": baseline.origin,
                    **(drift.to_json() if drift else {}),
                }
            if not session_drift:
                continue
            review.drifted_types.append(dataset_type)
            review.updates.append(
                DriftUpdate(
                    dataset_type,
                    settings.learn_sessions,
                    [],
                    session_drift,
                    settings.policy,
                    [shapes[r.relpath] for r in records],
                )
            )
            log.warning(
                f"metadata drift in dataset type {dataset_type!r}: {session_drift.sentence()}",
                extra={"session": batch.session, "dataset_type": dataset_type, "policy": settings.policy},
            )
            if settings.policy == "quarantine":
                quarantine.append((dataset_type, session_drift))
        if not quarantine:
            return blocks, None
        details: list[dict[str, object]] = [
            {"datasetType": t, "drift": d.to_json(), "baseline": "fair-agent drift"} for t, d in quarantine
        ]
        message = "; ".join(
            f"the metadata of dataset type {t!r} drifted from its baseline ({d.sentence()})"
            for t, d in quarantine
        )
        return blocks, DriftQuarantinedError(f"session quarantined: {message}", details=details)


def _validation_error(
    batch: Batch, checked: list[tuple[FileRecord, Rule, Validated]]
) -> ValidationFailedError:
    details: list[dict[str, object]] = []
    for record, rule, validated in checked:
        if validated.ok:
            continue
        details.append(
            {
                "file": record.relpath.removeprefix(batch.session + "/"),
                "rule": f"{rule.name} ({rule.source})",
                "datasetType": validated.dataset_type,
                "fields": [
                    {"field": p.field, "problem": p.problem, "lookedIn": p.looked_in}
                    for p in validated.problems
                ],
            }
        )
    lines = [
        f"{d['file']}: " + "; ".join(f"{f['field']} {f['problem']}" for f in d["fields"])  # type: ignore[attr-defined]
        for d in details
    ]
    count = len(details)
    return ValidationFailedError(
        f"{count} file(s) of the session failed validation: " + " | ".join(lines), details=details
    )
