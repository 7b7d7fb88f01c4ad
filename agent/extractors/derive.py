"""Derived tables: a tabular export made analysis-ready as its rule's ``[transform]`` says.

Runs in an extraction worker, after the file's metadata was read, on the very file that was hashed.
The first table is read again in chunks (bounded memory whatever its size); each chunk's columns
are renamed, coerced to their type, converted to their unit and have their gaps handled, and the
chunk is written to the open temp file the agent gave (Parquet through pyarrow, or CSV), hashed as
it is written. The agent renames it into place with the batch's sidecars.

Nothing is made up silently: each column reports what it could not coerce (how many values, the
first examples) and what was imputed (how many values, which method), and each filled column gets
a mask column (``<name>_imputed``) that is True exactly where a value was not measured. A unit that
cannot be converted is a problem of the file's validation, naming the column and both units.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.transform import MASK_SUFFIX, ColumnTransform, DerivedType, TransformSpec
from ..core.units import UnitError, conversion, parse_unit
from .base import Budget, ExtractionError, Metadata, Source
from .columns import split_unit
from .tabular import CHUNK_ROWS, plan_table, table_chunks

MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}
#: Examples of values that could not be coerced, per column.
EXAMPLES = 3
#: Rows held back while a gap waits for the value after it; a longer gap is left empty.
MAX_HELD_ROWS = 4 * CHUNK_ROWS
#: The key of the derived table's provenance in its Parquet metadata.
PARQUET_KEY = b"fair-agent"
_DETECTED = {"integer": "integer", "number": "number", "boolean": "boolean"}
_TRUE = frozenset({"true", "yes", "y", "t", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "f", "0", "off"})


class HashingSink(io.RawIOBase):
    """Writes to a descriptor and hashes what it writes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = len(view)
        self.digest.update(view)
        self.size += written
        while view:
            view = view[os.write(self.fd, view) :]
        return written


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
    imputed: int = 0
    #: Gap handling across chunks: the last value (and its row) before what is still open.
    last_row: int | None = None
    last_value: Any = None
    gave_up: int = 0

    @property
    def gaps(self) -> str | float | int | bool:
        return self.transform.missing if self.transform else "keep"

    @property
    def mask(self) -> str | None:
        return self.name + MASK_SUFFIX if self.transform and self.transform.fills_gaps else None

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.header != self.name:
            out["from"] = self.header
        out["type"] = self.kind
        if self.unit:
            out["unit"] = self.unit
            code = parse_unit(self.unit).ucum
            if code:
                out["unitCode"] = code
        if self.unit_from and self.unit_from != self.unit:
            out["convertedFrom"] = self.unit_from
        if self.failed:
            out["notCoerced"] = {"count": self.failed, "examples": self.examples}
        if self.mask:
            method = self.gaps if isinstance(self.gaps, str) and self.gaps != "keep" else "constant"
            out["imputed"] = {"count": self.imputed, "method": method, "mask": self.mask}
            if not isinstance(self.gaps, str) or self.gaps not in ("interpolate", "ffill"):
                out["imputed"]["value"] = self.gaps
        if self.gave_up:
            out["gapsLeftEmpty"] = self.gave_up
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
    if plan.layout.rowwise:
        raise ExtractionError(
            f"{source.name!r} writes one variable per line; derived tables are made from tables "
            "with one variable per column"
        )
    chunks = table_chunks(source, plan, budget)
    first = next(chunks, None)
    headers = [str(c) for c in first.columns] if first is not None else []
    columns, problems = _columns(headers, spec, detected)
    warnings = [
        f"the rule's [transform] names column {h!r}, which this file does not have"
        for h in spec.named_headers
        if h not in headers
    ]
    if problems:
        return {"problems": problems, "warnings": warnings}
    sink = HashingSink(out_fd)
    writer = _writer(spec.format, sink, columns, provenance)
    rows = 0
    held: Any = None
    position = 0
    for chunk in _chain(first, chunks):
        # Rows go first (a gap is filled from the rows kept), then the gaps are handled.
        frame = _without_dropped(_derive_chunk(chunk, columns, position), columns)
        position += len(chunk)
        held = frame if held is None else _concat(held, frame)
        ready, held = _fill_gaps(held, columns, final=False)
        rows += writer.write(ready)
        if max_rows is not None and rows >= max_rows:
            break
    if held is not None:
        ready, _ = _fill_gaps(held, columns, final=True)
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
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        return report, [row for _, row in zip(range(rows + 1), csv.reader(text), strict=False)]


def read_head(path: Path, rows: int = 5) -> list[list[str]]:
    """The first rows of a derived table on disk, as text (header first)."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as table:
            batch = next(table.iter_batches(batch_size=rows), None)
            names = table.schema_arrow.names
            records = batch.to_pylist() if batch is not None else []
        return [names, *([_text(r[n]) for n in names] for r in records)]
    with path.open(encoding="utf-8", newline="") as text:
        return [row for _, row in zip(range(rows + 1), csv.reader(text), strict=False)]


def _text(value: Any) -> str:
    return "" if value is None else f"{value:.15g}" if isinstance(value, float) else str(value)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    if first is not None:
        yield first
        yield from rest


def _columns(
    headers: list[str], spec: TransformSpec, detected: dict[str, str]
) -> tuple[list[_Column], list[str]]:
    columns, problems = [], []
    for header in headers:
        transform = spec.rule_for(header)
        if transform is None and spec.drop_unnamed:
            continue
        kind = (transform.derived_type if transform else None) or _detected_kind(detected.get(header))
        column = _Column(header, (transform.name if transform else None) or header, kind, transform)
        if transform is not None and transform.unit:
            found = transform.from_unit or split_unit(header)[1]
            if found is None:
                problems.append(
                    f"column {header!r}: no unit to convert to {transform.unit!r} from: the header "
                    "gives none (say it with from_unit)"
                )
                continue
            try:
                column.scale, column.offset = conversion(found, transform.unit)
            except UnitError as exc:
                problems.append(f"column {header!r}: {exc}")
                continue
            column.unit, column.unit_from = transform.unit, found
        elif kind in ("number", "integer"):
            column.unit = (transform.from_unit if transform else None) or split_unit(header)[1]
        columns.append(column)
    taken = [c.name for c in columns] + [c.mask for c in columns if c.mask]
    clashes = sorted({n for n in taken if taken.count(n) > 1})
    problems += [f"the derived table would have two columns named {n!r}" for n in clashes]
    return columns, problems


def _detected_kind(profiled: str | None) -> DerivedType:
    return _DETECTED.get(profiled or "", "string")  # type: ignore[return-value]


def _derive_chunk(chunk: Any, columns: list[_Column], position: int) -> Any:
    import pandas as pd

    out: dict[str, Any] = {}
    for column in columns:
        raw = chunk[column.header]
        values = _coerce(raw, column)
        out[column.name] = values
        if column.mask:
            out[column.mask] = pd.Series(False, index=raw.index)
    frame = pd.DataFrame(out)
    frame.index = pd.RangeIndex(position, position + len(chunk))
    return frame


def _coerce(raw: Any, column: _Column) -> Any:
    """The raw values as the column's type (and unit); what cannot be is counted and emptied."""
    import numpy as np
    import pandas as pd

    kind = column.kind
    if kind in ("number", "integer"):
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        if column.scale != 1.0 or column.offset != 0.0:
            values = values * column.scale + column.offset
        if kind == "integer":
            fractional = values.notna() & (values != np.floor(values))
            values = values.where(~fractional).astype("Int64")
    elif kind == "datetime":
        fmt = column.transform.format if column.transform and column.transform.format else "ISO8601"
        values = pd.to_datetime(raw.astype("string"), errors="coerce", format=fmt)
        if getattr(values.dtype, "tz", None) is not None:  # zoned: stored in UTC
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    elif kind == "boolean":
        text = raw.astype("string").str.strip().str.lower()
        values = pd.Series(pd.NA, index=raw.index, dtype="boolean")
        values[text.isin(_TRUE).fillna(False)] = True
        values[text.isin(_FALSE).fillna(False)] = False
    else:
        values = raw.astype("string")
    failed = raw.notna() & values.isna()
    if failed.any():
        column.failed += int(failed.sum())
        for example in raw[failed].astype(str).unique()[: EXAMPLES - len(column.examples)]:
            column.examples.append(example)
    return values


def _fill_gaps(frame: Any, columns: list[_Column], *, final: bool) -> tuple[Any, Any]:
    """The rows whose gaps are settled, and the rows held back until a later value settles theirs
    (a gap to interpolate needs the value after it)."""
    cut = len(frame)
    for column in columns:
        method = column.gaps
        if method in ("keep", "drop"):
            continue
        if method == "interpolate":
            open_from = _interpolate(frame, column, final=final)
            cut = min(cut, open_from)
        elif method == "ffill":
            _forward_fill(frame, column)
        else:
            _constant(frame, column, method)
    if not final and len(frame) - cut > MAX_HELD_ROWS:
        for column in columns:  # a gap this long is left empty: its rows cannot all wait
            if column.gaps == "interpolate":
                column.gave_up += int(frame[column.name].iloc[cut:].isna().sum())
                column.last_row = None
        cut = len(frame)
    ready, held = frame.iloc[:cut], frame.iloc[cut:].copy()
    for column in columns:
        if column.gaps in ("interpolate", "ffill") and len(ready):
            known = ready[column.name].dropna()
            if len(known):
                column.last_row, column.last_value = int(known.index[-1]), known.iloc[-1]
    return ready, (held if len(held) else None)


def _interpolate(frame: Any, column: _Column, *, final: bool) -> int:
    """Fill the gaps between known values (linear in the row number); the position of the first
    row of a gap still open at the end of the frame (len(frame) when none is)."""
    import numpy as np

    values = frame[column.name].to_numpy(dtype="float64", na_value=np.nan, copy=True)
    rows = frame.index.to_numpy()
    known = ~np.isnan(values)
    xs, ys = rows[known], values[known]
    if column.last_row is not None and column.last_row < rows[0]:
        xs, ys = np.concatenate(([column.last_row], xs)), np.concatenate(([column.last_value], ys))
    if not len(xs):
        return len(frame)
    inside = ~known & (rows > xs[0]) & (rows < xs[-1])
    if inside.any():
        values[inside] = np.interp(rows[inside], xs, ys)
        frame[column.name] = values
        frame.loc[inside, column.mask] = True
        column.imputed += int(inside.sum())
    still_open = ~known & (rows > xs[-1])
    if final or not still_open.any():
        return len(frame)
    return int(np.argmax(still_open))


def _forward_fill(frame: Any, column: _Column) -> None:
    values = frame[column.name]
    gaps = values.isna()
    if not gaps.any():
        return
    filled = values.ffill()
    if column.last_row is not None:
        filled = filled.fillna(column.last_value)
    imputed = gaps & filled.notna()
    frame[column.name] = filled
    frame.loc[imputed, column.mask] = True
    column.imputed += int(imputed.sum())


def _constant(frame: Any, column: _Column, value: Any) -> None:
    gaps = frame[column.name].isna()
    if gaps.any():
        frame.loc[gaps, column.name] = value
        frame.loc[gaps, column.mask] = True
        column.imputed += int(gaps.sum())


def _without_dropped(frame: Any, columns: list[_Column]) -> Any:
    dropped = [c.name for c in columns if c.gaps == "drop"]
    return frame.dropna(subset=dropped) if dropped and len(frame) else frame


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
        if c.gave_up:
            out.append(
                f"derived table: {c.gave_up:,} value(s) of column {c.header!r} lie in a gap too long "
                "to interpolate and were left empty"
            )
    return out


class _Writer:
    def write(self, frame: Any) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _writer(fmt: str, sink: HashingSink, columns: list[_Column], provenance: dict[str, Any]) -> _Writer:
    return _ParquetWriter(sink, columns, provenance) if fmt == "parquet" else _CsvWriter(sink, columns)


class _ParquetWriter(_Writer):
    def __init__(self, sink: HashingSink, columns: list[_Column], provenance: dict[str, Any]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {
            "number": pa.float64(),
            "integer": pa.int64(),
            "datetime": pa.timestamp("ns"),
            "string": pa.string(),
            "boolean": pa.bool_(),
        }
        fields = []
        for c in columns:
            fields.append(pa.field(c.name, types[c.kind]))
            if c.mask:
                fields.append(pa.field(c.mask, pa.bool_()))
        meta = json.dumps(provenance, sort_keys=True, ensure_ascii=False).encode()
        self._schema = pa.schema(fields).with_metadata({PARQUET_KEY: meta})
        self._pa = pa
        self._writer = pq.ParquetWriter(sink, self._schema)
        self._rows = 0

    def write(self, frame: Any) -> int:
        if not len(frame):
            return 0
        table = self._pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        self._writer.write_table(table)
        return len(frame)

    def close(self) -> None:
        self._writer.close()


class _CsvWriter(_Writer):
    def __init__(self, sink: HashingSink, columns: list[_Column]) -> None:
        self._sink = sink
        self._header = True
        self._names = [n for c in columns for n in (c.name, c.mask) if n]

    def write(self, frame: Any) -> int:
        if not len(frame) and not self._header:
            return 0
        # 15 significant digits: what a double holds reliably (310.15, not 310.15000000000003).
        text = frame.to_csv(index=False, header=self._header, lineterminator="\n", float_format="%.15g")
        self._sink.write(text.encode("utf-8"))
        self._header = False
        return len(frame)

    def close(self) -> None:
        if self._header:  # no rows at all: the file still says which columns it has
            import pandas as pd

            self.write(pd.DataFrame(columns=self._names))
