"""Flow Cytometry Standard files (FCS 2.0 to 3.2): the HEADER and the TEXT, never the events.

An FCS file is a 58-byte HEADER (``FCS3.1``, four spaces, then the first and last byte of the TEXT,
DATA and ANALYSIS segments as right-justified ASCII integers, blank for 0), a TEXT segment of
keyword/value pairs and a binary DATA segment of events, often hundreds of megabytes. All a person
searches for (cytometer, operator, date, channels, event count) is in the TEXT, so only the HEADER,
the TEXT and FCS 3's supplemental TEXT (``$BEGINSTEXT``/``$ENDSTEXT``) are read, each capped at
4 MiB. The DATA's declared end is only compared with the file's size: a truncated copy is refused.

The TEXT's first byte is its delimiter; a doubled delimiter is a literal one (values are never
empty). Keywords are case-insensitive, kept upper case. Values are UTF-8 since FCS 3.1 and were often
Latin-1 before, the fallback. HEADER DATA offsets that disagree with ``$BEGINDATA``/``$ENDDATA`` are
common, harmless damage: a warning (FCS 3 writes offsets past 99,999,999 in the TEXT alone, no damage).

Not flowio: it reads TEXT and ANALYSIS without a cap, skips the supplemental TEXT, refuses the offset
discrepancy, fails with KeyError, ValueError or EOFError on damage and deletes every ``$`` in values.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any, BinaryIO, TypeVar

from .base import Budget, ExtractionError, Metadata, Source, acquisition_time, counted, suffix

T = TypeVar("T")

HEADER_BYTES = 58
MAX_TEXT_BYTES = 4 << 20
#: Pairs parsed from one TEXT segment: a file with a thousand parameters has about 20,000.
MAX_PAIRS = 50_000
MAX_KEYWORDS = 500
MAX_VALUE = 1000
MAX_CHANNELS = 200
#: The largest offset the HEADER's eight digits hold; FCS 3.x writes 0 there for larger ones.
HEADER_LIMIT = 99_999_999
_MAGIC = re.compile(rb"FCS\d\.\d {4}")
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}
_DAY_MONTH_YEAR = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4}|\d{2})")  # 02-Mar-2020, 28-JUN-2019, 05-jan-99
_YEAR_MONTH_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
# hh:mm:ss, then hundredths (FCS 3.1 ".cc") or 60ths (FCS 3.0 ":tt"), which are dropped.
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?(?:[.:]\d+)?")
# What an absent keyword gives (""), and what cytometers (Attune: "NA") write for no value.
_MISSING = {"", "NA", "N/A", "NONE"}
# Product lines whose maker is certain from the $CYT text alone.
_MAKERS = {
    "Thermo Fisher Scientific": ("attune",),
    "BD Biosciences": ("facs", "lsr", "accuri"),
    "Beckman Coulter": ("cytoflex", "gallios", "navios"),
    "Cytek Biosciences": ("aurora", "northern lights"),
    "Miltenyi Biotec": ("macsquant",),
}
_CHANNEL = {"name": "N", "label": "S", "range": "R", "bits": "B", "amplification": "E", "gain": "G"}
_NUMERIC = {"range", "bits", "gain"}
_NAMED = {
    "dataType": ("$DATATYPE",),
    "byteOrder": ("$BYTEORD",),
    "mode": ("$MODE",),
    "cytometer": ("$CYT",),
    "serialNumber": ("$CYTSN",),
    "software": ("CREATOR", "$CREATOR", "SOFTWARE", "APPLICATION"),
    "operator": ("$OP",),
    "investigator": ("$EXP",),
    "institution": ("$INST",),
    "sample": ("$SMNO", "SAMPLE ID", "SAMPLE_NAME"),
    "specimen": ("$SRC",),
    "filename": ("$FIL",),
    "title": ("TUBE NAME", "TUBE_NAME", "$SMNO", "$FIL"),
}


class FcsExtractor:
    name = "fcs"
    crash_free = True

    def accepts(self, name: str, head: bytes) -> bool:
        return suffix(name) == ".fcs" or _MAGIC.match(head) is not None

    def extract(self, source: Source, budget: Budget) -> Metadata:
        with source.path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = f.read(HEADER_BYTES)
            if len(header) < HEADER_BYTES or not _MAGIC.match(header):
                raise ExtractionError(f"{source.name!r} is not an FCS file: it has no FCS HEADER")
            version = header[3:6].decode("ascii")
            text_begin, text_end = _offset(header[10:18]), _offset(header[18:26])
            if not text_begin or text_end is None:
                raise ExtractionError(f"{source.name!r} is damaged: its FCS HEADER declares no TEXT segment")
            try:
                raw = _read_segment(f, "TEXT", text_begin, text_end, size)
            except ExtractionError as exc:
                raise ExtractionError(f"{source.name!r} is truncated or damaged: {exc}") from None
            keywords, warnings = _parse_text(raw, budget)
            if not any(key.startswith("$") for key in keywords):
                raise ExtractionError(f"{source.name!r} is damaged: its TEXT segment holds no FCS keywords")
            begin, end = _int(keywords.get("$BEGINSTEXT")), _int(keywords.get("$ENDSTEXT"))
            if version >= "3" and begin and end is not None and begin != text_begin:
                try:
                    extra, more = _parse_text(_read_segment(f, "supplemental TEXT", begin, end, size), budget)
                except ExtractionError as exc:
                    extra, more = {}, [f"The {exc}; its keywords were not read."]
                warnings += more
                for key, value in extra.items():
                    keywords.setdefault(key, value)  # the primary TEXT wins, as the standard says
        warnings += _data_segment(source.name, version, keywords, header, size)
        return _metadata(version, keywords, warnings)


def _parse_text(raw: bytes, budget: Budget) -> tuple[dict[str, str], list[str]]:
    # raw is at least one byte, the delimiter (see _read_segment).
    delimiter, warnings = raw[:1], []
    escaped = re.escape(delimiter)
    # Possessive quantifiers: a field that never ends cannot make the match backtrack.
    field = re.compile(b"((?:[^" + escaped + b"]++|" + escaped + escaped + b")*+)" + escaped)
    fields: list[bytes] = []
    pos = 1
    while pos < len(raw) and len(fields) < 2 * MAX_PAIRS:
        budget.check()
        match = field.match(raw, pos)
        if match is None:
            break
        fields.append(match[1])
        pos = match.end()
    if len(fields) >= 2 * MAX_PAIRS:
        warnings.append(f"The TEXT segment has more than {MAX_PAIRS:,} keywords; the rest were not read.")
    elif tail := raw[pos:].strip(b" \t\r\n\x00"):
        fields.append(tail)  # FCS 2.0 writers may leave out the closing delimiter
    if len(fields) % 2:
        warnings.append(f"The TEXT ends with a keyword without value: {_decode(fields.pop())[:80]!r}.")
    keywords: dict[str, str] = {}
    for key, value in zip(fields[::2], fields[1::2], strict=True):
        # Values as written: a value may end in a literal delimiter, and a form feed is a common one.
        name = _decode(key.replace(delimiter * 2, delimiter)).strip(" ").upper()
        if name:
            keywords.setdefault(name, _decode(value.replace(delimiter * 2, delimiter)))
    return keywords, warnings


def _read_segment(f: BinaryIO, what: str, begin: int, end: int, size: int) -> bytes:
    where = f"{what} segment (bytes {begin:,} to {end:,})"
    if begin < HEADER_BYTES or end < begin:
        raise ExtractionError(f"{where} is not a place in an FCS file")
    if end >= size:
        raise ExtractionError(f"{where} lies beyond the end of the file ({size:,} bytes)")
    if end - begin + 1 > MAX_TEXT_BYTES:
        raise ExtractionError(f"{where} is larger than the {MAX_TEXT_BYTES >> 20} MiB the agent reads")
    f.seek(begin)
    raw = f.read(end - begin + 1)
    if len(raw) != end - begin + 1:
        raise ExtractionError(f"{where} was cut short: the file shrank while it was read")
    return raw


def _data_segment(name: str, version: str, keywords: dict[str, str], header: bytes, size: int) -> list[str]:
    begin, end = _offset(header[26:34]), _offset(header[34:42])
    text_begin, text_end = _int(keywords.get("$BEGINDATA")), _int(keywords.get("$ENDDATA"))
    stop = (text_end if version >= "3" else None) or end  # FCS 3 readers take the TEXT's offsets
    if stop and stop > size:  # one past the end is a common writer's slip, not damage
        raise ExtractionError(f"{name!r} is truncated: its DATA segment ends at byte {stop:,} of {size:,}")
    if text_begin is None or text_end is None or (begin, end) == (text_begin, text_end):
        return []
    if begin == end == 0 and text_end > HEADER_LIMIT:
        return []  # FCS 3.x: the offsets do not fit the HEADER, which then holds 0
    if begin is None or end is None:
        return [f"The HEADER's DATA offsets, {header[26:42].decode('latin-1')!r}, are not numbers."]
    return [
        f"The HEADER puts the DATA segment at bytes {begin} to {end}, the TEXT ($BEGINDATA, $ENDDATA) "
        f"at {text_begin} to {text_end}; the keywords were read all the same."
    ]


def _metadata(version: str, keywords: dict[str, str], warnings: list[str]) -> Metadata:
    named = {key: value for key, names in _NAMED.items() if (value := _first(keywords, names)) is not None}
    events, parameters = _int(keywords.get("$TOT")), _int(keywords.get("$PAR"))
    for keyword, count in (("$TOT", events), ("$PAR", parameters)):
        if (raw := keywords.get(keyword)) is not None and count is None:
            warnings.append(f"{keyword} is {raw[:80]!r}, not a count.")
        elif raw is None and (version >= "3" or keyword == "$PAR"):  # $TOT became required in FCS 3.0
            warnings.append(f"The TEXT segment has no {keyword}, which the FCS standard requires.")
    cytometer = named.get("cytometer")
    sizes = {"event": events, "parameter": parameters}
    counts = ", ".join(counted(n, unit) for unit, n in sizes.items() if n is not None)
    lower = (cytometer or "").lower()
    instrument = {
        "model": cytometer,
        "serialNumber": named.get("serialNumber"),
        "manufacturer": next((m for m, parts in _MAKERS.items() if any(p in lower for p in parts)), None),
        "software": named.get("software"),
    }
    result: dict[str, Any] = {
        "fcsVersion": version,
        "description": f"FCS {version} flow cytometry data"
        + (f" recorded on {cytometer[:100]}" if cytometer else "")
        + (f": {counts}" if counts else ""),
        "acquisition": _acquisition(keywords, warnings),
        "instrument": {key: value for key, value in instrument.items() if value} or None,
        "events": events,
        "parameters": parameters,
        **named,
        "channels": _channels(keywords, parameters),
        # Another data set follows at this offset (Beckman's LMD files); only the first is read.
        "nextDataSet": _int(keywords.get("$NEXTDATA")) or None,
        "keywordCount": len(keywords),
        "keywords": {k[:MAX_VALUE]: v[:MAX_VALUE] for k, v in list(keywords.items())[:MAX_KEYWORDS]},
        "warnings": warnings or None,
    }
    return {key: value for key, value in result.items() if value is not None}


def _channels(keywords: dict[str, str], parameters: int | None) -> list[Metadata]:
    channels = []
    for n in range(1, min(MAX_CHANNELS if parameters is None else parameters, MAX_CHANNELS) + 1):
        if parameters is None and f"$P{n}N" not in keywords:
            break
        values = {key: keywords.get(f"$P{n}{letter}") for key, letter in _CHANNEL.items()}
        # Numbers where the standard has numbers; "*" (the bits of ASCII data) stays as written.
        channels.append({k: _number(v) if k in _NUMERIC else v for k, v in values.items() if v is not None})
    return channels


def _acquisition(keywords: dict[str, str], warnings: list[str]) -> Metadata | None:
    # FCS 3.2's ISO 8601 date-times carry the UTC offset that $DATE and $BTIM lack: they win.
    if (begin := _read(keywords, "$BEGINDATETIME", datetime.fromisoformat, warnings)) is not None:
        end = _read(keywords, "$ENDDATETIME", datetime.fromisoformat, warnings)
        return acquisition_time(begin, end, source="$BEGINDATETIME $ENDDATETIME" if end else "$BEGINDATETIME")
    if (day := _read(keywords, "$DATE", _date, warnings)) is None:
        return None
    start_time, end_time = (_read(keywords, key, _time, warnings) for key in ("$BTIM", "$ETIM"))
    if start_time is None:
        return acquisition_time(day.isoformat(), source="$DATE")
    start = datetime.combine(day, start_time)
    finish = datetime.combine(day, end_time) if end_time is not None else None
    if finish is not None and finish < start and day < date.max:  # past midnight: $DATE is the first day
        finish += timedelta(days=1)
    return acquisition_time(start, finish, source="$DATE $BTIM $ETIM" if finish else "$DATE $BTIM")


def _read(text: dict[str, str], key: str, parse: Callable[[str], T | None], warnings: list[str]) -> T | None:
    if (raw := text.get(key)) is None:
        return None
    try:
        value = parse(raw.strip())
    except ValueError:  # 31-Feb-2020, 25:61:00
        value = None
    if value is None:
        warnings.append(f"{key} is {raw[:80]!r}, a date or time in no format the FCS standard describes.")
    return value


def _date(value: str) -> date | None:
    if match := _DAY_MONTH_YEAR.fullmatch(value):
        year = int(match[3]) if len(match[3]) == 4 else datetime.strptime(match[3], "%y").year
        month = _MONTHS.get(match[2].upper())
        return date(year, month, int(match[1])) if month else None
    match = _YEAR_MONTH_DAY.fullmatch(value)
    return date(int(match[1]), int(match[2]), int(match[3])) if match else None


def _time(value: str) -> time | None:
    match = _CLOCK.fullmatch(value)
    return time(int(match[1]), int(match[2]), int(match[3] or 0)) if match else None


def _first(keywords: dict[str, str], names: tuple[str, ...]) -> str | None:
    values = (keywords.get(name, "").strip() for name in names)
    return next((value for value in values if value.upper() not in _MISSING), None)


def _offset(field: bytes) -> int | None:
    field = field.strip(b" ")
    return 0 if not field else int(field) if field.isdigit() else None


def _number(value: str | None) -> int | float | str | None:
    if value is None:
        return None
    try:
        number = float(value)  # "000002" and "1024.0" are counts too
    except ValueError:
        return value
    return value if not math.isfinite(number) else int(number) if number.is_integer() else number


def _int(value: str | None) -> int | None:
    number = _number(value)
    return number if isinstance(number, int) and number >= 0 else None


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
