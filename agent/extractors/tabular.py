"""Tabular instrument exports (CSV, TSV, TXT): vendor header block, then a profile of the table.

The first 64 KiB decide the encoding (UTF-8 with or without BOM, else Windows-1252), the delimiter
and the decimal mark, and where the vendor's key/value header block ends and the table begins
(tablelayout). The table is then read with pandas in chunks (bounded memory, whatever the file's
size): each variable's name and unit, inferred type, non-null count, min and max (columns), and
the row count. A file wholly in the sample is profiled from it in pure Python instead, with the
same result (sampletable): pandas costs more than the whole rest for a 4 KiB export, and is not
even imported by a process that never meets a larger table. The last 4 KiB give a trailer after
the last table (Tecan's ``End Time``).

Besides the format's own keys (``header``, ``headerRepeated``, ``measurements``, ``trailer``,
``dates``, ``columns``...) every file gets a ``description``, and ``acquisition`` and
``instrument`` where the header gives them.
"""

from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass

from .base import Budget, ExtractionError, Metadata, Source, read_at, suffix
from .columns import plate_summary, split_unit
from .sampletable import WholeFile
from .tablelayout import Block, Layout, detect_decimal, find_table, first_block, trailer_lines
from .tablereading import MAX_LINE_BYTES, SAMPLE_BYTES, TablePlan, profile_table
from .tablesummary import describe, instrument_from, measurements_of
from .vendorheader import Header, acquisition_from, header_dates, read_header

__all__ = ["Layout", "TabularExtractor", "detect_encoding", "find_table", "profile_table", "split_unit"]

#: The end of the file read for a trailer after the last table.
TAIL_BYTES = 4 << 10
_SUFFIXES = {".csv", ".tsv", ".txt", ".tab", ".dat"}
#: The line breaks pandas knows: line numbers here must be its line numbers.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class TabularExtractor:
    name = "tabular"
    crash_free = True

    def __init__(self, *, from_sample: bool = True) -> None:
        #: Whether a table wholly in the sample is profiled without pandas (False: always pandas;
        #: the tests compare both).
        self.from_sample = from_sample

    def accepts(self, name: str, head: bytes) -> bool:
        return suffix(name) in _SUFFIXES and b"\x00" not in head[:4096]

    def extract(self, source: Source, budget: Budget) -> Metadata:
        survey = _survey(source)
        if isinstance(survey, dict):
            return survey
        lines, layout = survey.lines, survey.layout
        result: Metadata = {"encoding": survey.encoding, "delimiter": layout.delimiter}
        block = first_block(lines, layout) if layout.start < len(lines) else Block(None, None)
        trailer = _trailer(lines, survey.tail, survey.encoding, layout, block)
        result.update(_header_metadata(read_header(lines[: layout.start], layout.delimiter), trailer))
        if layout.start >= len(lines):
            result.update(columns=[], rowCount=0)
        else:
            whole = None
            if survey.tail is None and self.from_sample:
                cut = len(survey.sample) == SAMPLE_BYTES
                whole = WholeFile(survey.sample, _split_lines(survey.text, cut=False) if cut else lines)
            result.update(_table(source, survey, block, budget, whole))
            _units_from_header(result)
        result["description"] = describe(result)
        return result


@dataclass(frozen=True, slots=True)
class _Survey:
    """What the first 64 KiB (and the last 4 KiB) of a text file say."""

    sample: bytes
    tail: bytes | None  # None: the whole file is in the sample
    encoding: str
    text: str
    lines: list[str]
    layout: Layout


def _survey(source: Source) -> _Survey | Metadata:
    """The file's sample, read; metadata in place of it for a file with no text."""
    if source.fd is not None:  # the agent's open file, in a worker: not opened again
        sample, tail = _sample_and_tail(source.fd)
    else:
        with source.path.open("rb", buffering=0) as f:
            sample, tail = _sample_and_tail(f.fileno())
    if not sample.strip():
        return {
            "columns": [],
            "rowCount": 0,
            "note": "no text: the file is empty or blank",
            "description": "Empty text file",
        }
    encoding = detect_encoding(sample)
    text = sample.decode(encoding, errors="replace")
    if "\n" not in text and "\r" not in text and len(sample) == SAMPLE_BYTES:
        raise ExtractionError(
            f"{source.name!r} has no line break in its first {SAMPLE_BYTES >> 10} KiB: not a table"
        )
    lines = _split_lines(text, cut=len(sample) == SAMPLE_BYTES)
    return _Survey(sample, tail, encoding, text, lines, find_table(lines))


def plan_table(source: Source) -> TablePlan | None:
    """How to read the file's first table again; None for a file without one."""
    survey = _survey(source)
    if isinstance(survey, dict) or survey.layout.start >= len(survey.lines):
        return None
    block = first_block(survey.lines, survey.layout)
    return _plan(survey, block)


def _plan(survey: _Survey, block: Block) -> TablePlan:
    layout, lines = survey.layout, survey.lines
    decimal = detect_decimal(lines[layout.start + 1 : layout.start + 50], layout.delimiter)
    # Lines end in \n but for the rare export that ends them in \r alone: no limit can be kept
    # on those, which pandas reads as they are.
    newlines = b"\n" in survey.sample
    after = _offset(survey.sample, block.data) if newlines and block.data is not None else None
    return TablePlan(
        survey.encoding, layout, decimal, block.rows, after, MAX_LINE_BYTES if newlines else None
    )


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


def _sample_and_tail(fd: int) -> tuple[bytes, bytes | None]:
    """The file's first SAMPLE_BYTES, and its last TAIL_BYTES unless the sample holds it all."""
    sample = read_at(fd, 0, SAMPLE_BYTES)
    size = os.fstat(fd).st_size
    return sample, read_at(fd, max(0, size - TAIL_BYTES), TAIL_BYTES) if size > len(sample) else None


def _split_lines(text: str, *, cut: bool) -> list[str]:
    if "\r" not in text:
        lines = text.split("\n")
    elif text.count("\r") == text.count("\r\n"):
        lines = text.replace("\r\n", "\n").split("\n")
    else:  # a lone \r ends a line too
        lines = _LINE_BREAK.split(text)
    if lines and not lines[-1]:
        lines.pop()  # the break at the end of the last line
    if cut and lines:
        lines.pop()  # the last line of the sample may be cut
    return lines


def _trailer(lines: list[str], tail: bytes | None, encoding: str, layout: Layout, block: Block) -> Header:
    if tail is None:  # the whole file is in the sample: the trailer is after the first table
        if block.data is None or block.rows is None:
            return Header()
        found = trailer_lines(lines, layout.delimiter, block.data + block.rows + 1)
    else:
        tail_lines = _split_lines(tail.decode(encoding.removesuffix("-sig"), errors="replace"), cut=False)
        found = trailer_lines(tail_lines[1:], layout.delimiter, 1)  # its first line may be cut
    return read_header(found, layout.delimiter)


def _header_metadata(header: Header, trailer: Header) -> Metadata:
    out: Metadata = {}
    if header.values:
        out["header"] = header.values
    if header.repeated:
        out["headerRepeated"] = header.repeated
    measurements = measurements_of(header.blocks)
    if measurements:
        out["measurements"] = measurements
    ends = {k: v for k, v in trailer.values.items() if k not in header.values}
    if ends:
        out["trailer"] = ends
    dates = header_dates(header.values) + header_dates(ends)
    if dates:
        out["dates"] = dates
        acquisition = acquisition_from(dates, {k: "trailer" for k in ends})
        if acquisition:
            out["acquisition"] = acquisition
    instrument = instrument_from(header.values)
    if instrument:
        out["instrument"] = instrument
    return out


def _table(
    source: Source, survey: _Survey, block: Block, budget: Budget, whole: WholeFile | None
) -> Metadata:
    plan = _plan(survey, block)
    result: Metadata = {"decimal": plan.decimal}
    result.update(
        profile_table(
            source,
            plan.encoding,
            plan.layout,
            plan.decimal,
            nrows=plan.rows,
            budget=budget,
            max_line=plan.max_line,
            block_after=plan.block_after,
            whole=whole,
        )
    )
    if block.later:
        result["tables"] = 1 + block.later
        which = f" ({block.labels[0]})" if block.labels else ""
        result["note"] = f"{1 + block.later} tables with the same header; the first{which} is profiled"
    if block.labels:
        result["tableLabels"] = list(block.labels)
    wells = plate_summary(result["columns"])
    if wells:
        result["wells"] = wells
    return result


def _units_from_header(result: Metadata) -> None:
    # A JCAMP-like header gives the units of a headerless x/y table ("##XUNITS=1/CM").
    header, columns = result.get("header", {}), result["columns"]
    if len(columns) != 2 or any(not c["name"].startswith("column ") for c in columns):
        return
    for i, key in enumerate(("XUNITS", "YUNITS")):
        if header.get(key) and "unit" not in columns[i]:
            columns[i] = {"name": columns[i]["name"], "unit": header[key], **columns[i]}


def _offset(sample: bytes, line: int) -> int | None:
    # The byte where line number ``line`` starts: after the line-th "\n".
    at = -1
    for _ in range(line):
        at = sample.find(b"\n", at + 1)
        if at < 0:
            return None
    return at + 1
