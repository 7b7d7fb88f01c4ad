"""JCAMP-DX spectra (``.jdx``, ``.dx``, ``.jcamp``, any case): the ``##KEY=value`` header.

Only the header is read, up to the first data table (``##XYDATA``, ``##PEAK TABLE``...). Lines may
start with spaces (the official test file TESTSPEC.DX does); keys are compared without spaces,
dashes and case, as the standard says labels are.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from .base import Budget, ExtractionError, Metadata, Source, acquisition_time, suffix

MAX_HEADER_BYTES = 256 << 10
_DATA_LABELS = {"XYDATA", "PEAKTABLE", "XYPOINTS", "DATATABLE", "NTUPLES", "RADATA"}
# Standard labels worth naming in the sidecar, by their normalised form.
_KNOWN = {
    "TITLE": "title",
    "JCAMPDX": "jcampVersion",
    "DATATYPE": "dataType",
    "DATACLASS": "dataClass",
    "ORIGIN": "origin",
    "OWNER": "owner",
    "DATE": "date",
    "LONGDATE": "longDate",
    "SPECTROMETERDATASYSTEM": "spectrometer",
    "INSTRUMENTPARAMETERS": "instrumentParameters",
    "XUNITS": "xUnits",
    "YUNITS": "yUnits",
    "NPOINTS": "points",
    "FIRSTX": "firstX",
    "LASTX": "lastX",
    "MOLFORM": "molecularFormula",
    "CASREGISTRYNO": "casNumber",
}


# JCAMP-DX 5: ##LONGDATE= YYYY/MM/DD [HH:MM:SS[.SSSS] [±UUUU]]
_LONGDATE = re.compile(
    r"(\d{4})/(\d{1,2})/(\d{1,2})"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:\s*([+-])(\d{2}):?(\d{2}))?)?"
)
# JCAMP-DX 4.24: ##DATE= YY/MM/DD, with ##TIME= HH:MM:SS beside it.
_SHORT_DATE = re.compile(r"(\d{2})/(\d{1,2})/(\d{1,2})$")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def label(key: str) -> str:
    return "".join(ch for ch in key.upper() if ch.isalnum())


class JcampExtractor:
    name = "jcamp"
    crash_free = True

    def accepts(self, name: str, head: bytes) -> bool:
        return suffix(name) in (".jdx", ".dx", ".jcamp")

    def extract(self, source: Source, budget: Budget) -> Metadata:
        with source.path.open("rb") as f:
            raw = f.read(MAX_HEADER_BYTES)
        text = raw.decode("utf-8", errors="replace") if not raw.startswith(b"\xff\xfe") else ""
        header: dict[str, str] = {}
        labels: dict[str, str] = {}
        for line in text.splitlines():
            budget.check()
            line = line.strip()
            if not line.startswith("##") or "=" not in line:
                continue
            key, _, value = line[2:].partition("=")
            norm = label(key)
            if norm in _DATA_LABELS or norm == "END":
                break
            value = value.split("$$", 1)[0].strip()  # "$$" starts a comment
            labels.setdefault(norm, value)
            if norm in _KNOWN:
                header.setdefault(_KNOWN[norm], value)
        if "TITLE" not in labels:
            raise ExtractionError(f"{source.name!r} has no JCAMP-DX header (no ##TITLE= label)")
        if "JCAMPDX" not in labels:
            raise ExtractionError(
                f"{source.name!r} has JCAMP-style labels but no ##JCAMP-DX= version: not a JCAMP-DX file"
            )
        result: Metadata = {**header, "labels": len(labels)}
        acquired = acquisition(labels)
        if acquired is not None:
            result["acquisition"] = acquired
        kind = header.get("dataType")
        title = header.get("title")
        result["description"] = (
            f"JCAMP-DX {header['jcampVersion']} "
            + (kind.lower() if kind else "spectrum")
            + (f": {title}" if title else "")
        )
        return result


def acquisition(labels: dict[str, str]) -> Metadata | None:
    """When the spectrum was measured: ##LONGDATE, else ##DATE (two-digit year) and ##TIME."""
    if "LONGDATE" in labels and (moment := _long_date(labels["LONGDATE"])) is not None:
        return acquisition_time(moment, source="##LONGDATE")
    match = _SHORT_DATE.match(labels.get("DATE", "").strip())
    if match is None:
        return None
    year, month, day = (int(g) for g in match.groups())
    # JCAMP-DX 4.24 came out in 1988: a two-digit year after 80 is in the 1900s.
    year += 1900 if year > 80 else 2000
    clock = _TIME.match(labels.get("TIME", "").strip())
    try:
        if clock is None:
            return acquisition_time(date(year, month, day).isoformat(), source="##DATE")
        hour, minute, second = (int(g or 0) for g in clock.groups())
        return acquisition_time(datetime(year, month, day, hour, minute, second), source="##DATE ##TIME")
    except ValueError:
        return None


def _long_date(text: str) -> datetime | date | None:
    match = _LONGDATE.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
    try:
        if hour is None:
            return date(int(year), int(month), int(day))
        zone = None
        if sign:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            zone = timezone(offset if sign == "+" else -offset)
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=zone
        )
    except ValueError:
        return None
