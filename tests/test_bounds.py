"""bound(): metadata within its limits; the small common case given as it is by a shortcut, which
must give exactly what the full walk gives."""

from __future__ import annotations

import enum
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.extractors.bounds import (
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_STRING,
    MAX_TOTAL,
    SMALL_JSON_BYTES,
    _bound,
    _Budget,
    _small_and_plain,
    bound,
)


class Colour(enum.Enum):
    RED = 1


class Name(str):
    pass


# What extractors put in metadata...
PLAIN_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
# ...and what they should not but might: NaN, lone surrogates (a name read with surrogateescape),
# huge integers, bytes, enums, UUIDs, subclasses, which orjson refuses or writes as something else.
ODD_SCALARS = (
    st.floats(allow_nan=True, allow_infinity=True).filter(
        lambda x: x != x or x in (float("inf"), -float("inf"))
    )
    | st.just("bad \udc80 name")
    | st.integers(min_value=2**64, max_value=2**70)
    | st.binary(max_size=4)
    | st.just(Colour.RED)
    | st.just(uuid.UUID(int=5))
    | st.just(Name("n"))
)


def values(
    scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[Any], *, tuples: bool = True
) -> st.SearchStrategy[Any]:
    def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        found = st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=6)
        return found | st.lists(inner, max_size=4).map(tuple) if tuples else found

    return st.recursive(scalars, containers, max_leaves=60)


#: Plain JSON: what the shortcut takes (a tuple, which the walk makes a list, it leaves to the walk).
PLAIN = values(PLAIN_SCALARS, st.text(max_size=12), tuples=False)
ANY = values(PLAIN_SCALARS | ODD_SCALARS, st.text(max_size=12) | st.integers(0, 3) | st.just("\udcff"))


def walked(metadata: dict[str, Any]) -> dict[str, Any]:
    """What bound gives through the full walk alone (the shortcut bypassed)."""
    budget = _Budget()
    bounded = _bound(metadata, 0, budget)
    assert isinstance(bounded, dict)
    if budget.cuts:
        limits = {"depth": MAX_DEPTH, "items": MAX_ITEMS, "string": MAX_STRING, "total": MAX_TOTAL}
        bounded["metadataTruncated"] = {"cut": sorted(budget.cuts), "limits": limits}
    return bounded


def same(a: Any, b: Any) -> bool:
    # repr: NaN equals NaN there, and 1 is not True.
    return repr(a) == repr(b)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), PLAIN, max_size=8))
def test_plain_small_metadata_takes_the_shortcut_and_gets_what_the_walk_gives(
    metadata: dict[str, Any],
) -> None:
    assert _small_and_plain(metadata)
    assert bound(metadata) is metadata
    assert same(metadata, walked(metadata))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), ANY, max_size=8))
def test_any_metadata_gets_what_the_walk_gives(metadata: dict[str, Any]) -> None:
    assert same(bound(metadata), walked(metadata))


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"inner": value}
    return value


def test_small_but_deep_metadata_is_still_cut() -> None:
    # A few bytes of JSON, too deep: the shortcut must not take it. The deepest kept is one less.
    assert "depth" in bound(nested(MAX_DEPTH))["metadataTruncated"]["cut"]
    assert _small_and_plain(nested(MAX_DEPTH - 1))
    assert not _small_and_plain(nested(MAX_DEPTH))


def test_what_json_would_change_is_kept_as_the_walk_keeps_it() -> None:
    kept = {"x": float("nan"), "t": (1, 2), "c": Colour.RED, "u": uuid.UUID(int=5)}
    assert same(bound(kept), {"x": float("nan"), "t": [1, 2], "c": Colour.RED, "u": uuid.UUID(int=5)})


def test_metadata_at_the_shortcut_limit_is_bounded_the_same_either_way() -> None:
    # Just under and just over the size the shortcut takes, within every limit.
    for length in (SMALL_JSON_BYTES - 40, SMALL_JSON_BYTES + 40):
        metadata = {"s": "x" * (length // 2), "t": "z" * (length // 2), "n": [1.5, None, True]}
        assert bound(metadata) == walked(metadata) == metadata
    assert "string" in bound({"s": "y" * (MAX_STRING + 1)})["metadataTruncated"]["cut"]


def test_small_plain_metadata_is_given_as_it_is_and_cut_metadata_as_a_copy() -> None:
    # The worker encodes the metadata as JSON straight away: copying what needs no cut would be
    # waste, and what is cut must not change the extractor's own objects.
    metadata = {"columns": [{"name": "a"}]}
    assert bound(metadata) is metadata
    long = {"s": "y" * (MAX_STRING + 1)}
    assert bound(long)["s"] == "y" * MAX_STRING
    assert long == {"s": "y" * (MAX_STRING + 1)}
