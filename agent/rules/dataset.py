"""Dataset types: a pydantic model per type, built from its rule on a common base, and the
validation of one file's fields against it, with problems told in plain words.

A file's candidate fields come from its path (the rule's named groups), from the extractor's output
(the rule's ``[fields]``) and from the rule's enrichment. Dates are normalised: read by the rule's
format or as ISO 8601, given the rule's (or the site's) time zone when they carry none, and then
they must be time-zone aware and not in the future.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    create_model,
)

from ..core.records import EXTRACTION_FAILURE
from .ruleset import Rule
from .schema import BASE_FIELDS, FieldSpec

#: Clocks on instrument PCs drift; a date this little ahead of ours is not "in the future".
FUTURE_SLACK = timedelta(minutes=10)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class DatasetBase(BaseModel):
    """What every dataset type has."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    experiment_id: str | None = None
    instrument: str | None = None
    acquisition_date: AwareDatetime | None = None
    #: Fields the rule reads but does not declare a type for.
    parameters: dict[str, Any] = {}
    tags: list[str] = []


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    problem: str
    #: Where the rule looked for the value, in words.
    looked_in: str

    def sentence(self) -> str:
        return f"{self.field}: {self.problem} (looked in {self.looked_in})"


@dataclass(slots=True)
class Validated:
    dataset_type: str
    rule: str
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[FieldProblem] = field(default_factory=list)
    #: What the extractor found wrong inside the content (a declared checksum that does not hold):
    #: not the rule's business to reject, but part of the file's quality.
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> dict[str, Any]:
        """The sidecar's ``validation`` block."""
        report: dict[str, Any] = {
            "status": "valid" if self.ok else "invalid",
            "rule": self.rule,
            "datasetType": self.dataset_type,
        }
        if not self.ok:
            report["problems"] = [p.sentence() for p in self.problems]
        if self.notes:
            report["notes"] = self.notes
        return report


@dataclass(frozen=True, slots=True)
class Acquisition:
    """When a file's measurement was made, zoned: from its rule's acquisition_date, else from what
    its extractor read (``acquisition``). ``note`` says why a time the file gives is not used."""

    start: str | None = None
    end: str | None = None
    note: str | None = None


class DatasetTypes:
    """The models of every dataset type of a rule set, built once."""

    def __init__(self, rules: list[Rule], site_timezone: str | None = None) -> None:
        # One model per rule (rules sharing a dataset type are checked to agree at load).
        self._models = {(rule.source, rule.name): build_model(rule, site_timezone) for rule in rules}
        self.site_timezone = site_timezone

    def acquisition(self, rule: Rule, metadata: dict[str, Any], values: dict[str, Any]) -> Acquisition:
        """The file's acquisition time. A date without a zone gets the rule's or the site's; one
        that cannot be zoned or lies in the future is left out, with a note that says why."""
        read = metadata.get("acquisition")
        read = read if isinstance(read, dict) else {}
        zone = rule.spec.timezone or self.site_timezone
        start, note = values.get("acquisition_date"), None
        if start is None and read.get("start") is not None:
            start, note = _zoned(read["start"], zone, str(read.get("source") or "the file"))
        end = None
        if start is not None and read.get("end") is not None:
            end, end_note = _zoned(read["end"], zone, str(read.get("source") or "the file"))
            note = note or end_note
            if end is not None and _instant(end) < _instant(start):
                end = None  # an end before the start is not an end
        return Acquisition(start, end, note)

    def validate(self, rule: Rule, relpath: str, metadata: dict[str, Any]) -> Validated:
        result = Validated(rule.dataset_type, rule.name)
        result.notes = [str(w) for w in metadata.get("warnings", ()) if isinstance(w, str)]
        candidate = candidate_fields(rule, relpath, metadata)
        if not candidate and not rule.spec.validation:
            return result  # nothing to check (the generic rule): skip the model on the hot path
        try:
            model = self._models[(rule.source, rule.name)].model_validate(candidate)
        except ValidationError as exc:
            failure = metadata.get(EXTRACTION_FAILURE)
            result.problems = [_problem(rule, err, failure) for err in exc.errors()]
            return result
        result.values = {k: _as_json(v) for k, v in model.model_dump(exclude_none=True).items()}
        return result


def _as_json(value: Any) -> Any:
    # ISO 8601 with a numeric offset, as every other date the agent writes (pydantic would say "Z").
    if isinstance(value, date):  # datetime is a date too
        return value.isoformat()
    return value


def candidate_fields(rule: Rule, relpath: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """What the rule finds for a file, before validation; undeclared fields go to ``parameters``."""
    spec = rule.spec
    found: dict[str, Any] = dict(rule.path_fields(relpath))
    for name, where in spec.fields.items():
        value = _lookup_all(metadata, where)
        if value is not None:
            found[name] = value
    if spec.enrich.instrument is not None:
        found.setdefault("instrument", spec.enrich.instrument.name)
    declared = set(spec.validation) | set(BASE_FIELDS)
    parameters = {k: v for k, v in found.items() if k not in declared}
    candidate = {k: v for k, v in found.items() if k in declared}
    if parameters:
        candidate["parameters"] = parameters
    if spec.enrich.keywords:
        candidate["tags"] = list(spec.enrich.keywords)
    return candidate


def lookup(metadata: Any, where: str) -> Any:
    """A value in an extractor's output by a dotted path; keys may themselves contain dots.

    ``header.Averaging Nr. [scans]`` finds the key "Averaging Nr. [scans]" of ``header``; a number
    indexes a list (``experiments.0.name``).
    """
    if where == "":
        return metadata
    if isinstance(metadata, dict):
        if where in metadata:
            return metadata[where]
        # The longest key that is a prefix wins: "a.b" before "a" when both exist.
        for key in sorted((k for k in metadata if isinstance(k, str)), key=len, reverse=True):
            if where.startswith(key + "."):
                found = lookup(metadata[key], where[len(key) + 1 :])
                if found is not None:
                    return found
        return None
    if isinstance(metadata, list):
        head, _, rest = where.partition(".")
        if head.isdigit() and int(head) < len(metadata):
            return lookup(metadata[int(head)], rest)
    return None


def _lookup_all(metadata: dict[str, Any], where: str | tuple[str, ...]) -> Any:
    if isinstance(where, str):
        return lookup(metadata, where)
    parts = [lookup(metadata, w) for w in where]
    # Date and time often sit in two header lines; all parts must be there.
    return " ".join(str(p) for p in parts) if all(p is not None for p in parts) else None


def build_model(rule: Rule, site_timezone: str | None) -> type[BaseModel]:
    zone = rule.spec.timezone or site_timezone
    fields: dict[str, Any] = {}
    for name, spec in rule.spec.validation.items():
        annotation = _annotation(spec, zone)
        fields[name] = (annotation if spec.required else annotation | None, ... if spec.required else None)
    if "acquisition_date" not in fields:
        fields["acquisition_date"] = (_annotation(FieldSpec(type="datetime"), zone) | None, None)
    name = "Dataset_" + re.sub(r"\W", "_", rule.dataset_type)
    model: type[BaseModel] = create_model(name, __base__=DatasetBase, **fields)
    return model


def _annotation(spec: FieldSpec, zone: str | None) -> Any:
    checks: list[Callable[[Any], Any]] = []
    if spec.pattern is not None:
        checks.append(partial(_check_pattern, re.compile(spec.pattern)))
    if spec.enum is not None:
        checks.append(partial(_check_enum, spec.enum))
    if spec.min is not None or spec.max is not None:
        checks.append(partial(_check_range, spec.min, spec.max))
    base: Any = {
        "string": str,
        "integer": int,
        "number": float,
        "boolean": bool,
        "datetime": AwareDatetime,
        "date": date,
    }[spec.type]
    metadata: list[Any] = []
    if spec.type == "datetime":
        metadata += [
            BeforeValidator(partial(_parse_datetime, spec.format, zone)),
            AfterValidator(_not_future),
        ]
    elif spec.type == "date" and spec.format:
        metadata.append(BeforeValidator(partial(_parse_date, spec.format)))
    elif spec.type == "string":
        metadata.append(BeforeValidator(_as_text))
    metadata += [AfterValidator(check) for check in checks]
    return Annotated[base, *metadata] if metadata else base


def _as_text(value: Any) -> Any:
    # Numbers read from a header ("Wavelength: 600") are text to a string field.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _check_pattern(pattern: re.Pattern[str], value: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(
            f"{value!r} does not have the expected form (the rule's pattern is {pattern.pattern})"
        )
    return value


def _check_enum(allowed: tuple[Any, ...], value: Any) -> Any:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of the allowed values: {', '.join(map(str, allowed))}")
    return value


def _check_range(low: float | None, high: float | None, value: float) -> float:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"between {low} and {high}"
            if low is not None and high is not None
            else (f"at least {low}" if low is not None else f"at most {high}")
        )
        raise ValueError(f"{value} is out of range; it must be {bounds}")
    return value


def _parse_datetime(fmt: str | None, zone: str | None, value: Any) -> Any:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
        except ValueError:
            expected = f"the format {fmt!r}" if fmt else "an ISO 8601 date and time"
            raise ValueError(f"{text!r} is not a date and time in {expected}") from None
    else:
        return value
    if parsed.tzinfo is None:
        if zone is None:
            raise ValueError(
                f"{value!r} has no time zone and the rule names none; set 'timezone' in the rule "
                "(or site.timezone in the configuration)"
            )
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed


def _instant(iso: str) -> datetime:
    moment = datetime.fromisoformat(iso)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _zoned(value: Any, zone: str | None, source: str) -> tuple[str | None, str | None]:
    """An extractor's acquisition time as zoned ISO 8601, or None and the reason in words.

    A day without a time (JCAMP-DX 4.24 ##DATE) stays a day: a zone would add precision it lacks.
    """
    text = str(value).strip()
    unused = f"the acquisition time {text!r} (from {source}) is not used"
    try:
        if _DAY.fullmatch(text):
            day = date.fromisoformat(text)
            if day > datetime.now(UTC).date() + timedelta(days=1):
                return None, f"{unused}: it is in the future; check the instrument's clock"
            return day.isoformat(), None
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None, f"{unused}: it is not an ISO 8601 date and time"
    if moment.tzinfo is None:
        if zone is None:
            return None, (
                f"{unused}: it has no time zone, and neither the rule nor the site names one "
                "(set 'timezone' in the rule, or site.timezone in the configuration)"
            )
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    if moment > datetime.now(UTC) + FUTURE_SLACK:
        return None, f"{unused}: it is in the future; check the instrument's clock"
    return moment.isoformat(), None


def _parse_date(fmt: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.strptime(value.strip(), fmt).date()
        except ValueError:
            raise ValueError(f"{value!r} is not a date in the format {fmt!r}") from None
    return value


def _not_future(value: datetime) -> datetime:
    if value > datetime.now(UTC) + FUTURE_SLACK:
        raise ValueError(f"{value.isoformat()} is in the future; check the instrument's clock")
    return value


def _problem(rule: Rule, err: Any, extraction_failure: dict[str, Any] | None) -> FieldProblem:
    """One field's problem in words; a field the extractor should have given names its failure."""
    loc = [str(part) for part in err["loc"]]
    name = loc[0] if loc else "(record)"
    if err["type"] == "missing":
        problem = f"missing; rule {rule.name!r} ({rule.source}) requires it"
        if extraction_failure is not None and name in rule.spec.fields:
            problem += (
                f", and the {extraction_failure['extractor']} extractor could not read the file: "
                f"{extraction_failure['message']}"
            )
    else:
        problem = str(err["msg"]).removeprefix("Value error, ")
    return FieldProblem(name, problem, _sources(rule, name))


def _sources(rule: Rule, name: str) -> str:
    spec = rule.spec
    places = []
    if spec.path is not None and name in re.compile(spec.path.pattern).groupindex:
        places.append(f"the path, by the pattern {spec.path.pattern}")
    where = spec.fields.get(name)
    if where is not None:
        listed = [where] if isinstance(where, str) else list(where)
        places.append("the file's metadata at " + " + ".join(repr(w) for w in listed))
    if name == "instrument" and spec.enrich.instrument is not None:
        places.append("the rule's [enrich.instrument]")
    return "; ".join(places) or "nowhere: the rule gives it no source"
