"""Where the table sits in a vendor text export, as its first 64 KiB show it.

The table is the widest run of lines with one number of fields; above it sit the vendor's
key/value lines (comment lines ``#Key=value`` among them, which are never table rows), above its
first line of numbers its names (``Wave;Sample``, or a commented ``#Wave<TAB>#Intensity``) and
perhaps a line of units. A plate reader may write its variables in rows (``Cycle Nr.,1,2,3``,
``Time [s],0,600,1200``, ``A1,0.11,0.12,0.13``); the table is then read that way. Exports with
several reads write one table per read, separated by blank lines: the first is profiled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from itertools import compress, count, groupby, repeat

from .vendorheader import BLANKS, WHITESPACE, comment_pair, field_count, split_fields

_DELIMITERS = (",", ";", "\t", "|")
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")
_COMMENT = re.compile(r"^\s*#")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+([eE][+-]?\d+)?$")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the table sits in the file, as the sample shows it."""

    delimiter: str
    start: int  # index of the table's first line (its header, if it has one)
    width: int = 1  # fields per line
    has_header: bool = True
    units: list[str] | None = None  # a line of units under the header ("[nm];[counts]")
    units_line: int | None = None
    names: list[str] | None = None  # from a commented line above the numbers ("#Wave\t#Intensity")
    rowwise: bool = False  # one variable per line: a plate reader's wells, time and temperature

    @property
    def skip(self) -> list[int]:
        return [*range(self.start), *([self.units_line] if self.units_line is not None else [])]


@dataclass(frozen=True, slots=True)
class Block:
    """The first table's rows as the sample shows them."""

    data: int | None  # index of its first data line; None: none in the sample
    rows: int | None  # data rows; None: the block runs past the sample
    later: int = 0  # later tables with the same first line
    labels: tuple[str, ...] = ()  # each table's label line ("OD600", "OD700"), when every one has one


def numeric(field: str) -> bool:
    return bool(_NUMBER.match(field.strip()))


def is_comment(line: str, delimiter: str) -> bool:
    """A line of the vendor's header starting with "#" (``#Acq. time (s)=10``, ``#Wave<TAB>#Intensity``),
    not a table's line whose first field is "#" (``#,Time,Value``: the column of row numbers)."""
    if not _COMMENT.match(line):
        return False
    return delimiter == WHITESPACE or split_fields(line, delimiter)[0].strip() != "#"


def _any_numeric(line: str, delimiter: str) -> bool:
    return any(numeric(f) for f in split_fields(line, delimiter))


def _separators(lines: list[str], delimiter: str, special: list[int]) -> list[int]:
    # Each line's number of fields less one; comment lines are the vendor's header, never rows.
    # A blank line counts as one of a single field: neither can be a table's row. For a delimiter,
    # str.count mapped over the lines (a comprehension cost twice as much), and only the lines in
    # ``special`` (a quote, a NUL or a "#") need more than counting delimiters.
    if delimiter == WHITESPACE:
        return [0 if is_comment(line, delimiter) else max(0, len(line.split()) - 1) for line in lines]
    # Blank fields at the end do not count (padding: "Date:,,,,28/02/2020,,,,").
    separators = list(map(str.count, map(str.rstrip, lines, repeat(delimiter + BLANKS)), repeat(delimiter)))
    for i in special:
        line = lines[i]
        separators[i] = 0 if is_comment(line, delimiter) else max(0, field_count(line, delimiter) - 1)
    return separators


def _runs(lines: list[str], delimiter: str, special: list[int]) -> list[tuple[int, int, int]]:
    # (width, first line, length) of runs of three or more lines with one width.
    found, i = [], 0
    for separators, run in groupby(_separators(lines, delimiter, special)):
        length = len(list(run))
        if separators and length >= min(3, len(lines) - i):
            found.append((separators + 1, i, length))
        i += length
    return found


def _kept(lines: list[str], delimiter: str) -> list[str]:
    # Each line, or "" where it is blank: nothing but blanks and delimiters (``,,,,,,,,``).
    strip = BLANKS if delimiter == WHITESPACE else delimiter + BLANKS
    kept = list(map(str.strip, lines, repeat(strip)))
    text = "\n".join(kept)
    if '"' in text or "\x00" in text:  # where csv.reader splits, it decides
        kept = ["" if field_count(line, delimiter) == 0 else line for line in lines]
    return kept


def _decimal_commas(lines: list[str], delimiter: str, runs: list[tuple[int, int, int]]) -> bool:
    # "0,5;1,25": a table split by ";" (or tabs) whose numbers have decimal commas, which split
    # by commas would look wider.
    if not runs:
        return False
    _, start, length = max(runs)
    sample = lines[start : start + min(length, 20)]
    return any(_DECIMAL_COMMA.match(f.strip()) for line in sample for f in split_fields(line, delimiter))


def find_table(lines: list[str]) -> Layout:
    """Find the table after the vendor block.

    Its width is the largest number of fields (two or more) shared by at least three consecutive
    lines; it starts at the first such run, so rows of empty wells further down do not matter.
    Fields separated by blanks count only where no delimiter makes a table.
    """
    # One look at the whole sample says which delimiters occur and which lines need more than a
    # count of delimiters: most lines of most tables need nothing else.
    text = "\n".join(lines)
    special = (
        [i for i, line in enumerate(lines) if '"' in line or "\x00" in line or "#" in line]
        if '"' in text or "\x00" in text or "#" in text
        else []
    )
    width, delimiter, runs = 0, ",", []
    for candidate in _DELIMITERS:
        found = _runs(lines, candidate, special) if candidate in text else []
        best = max((w for w, _, _ in found), default=0)
        if best > width or (best >= 2 and delimiter == "," and _decimal_commas(lines, candidate, found)):
            width, delimiter, runs = best, candidate, found
    if width == 0:
        runs = _runs(lines, WHITESPACE, special)
        width, delimiter = max((w for w, _, _ in runs), default=0), WHITESPACE
    if width == 0:
        return Layout(",", len(lines))
    start = min(i for w, i, _ in runs if w == width)
    first = split_fields(lines[start], delimiter)
    if all(numeric(f) for f in first):
        return _names_above(lines, start, delimiter, width)
    below = [split_fields(line, delimiter) for line in lines[start + 1 : start + 3]]
    if len(below) == 2 and not any(numeric(f) for f in below[0]) and any(numeric(f) for f in below[1]):
        units = [u.strip().strip("[]()") for u in below[0]]
        return Layout(delimiter, start, width, units=units, units_line=start + 1)
    layout = Layout(delimiter, start, width)
    return replace(layout, rowwise=True) if _variables_in_rows(lines, start, delimiter) else layout


def _names_above(lines: list[str], start: int, delimiter: str, width: int) -> Layout:
    # Numbers from the first line on: the names (and a line of units) may sit just above,
    # wider than the data when the last column is empty ("Wave;Sample;Dark;Reference;Scope").
    above = [i for i in range(max(0, start - 4), start) if lines[i].strip()][-2:]
    if above and is_comment(lines[above[-1]], delimiter):
        names = _comment_names(lines[above[-1]], delimiter, width)
        return Layout(delimiter, start, width, has_header=False, names=names)
    texts = [
        i
        for i in above
        if not is_comment(lines[i], delimiter)
        and len(split_fields(lines[i], delimiter)) >= width
        and not _any_numeric(lines[i], delimiter)
    ]
    if len(texts) == 2:
        units = [u.strip().strip("[]()") for u in split_fields(lines[texts[1]], delimiter)]
        return Layout(delimiter, texts[0], width, units=units, units_line=texts[1])
    if texts and texts[-1] == above[-1]:
        return Layout(delimiter, texts[-1], width)
    return Layout(delimiter, start, width, has_header=False)


def _comment_names(line: str, delimiter: str, width: int) -> list[str] | None:
    """Column names from a comment line over the numbers (``#Wave<TAB>#Intensity``, ``# x y``);
    None for a comment that is a key/value pair or does not name every column."""
    if comment_pair(line) is not None:
        return None
    text = _COMMENT.sub("", line, count=1)
    names = [f.strip().lstrip("#").strip() for f in split_fields(text, delimiter)]
    if len(names) != width:
        names = [f.lstrip("#") for f in text.split()]
    if len(names) != width or any(numeric(n) for n in names) or not any(names):
        return None
    # An empty name is a column pandas would call "Unnamed": dropped if it holds nothing.
    return [n or f"Unnamed: {i}" for i, n in enumerate(names)]


def _variables_in_rows(lines: list[str], start: int, delimiter: str) -> bool:
    """Whether each line is one variable: a name, then its values (``Cycle Nr.,1,2,3`` over
    ``Time [s],0,600,1200`` and ``A1,0.11,0.12,0.13``)."""
    first = split_fields(lines[start], delimiter)
    values = [f for f in first[1:] if f.strip()]
    if len(values) < 2 or not first[0].strip() or first[0].strip() == "<>" or numeric(first[0]):
        return False
    if not all(numeric(f) for f in values):
        return False
    following = []
    for line in lines[start + 1 : start + 6]:
        fields = split_fields(line, delimiter)
        if not fields:
            break
        following.append(fields[0])
    return bool(following) and not any(numeric(f) or not f.strip() for f in following)


def first_block(lines: list[str], layout: Layout) -> Block:
    """The first table's extent, and how many tables with the same first line follow.

    Exports like a plate reader's write one table per read (OD600, OD700, GFP...) separated by
    blank lines; profiling them as one table would mix their values.
    """
    after = max(layout.start + (1 if layout.has_header else 0), (layout.units_line or 0) + 1)
    kept = _kept(lines[after:], layout.delimiter)
    first = next(compress(count(), kept), None)
    if first is None:
        return Block(None, None)
    data = after + first
    try:
        end = after + kept.index("", first)
    except ValueError:  # the block runs past the sample
        return Block(data, None, labels=_labels(lines, [layout.start], layout.delimiter))
    header = split_fields(lines[layout.start], layout.delimiter)
    starts = [layout.start]
    if layout.has_header:
        starts += [i for i in range(end, len(lines)) if split_fields(lines[i], layout.delimiter) == header]
    return Block(data, end - data, len(starts) - 1, _labels(lines, starts, layout.delimiter))


def _labels(lines: list[str], starts: list[int], delimiter: str) -> tuple[str, ...]:
    # A read's name on the line above its table ("OD600"): one text field, nothing else.
    labels = []
    for start in starts:
        above = split_fields(lines[start - 1], delimiter) if start > 0 else []
        label = above[0].strip() if len(above) == 1 else ""
        if not label or numeric(label) or len(label) > 40 or any(c in label for c in ":=#"):
            return ()
        labels.append(label)
    return tuple(labels)


def trailer_lines(lines: list[str], delimiter: str, not_before: int) -> list[str]:
    """The key/value lines after the last table (Tecan's ``End Time``): the last run of lines
    after a blank one, when it starts at ``not_before`` or later and is short and made of text
    keys with a value or two (a table's rows are not)."""
    end = len(lines)
    while end and not split_fields(lines[end - 1], delimiter):
        end -= 1
    begin = end
    while begin > 0 and split_fields(lines[begin - 1], delimiter):
        begin -= 1
    if begin == 0 or begin < not_before or not 0 < end - begin <= 10:
        return []
    for line in lines[begin:end]:
        fields = [f for f in split_fields(line, delimiter) if f.strip()]
        if len(fields) > 3 or numeric(fields[0]) or is_comment(line, delimiter):
            return []
    return lines[begin:end]


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
