"""FileRecord.changed: the hot path's copy of a record is dataclasses.replace, only cheaper."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import cast

import pytest

from agent.core.batch import FileStat
from agent.core.records import FileRecord, RecordChanges


def _record() -> FileRecord:
    stat = FileStat("s1/a.csv", 4096, 1_700_000_000_000_000_000, 42, 1_700_000_000_000_000_001)
    return FileRecord(stat, "s1", "ab" * 32, "text/csv", metadata={"rows": 3}, warnings=("w",))


def test_changed_gives_what_replace_gives_for_every_field() -> None:
    record = _record()
    values: RecordChanges = {
        "stat": FileStat("s1/b.csv", 1, 2, 3, 4),
        "session": "s2",
        "sha256": "cd" * 32,
        "encoding_format": "application/json",
        "batch_id": "b-1",
        "sequence": 7,
        "version": 3,
        "dataset_type": "plate-read",
        "metadata": {"x": 1},
        "warnings": ("one", "two"),
        "dataset": {"operator": "ana"},
        "validation": {"status": "valid"},
        "drift": {"status": "off"},
        "enrichment": None,
        "acquisition": {"start": "2024-03-01T10:00:00+00:00"},
        "derived": {"name": "a.parquet"},
    }
    assert set(values) == {f.name for f in fields(FileRecord)}, "a new field: add it here"
    for name, value in values.items():
        one = cast(RecordChanges, {name: value})
        assert record.changed(**one) == replace(record, **one)
    assert record.changed(**values) == replace(record, **values)
    assert record.changed() == record and record.changed() is not record


def test_changed_leaves_the_record_alone_and_refuses_unknown_fields() -> None:
    record = _record()
    record.changed(version=9, warnings=())
    assert record.version == 0 and record.warnings == ("w",)
    with pytest.raises(TypeError, match="no field"):
        record.changed(verison=9)  # type: ignore[call-arg]


def test_changed_may_skip_what_replace_would_run() -> None:
    # changed sets the fields as they are: were an __init__-only field or a __post_init__ added,
    # it would have to run them as replace does.
    assert all(f.init for f in fields(FileRecord))
    assert not hasattr(FileRecord, "__post_init__")


def test_changed_names_every_field_with_its_type() -> None:
    # What a type checker checks changed's callers against must be the class's fields.
    declared = {name: ref.__forward_arg__ for name, ref in RecordChanges.__annotations__.items()}
    assert declared == {f.name: f.type for f in fields(FileRecord)}
