"""Derived tables: a tabular export made analysis-ready as its rule's ``[transform]`` says.

Runs in an extraction worker, after the file's metadata was read, on the very file that was hashed.
The first table is read again in chunks (bounded memory whatever its size); each chunk's columns
are renamed, coerced to their type, converted to their unit and have their gaps handled (gaps.py),
and the chunk is written to the open temp file the agent gave (tablewriters.py), hashed as it is
written. The agent renames it into place with the batch's sidecars.

Nothing is made up silently: each column reports what it could not coerce (how many values, the
first examples) and what was imputed (how many values, which method), and each filled column gets
a mask column (``<name>_imputed``) that is True exactly where a value was not measured. A unit that
cannot be converted is a problem of the file's validation, naming the column and both units; what
a file's values make impossible otherwise (a constant that is not of its column's type) is a warning,
and the rest of the table is still made.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.transform import GAP_METHODS, MASK_SUFFIX, ColumnTransform, DerivedType, TransformSpec
from ..core.units import UnitError, conversion, ucum_code
from .base import Budget, ExtractionError, Metadata, Source
from .columns import split_unit
from .gaps import GapState, fill_gaps
from .tablereading import CHUNK_CELLS, table_chunks, table_transposed
from .tablewriters import MEDIA_TYPES, HashingSink, csv_head, table_writer
from .tabular import plan_table

#: Values of a table with one variable per line that may be turned into columns (in memory).
MAX_TURNED_CELLS = 1_000_000
#: Examples of values that could not be coerced, per column.
EXAMPLES = 3
_DETECTED = {"integer": "integer", "number": "number", "boolean": "boolean"}
#: Kinds read as the file's text (a number's digits as written: "007" stays "007").
_TEXT_KINDS = ("string", "datetime", "boolean")
_TRUE = frozenset({"true", "yes", "y", "t", "1", "1.0", "on"})
_FALSE = frozenset({"false", "no", "n", "f", "0", "0.0", "off"})
#: An integer column holds 64-bit integers; a value beyond is not one.
_INT_LIMIT = 2.0**63


@dataclass(slots=True)
class _Column:
    """One derived column: where it comes from, what it becomes, and what happened on the way."""

    header: str
    name: str
    kind: DerivedType
    transform: ColumnTransform | None
    unit: str | None = None
    unit_from: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    failed: int = 0
    examples: list[str] = field(default_factory=list)
    gaps: GapState | None = None
    #: The file's decimal mark: a column holding text too ("OVER") keeps its numbers as written.
    decimal: str = "."

    @property
    def drops(self) -> bool:
        return self.transform is not None and self.transform.missing == "drop"

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.header != self.name:
            out["from"] = self.header
        out["type"] = self.kind
        if self.unit:
            out["unit"] = self.unit
            code = ucum_code(self.unit)
            if code:
                out["unitCode"] = code
        if self.unit_from and self.unit_from != self.unit:
            out["convertedFrom"] = self.unit_from
        if self.failed:
            out["notCoerced"] = {"count": self.failed, "examples": self.examples}
        if self.gaps is not None:
            gaps = self.gaps
            out["imputed"] = {"count": gaps.imputed, "method": gaps.method, "mask": gaps.mask}
            if gaps.method == "constant":
                out["imputed"]["value"] = self.transform.missing if self.transform else None
            if gaps.left_empty:
                out["gapsLeftEmpty"] = gaps.left_empty
        return out


def derive(
    source: Source,
    spec: TransformSpec,
    out_fd: int,
    budget: Budget,
    *,
    detected: dict[str, str],
    provenance: dict[str, Any],
    max_rows: int | None = None,
) -> Metadata:
    """Write the derived table of ``source`` to ``out_fd``; its report (``sha256``, ``rows``,
    ``columns``, ``warnings``; ``problems`` and nothing written when the rule cannot be applied).

    ``detected``: each header's type as the extractor profiled it (the type of a column the rule
    does not type). ``provenance`` goes into a Parquet file's metadata. ``max_rows``: stop after
    about that many rows (a preview)."""
    plan = plan_table(source)
    if plan is None:
        raise ExtractionError(f"{source.name!r} holds no table to derive from")
    chunks: Iterator[Any]
    if plan.layout.rowwise:  # a plate reader's variable per line: turned, a column per variable
        first, chunks = table_transposed(source, plan, budget, max_cells=MAX_TURNED_CELLS), iter(())
    else:
        text = [h for h in detected if _kind(spec.rule_for(h), detected.get(h)) in _TEXT_KINDS]
        # Half the profile's chunk: each row gets a mask per filled column, and the chunk is copied
        # on its way to Parquet (measured: 214 MB peak for a 2 GB table, 257 MB at the profile's).
        chunks = table_chunks(source, plan, budget, cells=CHUNK_CELLS // 2, text=text)
        first = next(chunks, None)
    headers = [str(c) for c in first.columns] if first is not None else []
    columns, problems, warnings = _columns(headers, spec, detected, plan.decimal)
    warnings += [
        f"the rule's [transform] names column {h!r}, which this file does not have"
        for h in spec.named_headers
        if h not in headers
    ]
    if problems:
        return {"problems": problems, "warnings": warnings}
    # A worker that failed part-way through this file may have written to it before.
    os.ftruncate(out_fd, 0)
    os.lseek(out_fd, 0, os.SEEK_SET)
    sink = HashingSink(out_fd)
    layout: list[tuple[str, str]] = []
    for c in columns:  # each mask right after its column
        layout += [(c.name, c.kind)] + ([(c.gaps.mask, "boolean")] if c.gaps is not None else [])
    writer = table_writer(spec.format, sink, layout, provenance)
    states = [c.gaps for c in columns if c.gaps is not None]
    rows, position, held = 0, 0, None
    for chunk in _chain(first, chunks):
        # Rows go first (a gap is filled from the rows kept), then the gaps are handled.
        frame = _derive_chunk(chunk, columns, position)
        position += len(chunk)
        held = frame if held is None else _concat(held, frame)
        ready, held = fill_gaps(held, states, final=False)
        rows += writer.write(ready)
        if max_rows is not None and rows >= max_rows:
            break
    if held is not None:
        ready, _ = fill_gaps(held, states, final=True)
        rows += writer.write(ready)
    writer.close()
    os.fsync(out_fd)
    warnings += _sentences(columns)
    report: Metadata = {
        **({"rule": provenance["rule"]} if "rule" in provenance else {}),
        "format": spec.format,
        "encodingFormat": MEDIA_TYPES[spec.format],
        "sha256": sink.digest.hexdigest(),
        "contentSize": sink.size,
        "rows": rows,
        "columns": [c.report() for c in columns],
    }
    if warnings:
        report["warnings"] = warnings
    return report


def derive_head(
    source: Source, spec: TransformSpec, budget: Budget, *, detected: dict[str, str], rows: int = 5
) -> tuple[Metadata, list[list[str]]]:
    """The derived table's report and its first ``rows`` rows as text (header first), made in a
    temp file away from the data: what ``rules check`` shows."""
    with tempfile.TemporaryFile() as out:
        as_csv = spec.model_copy(update={"format": "csv"})
        report = derive(source, as_csv, out.fileno(), budget, detected=detected, provenance={}, max_rows=rows)
        out.seek(0)
        return report, csv_head(io.TextIOWrapper(out, encoding="utf-8", newline=""), rows)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    if first is not None:
        yield first
        yield from rest


def _kind(transform: ColumnTransform | None, profiled: str | None) -> DerivedType:
    """The derived column's type: the rule's, else as the extractor profiled the raw column."""
    typed = transform.derived_type if transform else None
    return typed or _DETECTED.get(profiled or "", "string")  # type: ignore[return-value]


def _columns(
    headers: list[str], spec: TransformSpec, detected: dict[str, str], decimal: str
) -> tuple[list[_Column], list[str], list[str]]:
    columns: list[_Column] = []
    problems: list[str] = []
    warnings: list[str] = []
    for header in headers:
        transform = spec.rule_for(header)
        if transform is None and spec.drop_unnamed:
            continue
        column = _Column(header, header, _kind(transform, detected.get(header)), transform, decimal=decimal)
        problem = _units(column)
        if problem:
            problems.append(problem)
            continue
        if transform is not None and transform.name:
            column.name = transform.name
        elif column.unit_from and column.unit_from != column.unit:  # "Time [s]" holds minutes now
            column.name = f"{split_unit(header)[0]} [{column.unit}]"
        columns.append(column)
    names = [c.name for c in columns]
    problems += [
        f"the derived table would have two columns named {n!r}"
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    taken = set(names)
    for column in columns:
        warning = _gap_handling(column, taken)
        if warning:
            warnings.append(warning)
    return columns, problems, warnings


def _units(column: _Column) -> str | None:
    """Set the column's unit and conversion; a problem in words when the rule's cannot be made."""
    transform, header = column.transform, column.header
    found = (transform.from_unit if transform else None) or split_unit(header)[1]
    if transform is None or not transform.unit:
        column.unit = found if column.kind in ("number", "integer") else None
        return None
    if found is None:
        return (
            f"column {header!r}: no unit to convert to {transform.unit!r} from: the header gives none "
            "(say it with from_unit)"
        )
    try:
        column.scale, column.offset = conversion(found, transform.unit)
    except UnitError as exc:
        return f"column {header!r}: {exc}"
    column.unit, column.unit_from = transform.unit, found
    return None


def _gap_handling(column: _Column, taken: set[str]) -> str | None:
    """The column's gap state (and its mask's name, one no other column has); a warning when the
    rule's constant does not fit the column."""
    transform = column.transform
    if transform is None or not transform.fills_gaps:
        return None
    method, value = str(transform.missing), None
    if transform.missing not in GAP_METHODS:
        method, value = "constant", _constant(transform.missing, column)
        if value is None:
            return (
                f"derived table: the rule's constant {transform.missing!r} for the gaps of column "
                f"{column.header!r} is not a {column.kind}; its gaps stay empty"
            )
    mask = column.name + MASK_SUFFIX
    while mask in taken:  # the file has a column of that name already
        mask += "_"
    taken.add(mask)
    column.gaps = GapState(column.name, method, mask, value)
    return None


def _constant(value: Any, column: _Column) -> Any:
    """The rule's constant as a value of the column's type; None when it is not one."""
    import pandas as pd

    (coerced,) = _coerce(pd.Series([value], dtype=object), column, count=False).tolist()
    return None if pd.isna(coerced) else coerced


def _derive_chunk(chunk: Any, columns: list[_Column], position: int) -> Any:
    import pandas as pd

    out: dict[str, Any] = {}
    for column in columns:
        raw = chunk[column.header]
        out[column.name] = _coerce(raw, column)
        if column.gaps is not None:
            out[column.gaps.mask] = pd.Series(False, index=raw.index)
    frame = pd.DataFrame(out)
    frame.index = pd.RangeIndex(position, position + len(chunk))
    dropped = [c.name for c in columns if c.drops]
    return frame.dropna(subset=dropped) if dropped and len(frame) else frame


def _coerce(raw: Any, column: _Column, *, count: bool = True) -> Any:
    """The raw values as the column's type (and unit); what cannot be is counted and emptied."""
    import numpy as np
    import pandas as pd

    kind = column.kind
    if kind in ("number", "integer"):
        numbers = raw
        if column.decimal != "." and not pd.api.types.is_numeric_dtype(raw):
            numbers = raw.astype("string").str.replace(column.decimal, ".", regex=False)
        values = pd.to_numeric(numbers, errors="coerce").astype("float64")
        if column.scale != 1.0 or column.offset != 0.0:
            values = values * column.scale + column.offset
        if kind == "integer":
            whole = np.isfinite(values) & (values == np.floor(values)) & (values.abs() < _INT_LIMIT)
            values = values.where(whole).astype("Int64")
    elif kind == "datetime":
        fmt = column.transform.format if column.transform and column.transform.format else "ISO8601"
        # Zoned times (and a mix of zones) are stored in UTC; times without a zone as written.
        values = pd.to_datetime(raw.astype("string"), errors="coerce", format=fmt, utc=True)
        values = values.dt.tz_localize(None)
    elif kind == "boolean":
        text = raw.astype("string").str.strip().str.lower()
        values = pd.Series(pd.NA, index=raw.index, dtype="boolean")
        values[text.isin(_TRUE).fillna(False)] = True
        values[text.isin(_FALSE).fillna(False)] = False
    else:
        values = raw.astype("string")
    failed = raw.notna() & values.isna()
    if count and failed.any():
        column.failed += int(failed.sum())
        for example in raw[failed].astype(str).unique()[: EXAMPLES - len(column.examples)]:
            column.examples.append(example)
    return values


def _concat(held: Any, frame: Any) -> Any:
    import pandas as pd

    return pd.concat([held, frame])


def _sentences(columns: list[_Column]) -> list[str]:
    out = []
    for c in columns:
        if c.failed:
            examples = ", ".join(repr(e) for e in c.examples)
            out.append(
                f"derived table: {c.failed:,} value(s) of column {c.header!r} are not a {c.kind} and "
                f"were left empty (e.g. {examples})"
            )
        if c.gaps is not None and c.gaps.left_empty:
            out.append(
                f"derived table: {c.gaps.left_empty:,} value(s) of column {c.header!r} lie in a gap too "
                "long to interpolate and were left empty"
            )
    return out
