"""Metadata read from a file is bounded in depth, items and size, and is valid Unicode, whatever
the file says.

An extractor copies what a file declares (an ELN's keywords, an HDF5 file's attributes); a file
can declare a list nested 900 deep or a million keywords, which would make a sidecar of gigabytes
and an agent of more. Every extractor's output passes through ``bound`` before the agent keeps it;
what was cut is said in the output itself, under ``metadataTruncated``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_DEPTH = 12
#: Entries of one list or object.
MAX_ITEMS = 10_000
#: Characters of one string.
MAX_STRING = 8192
#: About the characters of JSON all of it makes together (every value and key counts, empty lists
#: too): the largest sidecar the agent writes.
MAX_TOTAL = 2_000_000
#: Metadata whose compact JSON is no longer than this is within every limit but depth: a string
#: of more than MAX_STRING characters, or more than MAX_ITEMS entries, take more bytes alone, and
#: each value's share of MAX_TOTAL is at most its JSON and a line of indent (about 40 times less).
SMALL_JSON_BYTES = MAX_STRING
#: What orjson refuses is what the full walk must see: keys that are not strings, lone surrogates,
#: integers beyond 64 bits, subclasses and types of its own (dates, dataclasses).
_PLAIN_JSON = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
)


@dataclass(slots=True)
class _Budget:
    left: int = MAX_TOTAL
    cuts: set[str] = field(default_factory=set)


def bound(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` within the limits, saying what was cut when anything was: itself where it
    already is (small plain JSON), else a copy cut to them."""
    if _small_and_plain(metadata):
        return metadata
    budget = _Budget()
    bounded = _bound(metadata, 0, budget)
    assert isinstance(bounded, dict)
    if budget.cuts:
        bounded["metadataTruncated"] = {
            "cut": sorted(budget.cuts),
            "limits": {"depth": MAX_DEPTH, "items": MAX_ITEMS, "string": MAX_STRING, "total": MAX_TOTAL},
        }
    return bounded


def _small_and_plain(metadata: dict[str, Any]) -> bool:
    """Whether ``bound`` may give the metadata as it is, the common case at a small part of the
    walk's cost (a small table's metadata: 8 µs instead of 31): plain JSON values, short and
    shallow, which the walk would copy unchanged. For anything else the full walk bounds it.
    Not copied: the worker encodes it as JSON straight away (worker.serve), and a copy (a round
    trip through orjson) was 40% of this check's cost."""
    try:
        text = orjson.dumps(metadata, option=_PLAIN_JSON)
    except TypeError:  # orjson.JSONEncodeError included
        return False
    return len(text) <= SMALL_JSON_BYTES and _plain_and_shallow(metadata, 0)


#: Values the walk keeps as they are (keys: orjson takes exact strings only); a tuple it makes a list.
_PLAIN_SCALARS = (str, int, bool, type(None))


def _plain_and_shallow(value: dict[str, Any] | list[Any], depth: int) -> bool:
    # Only what the walk would give back unchanged: no container as deep as MAX_DEPTH (the walk
    # cuts it), no tuple (it makes a list), no NaN or infinity (kept by the walk, but JSON says
    # null: the size above was not theirs), and nothing orjson writes as something else (enums,
    # UUIDs: the walk keeps the object).
    if depth >= MAX_DEPTH:
        return False
    for item in value.values() if isinstance(value, dict) else value:
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                return False
        elif kind is dict or kind is list:
            if not _plain_and_shallow(item, depth + 1):
                return False
        elif kind not in _PLAIN_SCALARS:
            return False
    return True


def _text(value: str) -> str:
    """A string fit for a UTF-8 document: lone surrogates (a name decoded with surrogateescape, a
    parser's raw bytes) become U+FFFD."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


def _line(depth: int) -> int:
    # What a value costs in the indented JSON of a sidecar beyond its own text: its line's indent.
    return 2 * depth + 4


def _bound(value: Any, depth: int, budget: _Budget) -> Any:
    if isinstance(value, str):
        value = _text(value)
        if len(value) > MAX_STRING:
            budget.cuts.add("string")
            value = value[:MAX_STRING]
        if len(value) > budget.left:
            budget.cuts.add("total")
            value = value[: max(budget.left, 0)]
        budget.left -= len(value) + _line(depth)
        return value
    if not isinstance(value, dict | list | tuple):
        budget.left -= 8 + _line(depth)
        return value
    budget.left -= _line(depth)
    if depth >= MAX_DEPTH:
        budget.cuts.add("depth")
        return None
    items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    if len(items) > MAX_ITEMS:
        budget.cuts.add("items")
        items = items[:MAX_ITEMS]
    out_dict: dict[str, Any] = {}
    out_list: list[Any] = []
    for key, item in items:
        if budget.left <= 0:
            budget.cuts.add("total")
            break
        if isinstance(value, dict):
            name = _text(str(key))
            budget.left -= len(name) + 4
            out_dict[name] = _bound(item, depth + 1, budget)
        else:
            out_list.append(_bound(item, depth + 1, budget))
    return out_dict if isinstance(value, dict) else out_list
