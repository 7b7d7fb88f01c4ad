"""What a rule's ``[transform]`` may say: the analysis-ready table derived from a tabular export.

The derived table is the raw table with its columns renamed, their values coerced to a type,
their units converted and their gaps handled, written beside the raw file as
``<file>.tidy.parquet`` (or ``.tidy.csv``). The raw file stays untouched: it is the record.
A column is named by its header as the file writes it (``Temperature [°C]``), or, for many at
once, by a regular expression after ``re:`` (``"re:[A-P]([1-9]|1[0-9]|2[0-4])"``: every well);
a header named exactly wins over a pattern.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .strict import Strict
from .units import UnitError, parse_unit

DerivedType = Literal["number", "integer", "datetime", "string", "boolean"]
GAP_METHODS = ("keep", "drop", "interpolate", "ffill")
#: A column key that is a pattern: ``re:<regular expression>``, matched against the whole header.
PATTERN_PREFIX = "re:"
#: The mask column beside a column whose gaps are filled: True where the value was imputed.
MASK_SUFFIX = "_imputed"


class ColumnTransform(Strict):
    """What becomes of one raw column (or of every column a pattern matches)."""

    #: The derived column's name; defaults to the header as written.
    name: str | None = Field(default=None, min_length=1)
    #: The unit the derived values are in; needs a unit to convert from.
    unit: str | None = None
    #: The raw values' unit, where the header gives none (``Time`` rather than ``Time [s]``).
    from_unit: str | None = None
    #: Defaults to "number" for a column with a ``unit``, else the type the extractor detected.
    type: DerivedType | None = None
    #: Dates written other than ISO 8601, in strptime notation.
    format: str | None = None
    #: "keep" (gaps stay empty), "drop" (the row goes), "interpolate" (linear, inside the
    #: measured range), "ffill" (the last value before the gap), or a constant to put in.
    missing: str | float | int | bool = "keep"

    @field_validator("unit", "from_unit")
    @classmethod
    def _known_unit(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_unit(value)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def derived_type(self) -> DerivedType | None:
        return self.type or ("number" if self.unit else None)

    @property
    def fills_gaps(self) -> bool:
        return self.missing not in ("keep", "drop")

    @model_validator(mode="after")
    def _consistent(self) -> ColumnTransform:
        kind = self.derived_type
        if (self.unit or self.from_unit) and kind not in ("number", "integer"):
            raise ValueError(f"'unit' applies to numbers, not to a {kind}")
        if self.format is not None and kind != "datetime":
            raise ValueError("'format' applies to datetime columns")
        if self.missing == "interpolate" and kind != "number":
            raise ValueError("'interpolate' makes fractions: give the column type = \"number\"")
        if isinstance(self.missing, str) and self.missing not in GAP_METHODS:
            if kind in ("number", "integer", "boolean"):
                raise ValueError(
                    f"'missing' is {self.missing!r}: neither one of {', '.join(GAP_METHODS)} nor a "
                    f"constant {kind}"
                )
        elif not isinstance(self.missing, str) and kind is not None:
            constant_types: dict[str, tuple[type, ...]] = {
                "number": (int, float),
                "integer": (int,),
                "boolean": (bool,),
            }
            wanted = constant_types.get(kind, ())
            if not isinstance(self.missing, wanted) or isinstance(self.missing, bool) != (kind == "boolean"):
                raise ValueError(f"'missing' = {self.missing!r} is not a {kind}")
        return self


class TransformSpec(Strict):
    """A rule's ``[transform]`` table."""

    format: Literal["parquet", "csv"] = "parquet"
    #: Whether columns the rule does not name are left out (else they pass through as detected).
    drop_unnamed: bool = False
    columns: dict[str, ColumnTransform] = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _keys(cls, columns: dict[str, ColumnTransform]) -> dict[str, ColumnTransform]:
        names: dict[str, str] = {}
        for key, column in columns.items():
            if key.startswith(PATTERN_PREFIX):
                try:
                    re.compile(key.removeprefix(PATTERN_PREFIX))
                except re.error as exc:
                    raise ValueError(f"{key!r}: not a valid regular expression: {exc}") from None
                if column.name is not None:
                    raise ValueError(f"{key!r}: a pattern names many columns; each keeps its header")
                continue
            name = column.name or key
            if name in names:
                raise ValueError(f"{key!r} and {names[name]!r} both make a column named {name!r}")
            names[name] = key
        return columns

    def rule_for(self, header: str) -> ColumnTransform | None:
        """The transform of the column with this header: named exactly, else by a pattern."""
        if header in self.columns and not header.startswith(PATTERN_PREFIX):
            return self.columns[header]
        for key, column in self.columns.items():
            if key.startswith(PATTERN_PREFIX) and re.fullmatch(key.removeprefix(PATTERN_PREFIX), header):
                return column
        return None

    @property
    def named_headers(self) -> list[str]:
        """The headers the rule names exactly (patterns may match none and are not listed)."""
        return [key for key in self.columns if not key.startswith(PATTERN_PREFIX)]
