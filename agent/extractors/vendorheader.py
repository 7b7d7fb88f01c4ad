"""The key/value block instruments write above a table, and the dates in it.

``Key: value``, ``Key:,,,,value``, ``Key,,,,value,unit`` and ``Key: value,,,,Other key: value`` all
occur (Tecan, BioLogic, AvaSoft), and so do comment lines ``#Key=value`` and ``#Key: value``
(HORIBA LabSpec, JCAMP-like ``##KEY=value``). A key keeps its first value, as rules expect; a key
whose later values differ keeps them all in ``repeated``, and the blocks between blank lines are
kept in order (a plate reader's settings of each read). Dates (``28/02/2020`` and ``9:11 AM``,
Excel serial days) become ISO 8601, with the day/month ambiguity said out loud.

Invariants: at most MAX_HEADER_LINES lines are read; no date is ever invented (a time that cannot
be read leaves a date without one).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .base import Metadata, acquisition_time

MAX_HEADER_LINES = 500
#: The delimiter of a table whose fields are separated by runs of spaces or tabs.
WHITESPACE = " "
_DATE = re.compile(r"^(?P<a>\d{1,4})(?P<sep>[/.-])(?P<b>\d{1,2})[/.-](?P<c>\d{2,4})(?:[ T]+(?P<time>.+))?$")
_TIME = re.compile(
    r"^(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,]\d+)?)?\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?$"
)
_PAIR = re.compile(r"^[A-Za-z][\w .()/#-]*:\s")
_COMMENT = re.compile(r"^\s*#+\s*")
#: Names of keys and columns that hold a date (and so may hold an Excel serial day number).
_DATE_NAME = re.compile(r"date|datum|time\s*stamp|datetime", re.IGNORECASE)
#: Excel's 1900 date system counts days from 1899-12-30 (its 1900 leap-year bug included).
EXCEL_EPOCH = datetime(1899, 12, 30)
#: Serial days read as dates: 1954-10-03 to 2119-01-10. Other numbers are more likely counts.
EXCEL_SERIALS = (20_000.0, 80_000.0)


#: What str.strip() strips: a field of nothing else is blank.
BLANKS = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def split_fields(line: str, delimiter: str) -> list[str]:
    """The line's fields, without the empty ones vendors pad lines with (``Date:,,,,28/02/2020,,,,``)."""
    if delimiter == WHITESPACE:
        return line.split()
    if '"' in line or "\x00" in line:
        try:
            fields = next(csv.reader([line], delimiter=delimiter), [])
        except csv.Error:  # a NUL or a stray quote: the line is not a row of this table
            return [line] if line.strip() else []
    else:  # without a quote the csv module splits at every delimiter; str.split is ten times faster
        fields = line.split(delimiter)
    while fields and not fields[-1].strip():
        fields.pop()
    return fields


def field_count(line: str, delimiter: str) -> int:
    """``len(split_fields(line, delimiter))``, without building the fields where no quote makes it
    necessary: the delimiters before the last character that is neither blank nor a delimiter."""
    if delimiter == WHITESPACE or '"' in line or "\x00" in line:
        return len(split_fields(line, delimiter))
    kept = line.rstrip(delimiter + BLANKS)
    return kept.count(delimiter) + 1 if kept else 0


@dataclass(slots=True)
class Header:
    """A vendor header: the first value of each key, every value of a key whose values differ,
    and the key/value pairs of each block between blank lines, in order."""

    values: dict[str, str] = field(default_factory=dict)
    blocks: list[list[tuple[str, str]]] = field(default_factory=list)
    _every: dict[str, list[str]] = field(default_factory=dict)

    def add(self, key: str, value: str) -> None:
        self.values.setdefault(key, value)
        self._every.setdefault(key, []).append(value)

    @property
    def repeated(self) -> dict[str, list[str]]:
        """Every value, in order, of each key whose values differ."""
        return {k: v for k, v in self._every.items() if len(set(v)) > 1}


def read_header(lines: list[str], delimiter: str) -> Header:
    """The key/value lines of a header (or a trailer) block."""
    header = Header()
    block: list[tuple[str, str]] = []
    for line in lines[:MAX_HEADER_LINES]:
        pairs = line_pairs(line, delimiter)
        if not pairs and not split_fields(line, delimiter):
            if block:
                header.blocks.append(block)
            block = []
            continue
        for key, value in pairs:
            header.add(key, value)
            block.append((key, value))
    if block:
        header.blocks.append(block)
    return header


def parse_header_block(lines: list[str], delimiter: str) -> dict[str, str]:
    """Vendor key/value lines before the table; a key seen twice keeps its first value."""
    return read_header(lines, delimiter).values


def comment_pair(line: str) -> tuple[str, str] | None:
    """``#Acq. time (s)=\\t1`` or ``# Date: 2021-03-04`` as (key, value); None for other lines."""
    m = _COMMENT.match(line)
    if m is None:
        return None
    text = line[m.end() :]
    # Whichever comes first separates: "#Time=10:22", "# Ewe range : min = 0 V".
    at = min((i for i in (text.find("="), text.find(":")) if i > 0), default=-1)
    key, value = text[:at], text[at + 1 :]
    if at < 0 or not key.strip() or len(key) > 80:
        return None
    # The value's padding: LabSpec puts a tab after "=", spreadsheets a row of delimiters.
    return key.strip(), re.sub(r"\t+", " ", value).strip().rstrip(",;|").strip()


def line_pairs(line: str, delimiter: str) -> list[tuple[str, str]]:
    """The (key, value) pairs one header line holds, without pairs whose value is empty."""
    if _COMMENT.match(line):
        pair = comment_pair(line)
        return [pair] if pair and pair[1] else []
    fields = [f.strip() for f in split_fields(line, delimiter) if f.strip()]
    if not fields:
        return []
    first = fields[0]
    if ":" in first and not first.endswith(":"):
        key, _, value = first.partition(":")
        values = [value.strip()] if value.strip() else []
    else:
        key, values = first.rstrip(":"), []
    pairs = []
    for item in fields[1:]:
        if values and _PAIR.match(item):  # "Serial number: x" after "Device: Spark"
            other, _, value = item.partition(":")
            pairs.append((other, value))
        else:
            values.append(item)
    found = [(k.strip(), v.strip()) for k, v in [(key, " ".join(values)), *pairs]]
    return [(k, v) for k, v in found if k and v]


def is_date_name(name: str) -> bool:
    """Whether a key or column name says it holds dates ("Date", "Timestamp", "Datum")."""
    return bool(_DATE_NAME.search(name))


def excel_date(serial: float) -> str | None:
    """An Excel serial day (1900 date system) as ISO 8601; None outside the plausible range."""
    if not EXCEL_SERIALS[0] <= serial <= EXCEL_SERIALS[1]:
        return None
    moment = EXCEL_EPOCH + timedelta(seconds=round(serial * 86_400))
    return moment.date().isoformat() if serial == int(serial) else moment.isoformat()


def header_dates(header: dict[str, str]) -> list[dict[str, Any]]:
    """Dates found in the header, as ISO 8601 with how sure we are of day versus month."""
    found = []
    time_value = next((v for k, v in header.items() if k.lower() == "time" and _TIME.match(v)), None)
    for key, value in header.items():
        parsed = parse_vendor_date(value, time_value if key.lower() == "date" else None)
        if parsed is None and is_date_name(key):
            parsed = _excel_header_date(value)
        if parsed is not None:
            found.append({"field": key, "original": value, **parsed})
    return found


def _excel_header_date(value: str) -> dict[str, Any] | None:
    try:
        serial = float(value.strip())
    except ValueError:
        return None
    iso = excel_date(serial)
    return None if iso is None else {"iso": iso, "timezone": "unknown", "excelSerial": serial}


def parse_vendor_date(value: str, separate_time: str | None = None) -> dict[str, Any] | None:
    """``28/02/2020 9:11 AM`` -> ISO 8601, noting whether day-first was certain or assumed."""
    text = value.strip()
    m = _DATE.match(text)
    if not m:
        return None
    if len(m["a"]) == 4 and m["time"] and not _TIME.match(m["time"].strip()):
        return _iso_with_offset(text)
    day_month = _day_month(m)
    if day_month is None:
        return None
    year, month, day, note = day_month
    clock = _clock(m["time"] or separate_time)
    try:
        moment = datetime(year, month, day, *(clock or (0, 0, 0)))
    except ValueError:
        return None
    out: dict[str, Any] = {
        "iso": moment.isoformat() if clock else moment.date().isoformat(),
        "timezone": "unknown",
    }
    if note:
        out["dayMonthOrder"] = note
    return out


def _day_month(m: re.Match[str]) -> tuple[int, int, int, str | None] | None:
    a, b, c = m["a"], m["b"], m["c"]
    if len(a) == 4:  # ISO-like year first
        return int(a), int(b), int(c), None
    if len(a) == 3 or len(c) == 3:
        return None
    year = int(c) + (2000 if len(c) == 2 else 0)
    first, second = int(a), int(b)
    if first > 12:
        return year, second, first, "day-first (the first number is above 12)"
    if second > 12:
        return year, first, second, "month-first (the second number is above 12)"
    if m["sep"] == ".":
        return year, second, first, "day-first (dates written with dots are DD.MM.YYYY)"
    return year, second, first, "ambiguous: read as day-first (DD/MM); it could be MM/DD"


def _clock(text: str | None) -> tuple[int, int, int] | None:
    # A time that cannot be read gives a date without one, never a made-up midnight.
    t = _TIME.match(text.strip()) if text else None
    if t is None:
        return None
    hour = int(t["h"])
    if t["ampm"]:
        hour = hour % 12 + (12 if t["ampm"][0].lower() == "p" else 0)
    return hour, int(t["m"]), int(t["s"] or 0)


def _iso_with_offset(text: str) -> dict[str, Any] | None:
    # "2021-03-04T10:22:11+01:00": the file's own UTC offset is kept.
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        return None
    zone = moment.strftime("%z") if moment.tzinfo else None
    iso = moment.replace(microsecond=0).isoformat()
    return {"iso": iso, "timezone": f"{zone[:3]}:{zone[3:]}" if zone else "unknown"}


_START = re.compile(r"\bstart|\bbegin", re.IGNORECASE)
_END = re.compile(r"\b(end|stop|finish)", re.IGNORECASE)
_MEASURED = re.compile(r"acqui|measur|record|run|scan", re.IGNORECASE)
#: Dates of something other than the measurement: of the method, the export, a calibration.
_NOT_MEASURED = re.compile(r"creat|modif|sav|export|print|calib|expir|birth|install|due", re.IGNORECASE)


def acquisition_from(dates: list[dict[str, Any]], where: dict[str, str]) -> Metadata | None:
    """The ``acquisition`` entry the header's dates give, or None.

    A start (and end) line wins ("Start Time" ... "End Time"); else a date of acquisition
    ("Acquired", "Measurement date"); else the plain "Date" (with "Time"). A date with a time of
    day wins over a day alone, which stays a day. ``where`` names the block a field was found in.
    """
    usable = [d for d in dates if not _NOT_MEASURED.search(d["field"])]
    timed = [d for d in usable if "T" in d["iso"]]
    start, end = _start_end(timed) if timed else _start_end(usable)
    if start is None:
        return None
    if end is not None and end["iso"] < start["iso"]:
        end = None  # an end before the start is not this measurement's end
    source = " and ".join(f'{where.get(d["field"], "header")} "{d["field"]}"' for d in (start, end) if d)
    entry = acquisition_time(start["iso"], end["iso"] if end else None, source=source)
    ambiguous = [d["dayMonthOrder"] for d in (start, end) if d and "ambiguous" in d.get("dayMonthOrder", "")]
    if ambiguous:
        entry["dayMonthOrder"] = ambiguous[0]
    return entry


def _start_end(dates: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    start = next((d for d in dates if _START.search(d["field"])), None)
    if start is not None:
        return start, next((d for d in dates if _END.search(d["field"])), None)
    for named in (_MEASURED.search, is_date_name):
        start = next((d for d in dates if named(d["field"])), None)
        if start is not None:
            return start, None
    return None, None
