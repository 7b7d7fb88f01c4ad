"""What a rule file may say: a strict pydantic model of ``rules/*.toml``.

Every table forbids unknown keys, so a misspelt key is an error naming it rather than a setting
silently ignored. See rules/README.md for a worked example.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..core.config import CompletionPolicy, known_timezone
from ..core.enrichment import Enrichment
from ..core.strict import Strict
from ..core.transform import TransformSpec
from .globs import glob_problem

DATASET_TYPE_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
#: Fields every dataset type has, whatever its rule says.
BASE_FIELDS = ("experiment_id", "instrument", "acquisition_date", "parameters", "tags")


def _compiles(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


class SessionGrouping(Strict):
    """How files are grouped into sessions, when the default (the first folder level) does not fit."""

    #: The first ``depth`` folder levels below the watch root are one session.
    depth: int | None = Field(default=None, ge=1, le=16)
    #: A regular expression searched in the path below the watch root; the session is the text of
    #: its group named ``session`` (or the whole match), which must end at a folder boundary.
    pattern: str | None = None

    _check_pattern = field_validator("pattern")(_compiles)

    @model_validator(mode="after")
    def _one_way(self) -> SessionGrouping:
        if (self.depth is None) == (self.pattern is None):
            raise ValueError("give exactly one of 'depth' or 'pattern'")
        return self


class PathFields(Strict):
    #: Named groups become fields, e.g. ``^(?P<experiment_id>EXP-\d{6})_(?P<operator>[a-z]+)/``.
    pattern: str

    _check_pattern = field_validator("pattern")(_compiles)

    @field_validator("pattern")
    @classmethod
    def _has_groups(cls, value: str) -> str:
        if not re.compile(value).groupindex:
            raise ValueError("the pattern has no named group (?P<name>...), so it yields no field")
        return value


class FieldSpec(Strict):
    """One field of a dataset type, and what a valid value looks like."""

    type: Literal["string", "integer", "number", "boolean", "datetime", "date"] = "string"
    required: bool = False
    description: str | None = None
    #: Strings: a regular expression the whole value must match.
    pattern: str | None = None
    #: The allowed values.
    enum: tuple[str | int | float, ...] | None = None
    #: Numbers: the allowed range, inclusive.
    min: float | None = None
    max: float | None = None
    #: Dates written other than ISO 8601, in strptime notation, e.g. "%d/%m/%Y %I:%M %p".
    format: str | None = None

    _check_pattern = field_validator("pattern")(_compiles)

    @model_validator(mode="after")
    def _fits_type(self) -> FieldSpec:
        if self.pattern is not None and self.type != "string":
            raise ValueError(f"'pattern' applies to strings, not to a {self.type}")
        if (self.min is not None or self.max is not None) and self.type not in ("integer", "number"):
            raise ValueError(f"'min' and 'max' apply to numbers, not to a {self.type}")
        if self.format is not None and self.type not in ("datetime", "date"):
            raise ValueError(f"'format' applies to dates, not to a {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min}) is larger than 'max' ({self.max})")
        if self.format is not None:
            _check_date_format(self.format)
        for value in self.enum or ():
            if not isinstance(value, ENUM_TYPES[self.type]) or isinstance(value, bool) != (
                self.type == "boolean"
            ):
                raise ValueError(
                    f"'enum' value {value!r} is not a {self.type}, so nothing could ever match it"
                )
        return self


#: What an allowed value of each field type may be written as in TOML.
ENUM_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "datetime": str,
    "date": str,
}


def _check_date_format(fmt: str) -> None:
    # A format strptime cannot parse back what strftime wrote can never match a date.
    sample = datetime(2001, 2, 3, 16, 5, 6)
    try:
        datetime.strptime(sample.strftime(fmt), fmt)
    except ValueError as exc:
        raise ValueError(f"'format' {fmt!r} is not a date format strptime understands: {exc}") from None


class DriftSettings(Strict):
    #: "warn": ingest and mark the drift; "quarantine": dead-letter the session; "off".
    policy: Literal["off", "warn", "quarantine"] = "warn"
    #: Accepted sessions the baseline is learnt from when the rule declares none.
    learn_sessions: int = Field(default=3, ge=1, le=1000)
    #: A declared baseline: the fields every file must have ...
    fields: tuple[str, ...] | None = None
    #: ... and, for tables, the columns and their types (as the tabular extractor names them).
    columns: dict[str, Literal["integer", "number", "boolean", "datetime", "text", "empty"]] | None = None

    @property
    def declared(self) -> bool:
        return self.fields is not None or self.columns is not None


class RuleFile(Strict):
    """One ``rules/*.toml`` file."""

    #: Defaults to the file name without ``.toml``.
    name: str | None = None
    description: str = ""
    #: Of two rules that match a file, the higher priority wins; equal priorities may not overlap.
    priority: int = 0
    #: The rule for files no other rule matches (at most one per rule set).
    fallback: bool = False
    #: Only files in the watch root of this name.
    root: str | None = None
    #: Globs relative to the watch root (case-insensitive); the fallback claims every file anyway.
    match: tuple[str, ...] = ()
    #: "auto" (by file type), an extractor's name, or "none".
    extractor: str = "auto"
    #: Defaults to the rule's name (lower case): a rule's fields are its own unless it says otherwise.
    dataset_type: str | None = Field(default=None, pattern=DATASET_TYPE_PATTERN)
    #: IANA time zone for dates written without one (e.g. "Europe/Berlin").
    timezone: str | None = None
    session: SessionGrouping | None = None
    completion: CompletionPolicy | None = None
    path: PathFields | None = None
    #: field name = where in the extractor's output ("header.Operator"); a list is joined by spaces.
    fields: dict[str, str | tuple[str, ...]] = Field(default_factory=dict)
    enrich: Enrichment = Enrichment()
    validation: dict[str, FieldSpec] = Field(default_factory=dict)
    drift: DriftSettings = DriftSettings()
    #: The analysis-ready table derived from each file (see core.transform); None: none.
    transform: TransformSpec | None = None

    @model_validator(mode="after")
    def _claims_files(self) -> RuleFile:
        if self.fallback and (self.root is not None or self.match not in ((), ("**",))):
            raise ValueError(
                "the fallback rule claims every file no other rule does; remove 'match' and 'root'"
            )
        if not self.fallback and not self.match:
            raise ValueError("'match' is missing; the rule must say which files it claims")
        reserved = {"parameters", "tags"}
        groups = set(re.compile(self.path.pattern).groupindex) if self.path else set()
        for name in sorted((set(self.fields) | groups) & reserved):
            raise ValueError(f"{name!r} is a base field that collects many values; name the field otherwise")
        return self

    @field_validator("match")
    @classmethod
    def _globs_can_match(cls, globs: tuple[str, ...]) -> tuple[str, ...]:
        for glob in globs:
            problem = glob_problem(glob)
            if problem:
                raise ValueError(f"{glob!r} can never match: {problem}")
        return globs

    _known_zone = field_validator("timezone")(known_timezone)

    @field_validator("validation")
    @classmethod
    def _base_field_types(cls, specs: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for name, spec in specs.items():
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"field name {name!r}: use lower case letters, digits and '_'")
            if name in ("parameters", "tags"):
                raise ValueError(f"{name!r} is a base field that holds many values; it takes no spec")
            if name == "acquisition_date" and spec.type != "datetime":
                raise ValueError("acquisition_date is a datetime in every dataset type")
        return specs
