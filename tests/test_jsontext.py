"""The fast JSON text is the standard library's text, byte for byte."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core import jsontext
from agent.core.jsontext import compact, indented, indented_file
from agent.ingest import crate

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e-05, -2.5e-07, 0.0001, 1e16, 1e-300, 5e-324, -0.0, 123456.789e-12])
    | st.text()
    | st.sampled_from(["\udcff name.csv", "\u2028", "e-5", "0.00001", "\x00\x1f\x7f", "x 1e-5,", " 0.00001"])
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(documents)
def test_indented_is_what_json_dumps_writes(document: Any) -> None:
    assert indented(document) == json.dumps(document, indent=2, ensure_ascii=False)


@settings(max_examples=500, deadline=None)
@given(documents)
def test_a_file_holds_the_indented_text_and_a_line_break(document: Any) -> None:
    try:
        expected = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which UTF-8 cannot hold: refused alike
        with pytest.raises(UnicodeEncodeError):
            indented_file(document)
        return
    assert indented_file(document) == expected


@settings(max_examples=200, deadline=None)
@given(documents)
def test_compact_reads_back_as_the_document(document: Any) -> None:
    assert json.loads(compact(document)) == document


@settings(max_examples=300, deadline=None)
@given(documents, st.booleans())
def test_loads_reads_what_json_loads_reads(document: Any, ascii_only: bool) -> None:
    text = json.dumps(document, ensure_ascii=ascii_only)  # escaped lone surrogates when ascii_only
    assert jsontext.loads(text) == json.loads(text)
    if ascii_only:
        assert jsontext.loads(text.encode("ascii")) == json.loads(text)


def test_loads_reads_what_only_the_standard_library_reads() -> None:
    for text in (
        '{"a": NaN}',
        '{"a": -Infinity}',
        '"\\udcff.csv"',
        str(2**70),
        "-9223372036854775809",
        "1" + "0" * 400,
    ):
        expected = json.loads(text)
        got = jsontext.loads(text)
        assert repr(got) == repr(expected), text  # NaN equals nothing, its repr does
    assert jsontext.loads('{"a": 1}'.encode("utf-16")) == {"a": 1}
    for bad in ("{", "", '{"a": 1} x', b"\xff"):
        with pytest.raises(ValueError):
            jsontext.loads(bad)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=8), documents, max_size=4), max_size=7), st.integers(1, 4))
def test_crate_entities_serialised_together_are_each_as_serialised_alone(
    entities: list[dict[str, Any]], at_once: int
) -> None:
    # The crate splits one text of many entities where each starts; strings holding "\n  {",
    # nested lists and the floats that take the standard library's path must not move a split.
    entities += [{"s": ",\n  {", "n": [{"x": 1e-05}]}]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(crate, "ENTITIES_AT_ONCE", at_once)
        assert crate._indented_each(entities) == [crate._indented(e) for e in entities]


def test_only_numbers_written_otherwise_take_the_standard_librarys_path() -> None:
    # The slow path costs 30 ms on a crate of 200 files, against 1 ms: text that merely looks
    # like such a number inside a word or a time must not send a document there.
    def slow(document: Any) -> bool:
        return jsontext._orjson_indented(document, 0) is None

    for number in (1e-05, -1e-05, 2.5e-07, [3e-9], {"min": -4.25e-08, "max": 0}):
        assert slow({"v": number}) and slow([number])
    assert slow(1e-05) and slow(2.5e-07)  # a document of one number: nothing before or after it
    for text in ("urn:uuid:52a6b15e-7b8e-5ce8-b328-ae03d4cc113c", "0:00:0.0000", "1.000000,0.000000"):
        assert not slow({"value": text, "unit": ["s"], "n": 10.00001})


def test_keys_that_are_not_strings_are_written_as_json_dumps_writes_them() -> None:
    document = {1: "a", 2.5: [True], None: {}}
    assert indented(document) == json.dumps(document, indent=2, ensure_ascii=False)


def test_non_finite_floats_are_null_not_invalid_json() -> None:
    for value in (math.inf, -math.inf, math.nan):
        for document in ({"max": value}, {"big": 2**70, "max": value}, {"small": 1e-05, "v": [value]}):
            text = indented(document)
            assert "Infinity" not in text and "NaN" not in text
            assert None in json.loads(text).values() or json.loads(text)["v"] == [None]
            assert json.loads(compact(document)) == json.loads(text)


def test_what_json_dumps_refuses_is_refused() -> None:
    @dataclasses.dataclass
    class Record:
        value: int = 1

    for value in (datetime.datetime(2026, 1, 1), datetime.date(2026, 1, 1), Record()):
        with pytest.raises(TypeError):
            indented({"when": value})
        with pytest.raises(TypeError):
            compact({"when": value})
