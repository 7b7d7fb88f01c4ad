"""JSON text of the agent's documents: exactly what ``json.dumps(..., ensure_ascii=False)`` writes,
at the speed of orjson.

Every sidecar and crate entity is serialised on the hot path; the standard library's indented
encoder is pure Python (its C accelerator does not indent) and cost a third of the agent's CPU on
small files, about 120 µs per sidecar against 4 µs for orjson. orjson writes the same text for
everything the agent writes but two cases, detected here and handed to the standard library:

- floats whose shortest form Python writes in exponent notation and orjson does not, or with a
  one-digit exponent (``1e-05`` against ``0.00001``, ``2.5e-07`` against ``2.5e-7``): found in
  the output where such a number token starts or ends. Text inside a string can look so too
  (then the slow path runs, with the same result), but rarely: the same letters inside a word,
  as in a UUID's ``...15e-7b8e...``, do not.
- what orjson refuses: integers beyond 64 bits, strings holding lone surrogates (names that are not
  valid UTF-8), keys that are not strings.

Non-finite floats (an ``inf`` in a table) are written as ``null`` on both paths: ``NaN`` and
``Infinity`` are not JSON, and other tools refuse a document holding them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

#: Dates and dataclasses are refused, as by json.dumps, instead of written: one in a document is a bug.
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
#: A one-digit negative exponent ending a number, as orjson writes it (Python pads it: ``e-07``).
#: Indented, a number is followed by a comma or a line break, or ends the text.
_SHORT_EXPONENT = re.compile(rb"e-\d(?:[,\n]|\Z)")
#: What precedes a number indented: the space after a key's colon or an array's indent, its minus
#: sign; or nothing, at the start of the text.
_BEFORE_A_NUMBER = b" -"
#: Where an integer orjson reads as a float may be: beyond 64 bits, it has 19 digits or more.
_NINETEEN_DIGITS = b"0" * 19
_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789", b"000000000")


def indented(document: Any) -> str:
    """``json.dumps(document, indent=2, ensure_ascii=False)``, non-finite floats as null."""
    text = _orjson_indented(document, 0)
    return _standard_indented(document) if text is None else text.decode("utf-8")


def indented_file(document: Any) -> bytes:
    """What a JSON file of ours holds: ``indented(document)`` and a line break, in UTF-8 (made
    as bytes: decoding orjson's text and encoding it again cost more than writing it)."""
    text = _orjson_indented(document, orjson.OPT_APPEND_NEWLINE)
    return (_standard_indented(document) + "\n").encode("utf-8") if text is None else text


def _standard_indented(document: Any) -> str:
    # What orjson cannot write as json.dumps does (see the module's text), the standard library's.
    return json.dumps(_finite(document), indent=2, ensure_ascii=False)


def _orjson_indented(document: Any, option: int) -> bytes | None:
    # None: json.dumps must write it (a key that is not a string, or a float orjson writes otherwise).
    try:
        text = orjson.dumps(document, option=orjson.OPT_INDENT_2 | _STRICT | option)
    except TypeError:
        return None
    return None if _float_text_may_differ(text) else text


def _float_text_may_differ(text: bytes) -> bool:
    # Written for speed: a pattern with a look-behind costs 190 µs on a 6 KB sidecar, this 5 µs.
    # Precise for speed too: a session's UUID in its crate matched the looser e-\d(?!\d) once in
    # 28 sessions, and the standard library took 30 ms, not 0.4, for a crate of 200 files.
    start = text.find(b"0.0000")  # orjson: 0.00001, Python: 1e-05
    while start >= 0:
        if start == 0 or text[start - 1] in _BEFORE_A_NUMBER:
            return True
        start = text.find(b"0.0000", start + 1)
    return any(text[m.start() - 1 : m.start()].isdigit() for m in _SHORT_EXPONENT.finditer(text))


def loads(text: bytes | str) -> Any:
    """``json.loads(text)``, by orjson where it gives the same: it parses a sidecar or a crate
    entity several times faster. The standard library reads what orjson refuses (NaN, escaped lone
    surrogates, UTF-16) and any text with 19 digits in a row: orjson would read an integer beyond
    64 bits as a float (the crate written again from its entities would change)."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    # Every digit made a zero, then a substring search: 2 µs for a sidecar, where a
    # regular expression for the digits took 28 µs, twice what json.loads costs.
    if _NINETEEN_DIGITS not in data.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def compact(document: Any) -> str:
    """The document on one line, for storage (not byte-compatible with json.dumps's spacing)."""
    try:
        return orjson.dumps(document, option=_STRICT).decode("utf-8")
    except TypeError:
        return json.dumps(_finite(document), ensure_ascii=False, separators=(",", ":"))


def _finite(value: Any) -> Any:
    """The value with every non-finite float replaced by None (what orjson writes for them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
