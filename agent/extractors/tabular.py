"""Tabular instrument exports (CSV, TSV, TXT): vendor header block, then a profile of the table.

The first 64 KiB decide the encoding (UTF-8 with or without BOM, else Windows-1252), the delimiter
and the decimal mark, and where the vendor's key/value header block ends and the table begins.
The table is then read with pandas in chunks (bounded memory, whatever the file's size): each
column's name, unit (from "Time [s]" or "Wavelength (nm)"), inferred type, non-null count, min and
max, and the row count. Dates in the header (``28/02/2020`` + ``9:11 AM``) become ISO 8601, with
the day/month ambiguity said out loud.
"""

from __future__ import annotations

import codecs
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from .base import Budget, ExtractionError, Metadata, Source
from .lines import LineLimit
from .vendorheader import header_dates, parse_header_block, split_fields

SAMPLE_BYTES = 64 << 10
#: A line longer than this ends the table (the rows before it are profiled): pandas holds a whole
#: line in memory, and a 400 MB line of a million fields would cost gigabytes.
MAX_LINE_BYTES = 1 << 20
CHUNK_ROWS = 50_000
#: Cells per chunk: a wide table gets fewer rows per chunk, so memory stays bounded.
CHUNK_CELLS = 2_000_000
_SUFFIXES = {".csv", ".tsv", ".txt", ".tab", ".dat"}
_DELIMITERS = (",", ";", "\t", "|")
_UNIT = re.compile(r"^(?P<name>.*?)\s*[\[(](?P<unit>[^\])]{1,24})[\])]\s*$")
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")


class TabularExtractor:
    name = "tabular"

    def accepts(self, name: str, head: bytes) -> bool:
        return PurePosixPath(name).suffix.lower() in _SUFFIXES and b"\x00" not in head[:4096]

    def extract(self, source: Source, budget: Budget) -> Metadata:
        with source.path.open("rb") as f:
            sample = f.read(SAMPLE_BYTES)
        if not sample.strip():
            return {"columns": [], "rowCount": 0, "note": "no text: the file is empty or blank"}
        encoding = detect_encoding(sample)
        text = sample.decode(encoding, errors="replace")
        if "\n" not in text and "\r" not in text and len(sample) == SAMPLE_BYTES:
            raise ExtractionError(
                f"{source.name!r} has no line break in its first {SAMPLE_BYTES >> 10} KiB: not a table"
            )
        lines = text.splitlines()
        if len(sample) == SAMPLE_BYTES and lines:
            lines = lines[:-1]  # the last line of the sample may be cut
        layout = find_table(lines)
        header = parse_header_block(lines[: layout.start], layout.delimiter)
        result: Metadata = {"encoding": encoding, "delimiter": layout.delimiter}
        if header:
            result["header"] = header
            dates = header_dates(header)
            if dates:
                result["dates"] = dates
        if layout.start >= len(lines):
            result.update(columns=[], rowCount=0)
            return result
        decimal = detect_decimal(lines[layout.start + 1 : layout.start + 50], layout.delimiter)
        result["decimal"] = decimal
        rows, later = first_block(lines, layout)
        # Lines end in \n but for the rare export that ends them in \r alone: no limit can be kept
        # on those, which pandas reads as they are.
        limit = MAX_LINE_BYTES if b"\n" in sample else None
        result.update(
            profile_table(source, encoding, layout, decimal, nrows=rows, budget=budget, max_line=limit)
        )
        if later:
            result["tables"] = 1 + later
            result["note"] = f"{1 + later} tables with the same header; the first is profiled"
        return result


def detect_encoding(sample: bytes) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 3:
            return "utf-8"  # a character cut by the end of the sample
    return "cp1252"


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the table sits in the file, as the sample shows it."""

    delimiter: str
    start: int  # index of the table's first line (its header, if it has one)
    width: int = 1  # fields per line
    has_header: bool = True
    units: list[str] | None = None  # a line of units under the header ("[nm];[counts]")
    units_line: int | None = None

    @property
    def skip(self) -> list[int]:
        return [*range(self.start), *([self.units_line] if self.units_line is not None else [])]


def _numeric(field: str) -> bool:
    return bool(_NUMBER.match(field.strip()))


def _any_numeric(line: str, delimiter: str) -> bool:
    return any(_numeric(f) for f in split_fields(line, delimiter))


def find_table(lines: list[str]) -> Layout:
    """Find the table after the vendor block.

    Its width is the largest number of fields (two or more) shared by at least three consecutive
    lines; it starts at the first such run, so rows of empty wells further down do not matter.
    """
    width, delimiter = 0, ","
    runs: dict[str, list[tuple[int, int, int]]] = {}
    for candidate in _DELIMITERS:
        widths = [len(split_fields(line, candidate)) for line in lines]
        found, i = [], 0
        while i < len(widths):
            j = i
            while j + 1 < len(widths) and widths[j + 1] == widths[i]:
                j += 1
            if widths[i] >= 2 and j - i + 1 >= min(3, len(lines) - i):
                found.append((widths[i], i, j - i + 1))
            i = j + 1
        runs[candidate] = found
        best = max((w for w, _, _ in found), default=0)
        if best > width:
            width, delimiter = best, candidate
    if width == 0:
        return Layout(",", len(lines))
    start = min(i for w, i, _ in runs[delimiter] if w == width)
    first = split_fields(lines[start], delimiter)
    if all(_numeric(f) for f in first):
        # Numbers from the first line on: the names (and a line of units) may sit just above,
        # wider than the data when the last column is empty ("Wave;Sample;Dark;Reference;Scope").
        above = [i for i in range(max(0, start - 4), start) if lines[i].strip()][-2:]
        texts = [
            i
            for i in above
            if len(split_fields(lines[i], delimiter)) >= width and not _any_numeric(lines[i], delimiter)
        ]
        if len(texts) == 2:
            units = [u.strip().strip("[]()") for u in split_fields(lines[texts[1]], delimiter)]
            return Layout(delimiter, texts[0], width, units=units, units_line=texts[1])
        if texts and texts[-1] == above[-1]:
            return Layout(delimiter, texts[-1], width)
        return Layout(delimiter, start, width, has_header=False)
    below = [split_fields(line, delimiter) for line in lines[start + 1 : start + 3]]
    if len(below) == 2 and not any(_numeric(f) for f in below[0]) and any(_numeric(f) for f in below[1]):
        units = [u.strip().strip("[]()") for u in below[0]]
        return Layout(delimiter, start, width, units=units, units_line=start + 1)
    return Layout(delimiter, start, width)


def first_block(lines: list[str], layout: Layout) -> tuple[int | None, int]:
    """(data rows of the first table, later tables with the same header) as the sample shows them.

    Exports like a plate reader's write one table per read (OD600, OD700, GFP...) separated by
    blank lines; profiling them as one table would mix their values. None: the block runs past
    the sample, so the whole rest of the file is the table.
    """

    def blank(i: int) -> bool:  # padding counts as blank: ",,,,,,,,"
        return not split_fields(lines[i], layout.delimiter)

    after = max(layout.start + (1 if layout.has_header else 0), (layout.units_line or 0) + 1)
    data = next((i for i in range(after, len(lines)) if not blank(i)), None)
    if data is None:
        return None, 0
    end = next((i for i in range(data, len(lines)) if blank(i)), None)
    if end is None:
        return None, 0
    header = split_fields(lines[layout.start], layout.delimiter)
    later = (
        sum(1 for line in lines[end:] if split_fields(line, layout.delimiter) == header)
        if layout.has_header
        else 0
    )
    return end - data, later


def detect_decimal(lines: list[str], delimiter: str) -> str:
    if delimiter == ",":
        return "."
    comma = point = 0
    for line in lines:
        for field in split_fields(line, delimiter):
            field = field.strip()
            if _NUMBER.match(field):
                comma += "," in field
                point += "." in field
    return "," if comma > point else "."


def split_unit(column: str) -> tuple[str, str | None]:
    m = _UNIT.match(column)
    return (m["name"], m["unit"]) if m else (column, None)


def profile_table(
    source: Source,
    encoding: str,
    layout: Layout,
    decimal: str,
    *,
    nrows: int | None = None,
    budget: Budget,
    max_line: int | None = MAX_LINE_BYTES,
) -> dict[str, Any]:
    """Column profiles and row count, read with pandas in chunks (memory bounded by CHUNK_ROWS,
    and by ``max_line``: the table ends before a longer line, and the profile says so)."""
    with source.path.open("rb") as raw:
        # A file no longer than the limit cannot hold a longer line: it is read as it is.
        too_big = max_line is not None and os.fstat(raw.fileno()).st_size > max_line
        lines = LineLimit(raw, max_line) if max_line and too_big else None
        result = _profile(
            source, io.BufferedReader(lines) if lines else raw, encoding, layout, decimal, nrows, budget
        )
    if lines is not None and lines.cut_at is not None:
        result["lineTooLong"] = {"line": lines.cut_at, "maxBytes": max_line}
        result["note"] = (
            f"line {lines.cut_at} is longer than {max_line} bytes: the table is profiled up to the line "
            "before it"
        )
    return result


def _profile(
    source: Source,
    handle: BinaryIO,
    encoding: str,
    layout: Layout,
    decimal: str,
    nrows: int | None,
    budget: Budget,
) -> dict[str, Any]:
    import pandas as pd  # imported here: the agent only pays for pandas when a table turns up

    columns: dict[str, dict[str, Any]] = {}
    rows = 0
    try:
        reader = pd.read_csv(
            handle,
            sep=layout.delimiter,
            decimal=decimal,
            encoding=encoding,
            encoding_errors="replace",
            skiprows=layout.skip,
            header=0 if layout.has_header else None,
            skipinitialspace=True,
            chunksize=max(100, min(CHUNK_ROWS, CHUNK_CELLS // max(layout.width, 1))),
            on_bad_lines="skip",
            nrows=nrows,
            skip_blank_lines=True,
            engine="c",
        )
        for chunk in _chunks(reader, budget):
            rows += len(chunk)
            for position, name in enumerate(chunk.columns):
                label = str(name).strip() if layout.has_header else f"column {position + 1}"
                _merge(
                    columns,
                    label,
                    chunk[name],
                    layout.units[position] if layout.units and position < len(layout.units) else None,
                )
    except (ValueError, pd.errors.ParserError) as exc:
        raise ExtractionError(f"{source.name!r} could not be read as a table: {exc}") from None
    # Trailing padding (",,,,") makes columns with no name and no value: not part of the table.
    profiles = [
        _finish(name, p)
        for name, p in columns.items()
        if not (name.startswith("Unnamed:") and p["nonNull"] == 0)
    ]
    return {"columns": profiles, "rowCount": rows}


def _chunks(reader: Any, budget: Budget) -> Iterator[Any]:
    with reader:
        for chunk in reader:
            budget.check()
            yield chunk


_ORDER = {"empty": 0, "integer": 1, "number": 2, "boolean": 3, "datetime": 4, "text": 5}


def _merge(columns: dict[str, dict[str, Any]], name: str, series: Any, unit: str | None) -> None:
    import pandas as pd

    profile = columns.setdefault(
        name, {"type": "empty", "nonNull": 0, "min": None, "max": None, "unit": unit}
    )
    non_null = series.dropna()
    profile["nonNull"] += int(non_null.size)
    if non_null.empty:
        return
    if pd.api.types.is_bool_dtype(non_null):
        kind = "boolean"
    elif pd.api.types.is_integer_dtype(non_null):
        kind = "integer"
    elif pd.api.types.is_float_dtype(non_null):
        kind = "number"
    else:
        kind = "text"
    if _ORDER[kind] > _ORDER[profile["type"]]:
        if profile["type"] in ("integer", "number") and kind == "text":
            profile["min"] = profile["max"] = None
        profile["type"] = kind
    if profile["type"] in ("integer", "number") and kind in ("integer", "number"):
        low, high = non_null.min(), non_null.max()
        profile["min"] = low if profile["min"] is None else min(profile["min"], low)
        profile["max"] = high if profile["max"] is None else max(profile["max"], high)


def _finish(name: str, profile: dict[str, Any]) -> dict[str, Any]:
    _, unit = split_unit(name)
    unit = unit or profile["unit"]
    out: dict[str, Any] = {"name": name, "type": profile["type"], "nonNull": profile["nonNull"]}
    if unit:
        out["unit"] = unit
    for key in ("min", "max"):
        if profile[key] is not None:
            value = profile[key]
            out[key] = int(value) if profile["type"] == "integer" else float(value)
    return out
