"""A small table profiled from the sample in pure Python, with exactly the profile pandas gives.

Most instrument exports are a few KiB: the whole file is in the 64 KiB sample, and pandas' fixed
cost (about 1.5 ms a file, plus 0.3 s to import it) is most of the work. Here the table is read
the way ``pandas.read_csv`` reads it with tabular.py's options: its C tokenizer (rows skipped by
number, blank lines skipped, quotes, spaces after a delimiter dropped, short rows padded, the
block ending at a blank line as lines.BlockEnd ends it) and its type inference (int64, else
float64, else bool, else text; its default missing values), and profiled with the same Profiles.

Invariant: the result is the pandas path's, or None. Wherever the two could differ (a number
pandas' own parser might round otherwise than Python's, a row wider than the header, a quote
running on past its line, a lone carriage return...) this returns None and the caller reads the
file with pandas. tests/test_tabular_fastpath.py compares both on generated tables.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import compress, repeat
from typing import Any

from .base import Budget
from .columns import Profiles
from .lines import BLANK_LINE
from .tablelayout import Layout
from .vendorheader import WHITESPACE

#: pandas' default missing values (``pandas._libs.parsers.STR_NA_VALUES``; a test checks them).
NA_VALUES = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
#: What pandas reads as a boolean, in any case (the C parser compares with strcasecmp).
_BOOLEANS = frozenset({"true", "false"})
#: The characters of numbers as pandas reads them (with the decimal mark): a sign, digits, an
#: exponent and the blanks its parsers skip around them. Within these, Python's float() and
#: pandas' parsers accept the same texts; a column with other characters is not of numbers.
_NUMBER_CHARS = {mark: re.compile(f"[0-9{mark}eE+\\- \t\x0b\x0c\n]*") for mark in ".,"}
#: A number's digits before and after the decimal mark, and its exponent.
_NUMBER_PARTS = {
    mark: re.compile(f"[^0-9{mark}]*([0-9]*)(?:{mark}([0-9]*))?(?:[eE]([+-]?[0-9]+))?") for mark in ".,"
}
#: Numbers written plainly (_plain_span), and what tells their digits apart.
_PLAIN = {mark: re.compile(f"[0-9{mark}\n]*") for mark in ".,"}
_ZERO_OR_DIGIT = str.maketrans("0123456789", "0111111111")
_INT64 = (-(2**63), 2**63 - 1)
_INT64_DIGITS = 18
_LONG_INTEGER = re.compile(f"[ \t\x0b\x0c]*[+-]?[0-9]{{{_INT64_DIGITS + 1},}}[ \t\x0b\x0c]*")
#: The spaces pandas drops at the start of a field (skipinitialspace), by delimiter.
_LEADING_SPACES = {d: re.compile(f"(?:(?<=[\n{re.escape(d)}])|^) +") for d in ",;\t|"}
#: Digits whose value pandas' parser (precise_xstrtod) computes exactly, as Python does: a
#: mantissa below 2**53 times or over an exact power of ten (1e22 is the last) is rounded once.
_EXACT_DIGITS = 15
_EXACT_POWER = 22

# States of pandas' tokenizer within a line.
_START, _FIELD, _QUOTED, _QUOTE_IN_QUOTED = range(4)


@dataclass(frozen=True, slots=True)
class WholeFile:
    """A file wholly in the sample: its bytes, and its lines as tabular.py splits them (all of
    them: the last one too)."""

    data: bytes
    lines: list[str]


def profile_sample(
    whole: WholeFile,
    layout: Layout,
    decimal: str,
    *,
    nrows: int | None,
    block_after: int | None,
    chunk_rows: int,
    budget: Budget,
) -> tuple[dict[str, Any], bool] | None:
    """The profile ``tabular.profile_table`` would give of this table, and whether the table ended
    at a blank line after byte ``block_after``; None where only pandas can tell. The keyword
    arguments are profile_table's."""
    data, lines = whole.data, whole.lines
    if layout.rowwise or layout.delimiter == WHITESPACE or b"\x00" in data:
        return None
    # pandas drops a byte order mark the decoder left and swallows a delimiter after a lone \r.
    if (lines and lines[0][:1] == "\ufeff") or (b"\r" in data and data.count(b"\r") != data.count(b"\r\n")):
        return None
    ended = False
    if block_after is not None:
        blank = BLANK_LINE.search(data, max(0, block_after - 1))
        if blank is not None:  # what lines.BlockEnd passes on: the lines up to the blank one
            lines, ended = lines[: data.count(b"\n", 0, blank.start() + 1)], True
    table = _table_lines(lines, layout)
    if table is None:
        return None
    names, rows = table
    found = _columns(rows, layout.delimiter, names, nrows=nrows, padded_first=layout.has_header)
    if found is None:
        return None
    columns, count = found
    profiles = Profiles()
    for first in range(0, count, chunk_rows):
        budget.check()
        for position, values in enumerate(columns):
            label = names[position].strip() if names is not None else f"column {position + 1}"
            unit = layout.units[position] if layout.units and position < len(layout.units) else None
            typed = _profile(values[first : first + chunk_rows], decimal)
            if typed is None:
                return None
            profiles.fold(label, unit, *typed)
    return {"orientation": "columns", "columns": profiles.finish(), "rowCount": count}, ended


def _table_lines(lines: list[str], layout: Layout) -> tuple[list[str] | None, list[str]] | None:
    """The column names (None: the table has none) and the lines pandas reads as rows."""
    delimiter = layout.delimiter
    skipped = set(layout.skip)
    if any(
        '"' in lines[i] and not _skipped_line_ends(lines[i], delimiter) for i in skipped if i < len(lines)
    ):
        return None
    rest = lines[layout.start :]
    if layout.units_line is not None and layout.units_line >= layout.start:
        del rest[layout.units_line - layout.start]
    # pandas skips lines of nothing but spaces and tabs (a tab is a field where it delimits).
    rest = list(compress(rest, map(str.strip, rest, repeat(" " if delimiter == "\t" else " \t"))))
    if layout.names:
        if len(set(layout.names)) < len(layout.names):
            return None  # pandas refuses duplicate names
        return list(layout.names), rest
    if not layout.has_header:
        return None, rest
    if not rest:
        return None
    header = _fields(rest[0], delimiter)
    if header is None:
        return None
    names = [name or f"Unnamed: {i}" for i, name in enumerate(header)]
    if len(set(names)) < len(names):
        return None  # pandas renames duplicates ("A", "A.1"): left to it
    return names, rest[1:]


def _columns(
    lines: list[str], delimiter: str, names: list[str] | None, *, nrows: int | None, padded_first: bool
) -> tuple[list[list[str]], int] | None:
    """The first ``nrows`` rows' fields, column by column, as pandas' tokenizer gives them, and
    how many rows: short rows padded with missing values (the first one only under a header
    row, ``padded_first``), wider ones skipped."""
    head = lines if nrows is None else lines[:nrows]
    if not head:
        return None
    block = "\n".join(head)
    if '"' not in block:
        if " " in block:  # pandas drops the spaces a field starts with (skipinitialspace)
            block = _LEADING_SPACES[delimiter].sub("", block)
            head = block.split("\n")
        width = len(names) if names is not None else head[0].count(delimiter) + 1
        if set(map(str.count, head, repeat(delimiter))) == {width - 1}:  # a full table: one split
            cells = block.replace("\n", delimiter).split(delimiter)
            return [cells[j::width] for j in range(width)], len(head)
    rows: list[list[str]] = []
    for line in lines:
        row = _fields(line, delimiter)
        if row is None:
            return None
        if not rows:
            width = len(names) if names is not None else len(row)
            # A wider first row is an index column to pandas; a shorter one under names that are
            # given follows rules of its own.
            if len(row) > width or (len(row) < width and not padded_first):
                return None
        elif len(row) > width:
            continue  # a bad line: pandas skips it (on_bad_lines="skip")
        rows.append(row + [""] * (width - len(row)) if len(row) < width else row)
        if len(rows) == nrows:
            break
    return [list(column) for column in zip(*rows, strict=True)], len(rows)


def _fields(line: str, delimiter: str) -> list[str] | None:
    """A line's fields as pandas' tokenizer reads them: quotes only open a field, ``""`` in a
    quoted field is a quote, spaces before a field are dropped. None: a quote runs on past the
    line."""
    if '"' not in line:
        fields = line.split(delimiter)
        return [field.lstrip(" ") for field in fields] if " " in line else fields
    fields, field, state = [], [], _START
    for c in line:
        if state == _START:
            if c == '"':
                state = _QUOTED
            elif c == delimiter:
                fields.append("")
            elif c != " ":
                field.append(c)
                state = _FIELD
        elif state == _FIELD:
            if c == delimiter:
                fields.append("".join(field))
                field, state = [], _START
            else:
                field.append(c)
        elif state == _QUOTED:
            if c == '"':
                state = _QUOTE_IN_QUOTED
            else:
                field.append(c)
        elif c == '"':  # a doubled quote inside quotes
            field.append(c)
            state = _QUOTED
        elif c == delimiter:
            fields.append("".join(field))
            field, state = [], _START
        else:
            field.append(c)
            state = _FIELD
    if state == _QUOTED:
        return None
    fields.append("".join(field))
    return fields


def _skipped_line_ends(line: str, delimiter: str) -> bool:
    """Whether pandas, skipping this line by its number, ends it at its line break: a quote that
    opens a field runs on into the next line until it is closed."""
    state = _QUOTED if line.startswith('"') else _FIELD
    for c in line[1:]:
        if state == _QUOTED:
            if c == '"':
                state = _QUOTE_IN_QUOTED
        elif state == _QUOTE_IN_QUOTED:
            state = _QUOTED if c == '"' else _START if c == delimiter else _FIELD
        elif c == delimiter:
            state = _START
        elif state == _START and c == '"':
            state = _QUOTED
        else:
            state = _FIELD
    return state != _QUOTED


def _profile(tokens: list[str], decimal: str) -> tuple[str, int, Any, Any] | None:
    """One chunk of a column as pandas types it: (kind, values present, min, max), as
    Profiles.merge would fold it; None where pandas might read its numbers otherwise."""
    joined = "\n".join(tokens)
    plain_text = _PLAIN[decimal].fullmatch(joined) is not None
    if plain_text and joined[:1] not in ("", "\n") and joined[-1] != "\n" and "\n\n" not in joined:
        # Digits and decimal marks in every field (a column of numbers, most columns): none is
        # one of pandas' missing values, which the look-up of each field in them would ask.
        values, missing = tokens, False
    else:
        values = tokens if NA_VALUES.isdisjoint(tokens) else [t for t in tokens if t not in NA_VALUES]
        missing = len(values) < len(tokens)
        if not values:
            return "empty", 0, None, None
        if missing:
            joined = "\n".join(values)
            plain_text = _PLAIN[decimal].fullmatch(joined) is not None
    plain = _plain_span(values, joined, decimal) if plain_text else None
    if plain is not None:
        integral, least, most = plain
        if integral and not missing:
            return "integer", len(values), int(least), int(most)
        return "number", len(values), float(least.replace(",", ".")), float(most.replace(",", "."))
    if len(max(values, key=len)) > _INT64_DIGITS and any(map(_LONG_INTEGER.fullmatch, values)):
        return None  # past int64, pandas reads the column as text, and its missing values as text
    floats = _numbers(values, decimal) if _NUMBER_CHARS[decimal].fullmatch(joined) else None
    if floats is not None:
        if not missing and decimal not in joined and "e" not in joined and "E" not in joined:
            integers = list(map(int, values))  # pandas tries int64 first
            low, high = min(integers), max(integers)
            return ("integer", len(values), low, high) if _INT64[0] <= low and high <= _INT64[1] else None
        span = _float_span(values, joined, decimal, floats)
        return None if span is None else ("number", len(values), *span)
    if all(_numbers([value], decimal) for value in values):
        return None  # every value reads as a number (inf, 1_000): pandas may say otherwise
    if not missing and all(t.isascii() and t.lower() in _BOOLEANS for t in values):
        return "boolean", len(values), None, None
    return "text", len(values), None, None  # booleans with a missing value are objects to pandas


def _numbers(values: list[str], decimal: str) -> list[float] | None:
    try:
        return [float(v.replace(",", ".")) for v in values] if decimal == "," else list(map(float, values))
    except ValueError:
        return None


def _plain_span(values: list[str], joined: str, decimal: str) -> tuple[bool, str, str] | None:
    """(integral, lowest, highest) of a column of numbers written plainly: digits, and with a
    decimal mark the same number of decimals in each; None for any other column. Such numbers
    are in the order of (length, text) (of their text alone where all are as long): only two
    are parsed. ``joined``: the values between line breaks, nothing but digits and decimal marks
    (_PLAIN)."""
    count, size = len(values), len(values[0])
    mark = values[0].find(decimal)
    if len(joined) == count * (size + 1) - 1 and joined[size :: size + 1] == "\n" * (count - 1):
        # As long as each other, with the mark in one place: even leading zeros sort right.
        if size > (_INT64_DIGITS if mark < 0 else _EXACT_DIGITS) or (size == 1 and mark == 0):
            return None  # too long to be exact, or a lone decimal mark
        if joined.count(decimal) != (0 if mark < 0 else count):
            return None
        if mark >= 0 and joined[mark :: size + 1] != decimal * count:
            return None
        return mark < 0, min(values), max(values)
    shape = f"\n{joined}\n".translate(_ZERO_OR_DIGIT)
    if "\n00" in shape or "\n01" in shape or f"\n{decimal}" in shape:
        return None
    marks = shape.count(decimal)
    if marks:
        ending = f"{decimal}{'0' * (size - mark - 1)}\n"
        if marks != count or mark < 0 or shape.replace("1", "0").count(ending) != marks:
            return None
    longest = len(max(values, key=len))
    if longest > (_INT64_DIGITS if not marks else _EXACT_DIGITS):
        return None
    # Right-justified with spaces, which sort before digits, the texts sort as the numbers do.
    justified = list(map(str.rjust, values, repeat(longest)))
    return not marks, min(justified).lstrip(), max(justified).lstrip()


def _float_span(
    values: list[str], joined: str, decimal: str, floats: list[float]
) -> tuple[float, float] | None:
    # Short numbers without an exponent are exact whatever they are; others are looked at.
    if max(map(len, values)) > _EXACT_DIGITS or "e" in joined or "E" in joined:
        parts = _NUMBER_PARTS[decimal]
        for value in values:
            m = parts.match(value)
            if m is None:
                return None
            whole, fraction, exponent = m[1], m[2] or "", m[3] or "0"
            power = int(exponent) - len(fraction)
            if len(whole) + len(fraction) > _EXACT_DIGITS or abs(power) > _EXACT_POWER:
                return None
    low, high = min(floats), max(floats)
    if (low == 0 or high == 0) and any(math.copysign(1.0, f) < 0 for f in floats if f == 0):
        # A negative zero: pandas reads "-0" as 0.0 and "-0.0" as -0.0, and which of two tied
        # zeros numpy's min returns is its own affair. Left to pandas.
        return None
    return low, high
