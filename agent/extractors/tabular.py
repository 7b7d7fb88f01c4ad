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
import io
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from .base import Budget, ExtractionError, Metadata, Source, suffix
from .columns import Profiles, line_values, plate_summary, split_unit
from .lines import BlockEnd, LineLimit
from .sampletable import WholeFile, profile_sample
from .tablelayout import Block, Layout, detect_decimal, find_table, first_block, trailer_lines
from .tablesummary import describe, instrument_from, measurements_of
from .vendorheader import WHITESPACE, Header, acquisition_from, header_dates, read_header

__all__ = ["Layout", "TabularExtractor", "detect_encoding", "find_table", "profile_table", "split_unit"]

SAMPLE_BYTES = 64 << 10
#: The end of the file read for a trailer after the last table.
TAIL_BYTES = 4 << 10
#: A line longer than this ends the table (the rows before it are profiled): pandas holds a whole
#: line in memory, and a 400 MB line of a million fields would cost gigabytes.
MAX_LINE_BYTES = 1 << 20
CHUNK_ROWS = 50_000
#: Cells per chunk: a wide table gets fewer rows per chunk, so memory stays bounded.
CHUNK_CELLS = 2_000_000
_SUFFIXES = {".csv", ".tsv", ".txt", ".tab", ".dat"}
#: The line breaks pandas knows: line numbers here must be its line numbers.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BLOCK_NOTE = (
    f"the first table ends at a blank line after the first {SAMPLE_BYTES >> 10} KiB; "
    "what follows it is not profiled"
)


class TabularExtractor:
    name = "tabular"

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
    with source.path.open("rb") as f:
        sample = f.read(SAMPLE_BYTES)
        size = os.fstat(f.fileno()).st_size
        tail = _tail(f, size) if size > len(sample) else None
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


@dataclass(frozen=True, slots=True)
class TablePlan:
    """How a file's first table is read, as ``extract`` reads it: for those who read it again."""

    encoding: str
    layout: Layout
    decimal: str
    #: Its data rows where the sample shows where it ends; None: to the end (or a blank line).
    rows: int | None
    #: The byte from which a blank line ends the table; None: no such limit.
    block_after: int | None
    max_line: int | None


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


def _tail(f: BinaryIO, size: int) -> bytes:
    f.seek(max(0, size - TAIL_BYTES))
    return f.read(TAIL_BYTES)


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


def profile_table(
    source: Source,
    encoding: str,
    layout: Layout,
    decimal: str,
    *,
    nrows: int | None = None,
    budget: Budget,
    max_line: int | None = MAX_LINE_BYTES,
    block_after: int | None = None,
    whole: WholeFile | None = None,
) -> dict[str, Any]:
    """Variable profiles and row count, read with pandas in chunks (memory bounded by CHUNK_ROWS,
    and by ``max_line``: the table ends before a longer line, and the profile says so). From byte
    ``block_after`` on, a blank line ends the table. A file ``whole`` in the sample is profiled
    from it without pandas where that gives pandas' result."""
    if whole is not None:
        found = profile_sample(
            whole,
            layout,
            decimal,
            nrows=nrows,
            block_after=block_after,
            chunk_rows=_chunk_rows(layout),
            budget=budget,
        )
        if found is not None:
            result, ended = found
            if ended and nrows is None:
                result["note"] = _BLOCK_NOTE
            return result
    with _bounded(source, block_after, max_line) as (handle, block, lines):
        if layout.rowwise:
            result = _profile_rows(source, handle, encoding, layout, decimal, nrows, budget)
        else:
            result = _profile(source, handle, encoding, layout, decimal, nrows, budget)
    if block is not None and block.ended and nrows is None:
        result["note"] = _BLOCK_NOTE
    if lines is not None and lines.cut_at is not None:
        result["lineTooLong"] = {"line": lines.cut_at, "maxBytes": max_line}
        result["note"] = (
            f"line {lines.cut_at} is longer than {max_line} bytes: the table is profiled up to the line "
            "before it"
        )
    return result


@contextmanager
def _bounded(
    source: Source, block_after: int | None, max_line: int | None
) -> Iterator[tuple[BinaryIO, BlockEnd | None, LineLimit | None]]:
    """The file as far as its first table goes (``block_after``) and its lines are short enough."""
    with source.path.open("rb") as raw:
        stream: BinaryIO = raw
        block = BlockEnd(raw, block_after) if block_after is not None else None
        if block is not None:
            stream = io.BufferedReader(block)
        # A file no longer than the limit cannot hold a longer line: it is read as it is.
        too_big = max_line is not None and os.fstat(raw.fileno()).st_size > max_line
        lines = LineLimit(stream, max_line) if max_line and too_big else None
        yield (io.BufferedReader(lines) if lines else stream), block, lines


def table_chunks(
    source: Source, plan: TablePlan, budget: Budget, *, cells: int = CHUNK_CELLS, text: Iterable[str] = ()
) -> Iterator[Any]:
    """The first table of a column-wise file, in DataFrames of at most CHUNK_ROWS rows and about
    ``cells`` values, labelled as the header writes them (``column N`` for a table without one).
    The columns named in ``text`` are read as the file writes them, not as numbers."""
    import pandas as pd

    layout = plan.layout
    header: Any = 0 if layout.has_header else None
    try:
        with _bounded(source, plan.block_after, plan.max_line) as (handle, _, _):
            reader = _reader(
                handle,
                plan.encoding,
                layout,
                plan.decimal,
                plan.rows,
                skiprows=layout.skip,
                header=header,
                names=layout.names,
                chunk_rows=_chunk_rows(layout, cells),
                dtype=dict.fromkeys(text, str) or None,
            )
            for chunk in _chunks(reader, budget):
                if not (layout.has_header or layout.names):
                    chunk.columns = [f"column {i + 1}" for i in range(len(chunk.columns))]
                else:
                    chunk.columns = [str(name).strip() for name in chunk.columns]
                yield chunk
    except (ValueError, pd.errors.ParserError) as exc:
        raise ExtractionError(f"{source.name!r} could not be read as a table: {exc}") from None


def _reader(
    handle: BinaryIO,
    encoding: str,
    layout: Layout,
    decimal: str,
    nrows: int | None,
    chunk_rows: int | None = None,
    **options: Any,
) -> Any:
    import pandas as pd  # imported here: the agent only pays for pandas when a table turns up

    whitespace = layout.delimiter == WHITESPACE
    return pd.read_csv(
        handle,
        sep=r"\s+" if whitespace else layout.delimiter,
        decimal=decimal,
        encoding=encoding,
        encoding_errors="replace",
        skipinitialspace=not whitespace,
        chunksize=chunk_rows or _chunk_rows(layout),
        on_bad_lines="skip",
        nrows=nrows,
        skip_blank_lines=True,
        engine="c",
        **options,
    )


def _chunk_rows(layout: Layout, cells: int = CHUNK_CELLS) -> int:
    return max(100, min(CHUNK_ROWS, cells // max(layout.width, 1)))


def _profile(
    source: Source,
    handle: BinaryIO,
    encoding: str,
    layout: Layout,
    decimal: str,
    nrows: int | None,
    budget: Budget,
) -> dict[str, Any]:
    import pandas as pd

    profiles = Profiles()
    rows = 0
    header: Any = 0 if layout.has_header else None
    try:
        reader = _reader(
            handle, encoding, layout, decimal, nrows, skiprows=layout.skip, header=header, names=layout.names
        )
        for chunk in _chunks(reader, budget):
            rows += len(chunk)
            for position, name in enumerate(chunk.columns):
                named = layout.has_header or layout.names
                label = str(name).strip() if named else f"column {position + 1}"
                unit = layout.units[position] if layout.units and position < len(layout.units) else None
                profiles.merge(label, chunk[name], unit)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ExtractionError(f"{source.name!r} could not be read as a table: {exc}") from None
    return {"orientation": "columns", "columns": profiles.finish(), "rowCount": rows}


def _profile_rows(
    source: Source,
    handle: BinaryIO,
    encoding: str,
    layout: Layout,
    decimal: str,
    nrows: int | None,
    budget: Budget,
) -> dict[str, Any]:
    """A table with one variable per line: its name first, then its values (a plate reader's
    ``Time [s],0,600,...`` and ``A1,0.11,0.12,...``). Its first line is a variable too."""
    import pandas as pd

    profiles = Profiles()
    rows = 0
    try:
        reader = _reader(
            handle,
            encoding,
            layout,
            decimal,
            None if nrows is None else nrows + 1,
            skiprows=range(layout.start),
            header=None,
            index_col=0,  # the variable's name
            dtype={0: str},
        )
        for chunk in _chunks(reader, budget):
            for label, values in line_values(chunk, rows, decimal):
                profiles.merge(label, values, None)
            rows += len(chunk)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ExtractionError(f"{source.name!r} could not be read as a table: {exc}") from None
    columns = profiles.finish()
    observations = max((c["nonNull"] for c in columns), default=0)
    return {
        "orientation": "rows",
        "columns": columns,
        "rowCount": max(rows - 1, 0),
        "observationCount": observations,
    }


def _chunks(reader: Any, budget: Budget) -> Iterator[Any]:
    with reader:
        for chunk in reader:
            budget.check()
            yield chunk
