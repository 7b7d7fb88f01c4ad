"""The curation stage: each new file's rule, its validated dataset fields, and drift, per batch.

Runs after extraction and before anything is written. A session whose files fail validation, or
whose drift its rule quarantines, is rejected whole: every new file of the batch becomes a dead
letter, and the person at the instrument gets one error file beside the session that says, file by
file and field by field, what is wrong. Otherwise each record gets its dataset type, its validated
fields, its rule's enrichment and a drift block, and the ledger learns from the accepted session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.batch import Batch
from ..core.config import AgentConfig
from ..core.errors import SessionRejectedError, ValidationFailedError
from ..core.records import FileRecord
from ..extractors import load_extractors
from ..fs.turns import Releasable, release_all
from ..ledger import DriftUpdate, Ledger
from ..rules import DatasetTypes, FieldProblem, Rule, RuleSet, Validated, load_rules
from .drift import DriftCheck


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
    held: list[Releasable] = field(default_factory=list)

    def release(self) -> None:
        release_all(self.held)


class Curator:
    def __init__(self, rules: RuleSet, ledger: Ledger, site_timezone: str | None = None) -> None:
        self.rules = rules
        self.ledger = ledger
        self.types = DatasetTypes(rules.all, site_timezone)
        self.drift = DriftCheck(ledger)

    def reading_for(self, root_name: str, relpath: str) -> tuple[str, tuple[str, dict[str, Any]] | None]:
        """What the file's rule says about reading it: the extractor ("auto", "none" or a name),
        and the derived table it asks for (the rule's name and its [transform] as JSON), if any."""
        rule = self.rules.rule_for(root_name, relpath)
        transform = rule.transform_json
        return rule.spec.extractor, ((rule.name, transform) if transform is not None else None)

    async def review(self, batch: Batch, records: list[FileRecord]) -> Review:
        review = Review()
        if not records:
            return review
        ruled = [(r, self.rules.rule_for(batch.root.name, r.relpath)) for r in records]
        checked = [
            (r, rule, _with_derived(self.types.validate(rule, r.relpath, r.metadata), r)) for r, rule in ruled
        ]
        invalid = [(r, v) for r, _, v in checked if not v.ok]
        if invalid:
            review.rejected = _validation_error(batch, checked)
            review.invalid_types = sorted({v.dataset_type for _, v in invalid})
            return review
        drift = await self.drift.check(batch, checked)
        review.updates, review.drifted_types, review.held = drift.updates, drift.drifted_types, drift.held
        if drift.quarantined:
            review.rejected = drift.quarantined
            return review
        try:
            review.records = [
                self._curated(record, rule, validated, drift.blocks.get(record.relpath, {"status": "off"}))
                for record, rule, validated in checked
            ]
        except BaseException:
            review.release()  # the caller, who releases after the commit, never gets the review
            raise
        return review

    def _curated(
        self, record: FileRecord, rule: Rule, validated: Validated, drift: dict[str, Any]
    ) -> FileRecord:
        acquired = self.types.acquisition(rule, record.metadata, validated.values)
        return record.changed(
            dataset_type=validated.dataset_type,
            dataset=validated.values,
            validation=validated.report(),
            drift=drift,
            enrichment=rule.spec.enrich,
            acquisition={k: v for k, v in (("start", acquired.start), ("end", acquired.end)) if v},
            warnings=record.warnings + ((acquired.note,) if acquired.note else ()),
        )


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


def _with_derived(validated: Validated, record: FileRecord) -> Validated:
    """A derived table the rule asks for but cannot make (a unit that does not convert) fails the
    file's validation, as a field that does not fit its type does."""
    for problem in record.derived.get("problems", ()):
        validated.problems.append(FieldProblem("transform", str(problem), "the rule's [transform]"))
    return validated
