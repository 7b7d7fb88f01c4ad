"""The key/value block instruments write above a table, and the dates in it.

``Key: value``, ``Key:,,,,value``, ``Key,,,,value,unit`` and ``Key: value,,,,Other key: value`` all
occur (Tecan, BioLogic, AvaSoft). Dates (``28/02/2020`` and ``9:11 AM``) become ISO 8601, with the
day/month ambiguity said out loud.
"""

from __future__ import annotations

import csv
import re
from datetime import datetime
from typing import Any

MAX_HEADER_LINES = 500
_DATE = re.compile(r"^(?P<a>\d{1,4})[/.-](?P<b>\d{1,2})[/.-](?P<c>\d{2,4})(?:[ T]+(?P<time>.+))?$")

_TIME = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?\s*(?P<ampm>[AaPp][Mm])?$")
_PAIR = re.compile(r"^[A-Za-z][\w .()/#-]*:\s")


def split_fields(line: str, delimiter: str) -> list[str]:
    """The line's fields, without the empty ones vendors pad lines with (``Date:,,,,28/02/2020,,,,``)."""
    fields = next(csv.reader([line], delimiter=delimiter), [])
    while fields and not fields[-1].strip():
        fields.pop()
    return fields


def parse_header_block(lines: list[str], delimiter: str) -> dict[str, str]:
    """Vendor key/value lines before the table.

    ``Key: value``, ``Key:,,,,value``, ``Key,,,,value,unit`` and ``Key: value,,,,Other key: value``
    all occur (Tecan, BioLogic, AvaSoft); a key seen twice keeps its first value.
    """
    header: dict[str, str] = {}
    for line in lines[:MAX_HEADER_LINES]:
        fields = [f.strip() for f in split_fields(line, delimiter) if f.strip()]
        if not fields:
            continue
        first = fields[0]
        if first.startswith("##") and "=" in first:  # JCAMP-style labels in a text export
            key, _, value = first[2:].partition("=")
            values = [value.strip(), *fields[1:]] if value.strip() else fields[1:]
        elif ":" in first and not first.endswith(":"):
            key, _, value = first.partition(":")
            values = [value.strip()] if value.strip() else []
        else:
            key, values = first.rstrip(":"), []
        pairs = []
        for field in fields[1:]:
            if values and _PAIR.match(field):  # "Serial number: x" after "Device: Spark"
                other, _, value = field.partition(":")
                pairs.append((other, value))
            else:
                values.append(field)
        for k, v in [(key, " ".join(values)), *pairs]:
            k, v = k.strip(), v.strip()
            if k and v and k not in header:
                header[k] = v
    return header


def header_dates(header: dict[str, str]) -> list[dict[str, Any]]:
    """Dates found in the header, as ISO 8601 with how sure we are of day versus month."""
    found = []
    time_value = next((v for k, v in header.items() if k.lower() == "time" and _TIME.match(v)), None)
    for key, value in header.items():
        parsed = parse_vendor_date(value, time_value if key.lower() == "date" else None)
        if parsed is not None:
            found.append({"field": key, "original": value, **parsed})
    return found


def parse_vendor_date(value: str, separate_time: str | None = None) -> dict[str, Any] | None:
    """``28/02/2020 9:11 AM`` -> ISO 8601, noting whether day-first was certain or assumed."""
    m = _DATE.match(value.strip())
    if not m:
        return None
    a, b, c = m["a"], m["b"], m["c"]
    note = None
    if len(a) == 4:  # ISO-like year first
        year, month, day = int(a), int(b), int(c)
    else:
        year = int(c) + (2000 if len(c) == 2 else 0)
        first, second = int(a), int(b)
        if first > 12:
            day, month, note = first, second, "day-first (the first number is above 12)"
        elif second > 12:
            month, day, note = first, second, "month-first (the second number is above 12)"
        else:
            day, month, note = first, second, "ambiguous: read as day-first (DD/MM); it could be MM/DD"
    clock = m["time"] or separate_time
    hour = minute = second_ = 0
    if clock:
        t = _TIME.match(clock.strip())
        if t:
            hour, minute, second_ = int(t["h"]), int(t["m"]), int(t["s"] or 0)
            if t["ampm"]:
                hour = hour % 12 + (12 if t["ampm"].lower() == "pm" else 0)
    try:
        moment = datetime(year, month, day, hour, minute, second_)
    except ValueError:
        return None
    out: dict[str, Any] = {
        "iso": moment.isoformat() if clock else moment.date().isoformat(),
        "timezone": "unknown",
    }
    if note:
        out["dayMonthOrder"] = note
    return out
