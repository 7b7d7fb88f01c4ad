"""Reading a text export's first table in chunks, bounded in memory whatever its size: its profile
(each variable's name, unit, type, non-null count, range) and, for derived tables, its chunks.

pandas reads it in chunks of at most CHUNK_ROWS rows and CHUNK_CELLS values; the file is cut
before a line longer than MAX_LINE_BYTES (pandas holds a whole line) and, where the sample shows
a table's first rows, at the first blank line after them (lines.BlockEnd). A table wholly in the
sample is profiled from it in pure Python instead, with pandas' result (sampletable).
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from .base import Budget, ExtractionError, Source
from .columns import Profiles, line_values
from .lines import BlockEnd, LineLimit
from .sampletable import WholeFile, profile_sample
from .tablelayout import Layout
from .vendorheader import WHITESPACE

#: The sample a table's layout is read from (see tabular).
SAMPLE_BYTES = 64 << 10
#: A line longer than this ends the table (the rows before it are profiled): pandas holds a whole
#: line in memory, and a 400 MB line of a million fields would cost gigabytes.
MAX_LINE_BYTES = 1 << 20
CHUNK_ROWS = 50_000
#: Cells per chunk: a wide table gets fewer rows per chunk, so memory stays bounded.
CHUNK_CELLS = 2_000_000
_BLOCK_NOTE = (
    f"the first table ends at a blank line after the first {SAMPLE_BYTES >> 10} KiB; "
    "what follows it is not profiled"
)


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
    with _read_as_table(source), _bounded(source, plan.block_after, plan.max_line) as (handle, _, _):
        dtype = dict.fromkeys(text, str) or None
        rows = _chunk_rows(plan.layout, cells)
        for chunk, labels in _column_chunks(
            handle,
            plan.encoding,
            plan.layout,
            plan.decimal,
            plan.rows,
            budget,
            chunk_rows=rows,
            dtype=dtype,
        ):
            chunk.columns = labels
            yield chunk


def table_transposed(source: Source, plan: TablePlan, budget: Budget, *, max_cells: int) -> Any:
    """A table with one variable per line (``Time [s],0,600,...``), as one DataFrame with a column
    per variable, labelled by its line's first field, and a row per observation. It is turned in
    memory, so a table of more than ``max_cells`` values is refused (ExtractionError)."""
    import pandas as pd

    frames, cells = [], 0
    with _read_as_table(source), _bounded(source, plan.block_after, plan.max_line) as (handle, _, _):
        for chunk in _line_chunks(handle, plan.encoding, plan.layout, plan.decimal, plan.rows, budget):
            cells += chunk.size
            if cells > max_cells:
                raise ExtractionError(
                    f"{source.name!r} writes one variable per line, and its table has more than "
                    f"{max_cells:,} values: too many to turn into columns"
                )
            frames.append(chunk)
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames)
    labels, seen = [], Counter[str]()
    for i, name in enumerate(table.index):
        label = name.strip() if isinstance(name, str) and name.strip() else f"row {i + 1}"
        seen[label] += 1  # a label repeated: "A1", "A1 (2)", "A1 (3)"
        labels.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    turned = table.T
    turned.columns = labels
    # Padding at the end of the lines (",,,,") is no observation.
    return turned.dropna(how="all").reset_index(drop=True)


def _column_chunks(
    handle: BinaryIO,
    encoding: str,
    layout: Layout,
    decimal: str,
    nrows: int | None,
    budget: Budget,
    **options: Any,
) -> Iterator[tuple[Any, list[str]]]:
    """A column-wise table's chunks, each with its columns' labels: the header's text (stripped),
    or ``column N`` for a table without one."""
    header: Any = 0 if layout.has_header else None
    named = layout.has_header or layout.names
    reader = _reader(
        handle,
        encoding,
        layout,
        decimal,
        nrows,
        skiprows=layout.skip,
        header=header,
        names=layout.names,
        **options,
    )
    for chunk in _chunks(reader, budget):
        labels = [str(name).strip() if named else f"column {i + 1}" for i, name in enumerate(chunk.columns)]
        yield chunk, labels


def _line_chunks(
    handle: BinaryIO,
    encoding: str,
    layout: Layout,
    decimal: str,
    nrows: int | None,
    budget: Budget,
) -> Iterator[Any]:
    """A table with one variable per line, in chunks of lines indexed by the variable's name (the
    first field); ``nrows`` counts the data lines, the first line being a variable too."""
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
    yield from _chunks(reader, budget)


@contextmanager
def _read_as_table(source: Source) -> Iterator[None]:
    """pandas' errors while a table is read and its chunks used, as the file's ExtractionError."""
    import pandas as pd

    try:
        yield
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
    profiles = Profiles()
    rows = 0
    with _read_as_table(source):
        for chunk, labels in _column_chunks(handle, encoding, layout, decimal, nrows, budget):
            rows += len(chunk)
            for position, label in enumerate(labels):
                unit = layout.units[position] if layout.units and position < len(layout.units) else None
                profiles.merge(label, chunk.iloc[:, position], unit)
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
    profiles = Profiles()
    rows = 0
    with _read_as_table(source):
        for chunk in _line_chunks(handle, encoding, layout, decimal, nrows, budget):
            for label, values in line_values(chunk, rows, decimal):
                profiles.merge(label, values, None)
            rows += len(chunk)
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
