"""Dataset types built from rules: validation in plain words, date normalisation, drift shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.core.drift import Baseline
from agent.extractors import load_extractors
from agent.ingest.drift import compare, declared_baseline, shape_of
from agent.rules import DatasetTypes, Rule, load_rules
from agent.rules.dataset import lookup
from agent.rules.schema import DriftSettings

from .conftest import write

RULE = """
match = ["EXP-*/*.csv"]
dataset_type = "plate"
timezone = "Europe/Berlin"

[path]
pattern = '^(?P<experiment_id>[^_/]+)_(?P<operator>[^/]+)/'

[fields]
acquisition_date = ["header.Date", "header.Time"]
wavelength_nm = "header.Wavelength [nm]"
mode = "header.Measurement"
plate = "header.Plate"

[validation.experiment_id]
required = true
pattern = 'EXP-\\d{6}'

[validation.operator]
required = true
enum = ["alice", "bob"]

[validation.acquisition_date]
type = "datetime"
required = true
format = "%d/%m/%Y %H:%M"

[validation.wavelength_nm]
type = "number"
required = true
min = 200
max = 1000

[validation.mode]
enum = ["Absorbance", "Fluorescence"]

[enrich]
keywords = ["OD600"]

[enrich.instrument]
name = "Reader 1"
"""


@pytest.fixture
def rule(tmp_path: Path) -> Rule:
    write(tmp_path / "rules" / "plate.toml", RULE)
    rules = load_rules(tmp_path / "rules", [e.name for e in load_extractors()])
    return rules.rule_for("drop", "EXP-000001_alice/a.csv")


def metadata(**header: str) -> dict[str, Any]:
    base = {"Date": "14/03/2026", "Time": "09:41", "Wavelength [nm]": "600", "Measurement": "Absorbance"}
    return {"extractor": "tabular", "header": {**base, **header}}


def test_a_good_file_validates_and_is_normalised(rule: Rule) -> None:
    result = DatasetTypes([rule]).validate(rule, "EXP-000123_alice/OD600.csv", metadata(Plate="96"))
    assert result.ok, result.problems
    assert result.values == {
        "experiment_id": "EXP-000123",
        "operator": "alice",
        # Local time without a zone, given the rule's zone (CET in March).
        "acquisition_date": "2026-03-14T09:41:00+01:00",
        "wavelength_nm": 600.0,
        "mode": "Absorbance",
        "instrument": "Reader 1",
        "tags": ["OD600"],
        # Read, but not declared: kept as a parameter.
        "parameters": {"plate": "96"},
    }
    assert result.report() == {"status": "valid", "rule": "plate", "datasetType": "plate"}


@pytest.mark.parametrize(
    ("path", "header", "field", "problem"),
    [
        ("EXP-12_alice/a.csv", {}, "experiment_id", "'EXP-12' does not have the expected form"),
        ("EXP-000001_carol/a.csv", {}, "operator", "'carol' is not one of the allowed values: alice, bob"),
        ("EXP-000001/a.csv", {}, "operator", "missing; rule 'plate' (rules/plate.toml) requires it"),
        ("EXP-000001_bob/a.csv", {"Wavelength [nm]": "6000"}, "wavelength_nm", "6000.0 is out of range"),
        (
            "EXP-000001_bob/a.csv",
            {"Wavelength [nm]": "red"},
            "wavelength_nm",
            "Input should be a valid number",
        ),
        (
            "EXP-000001_bob/a.csv",
            {"Date": "2026-03-14"},
            "acquisition_date",
            "is not a date and time in the format",
        ),
        ("EXP-000001_bob/a.csv", {"Date": "14/03/2099"}, "acquisition_date", "is in the future"),
        ("EXP-000001_bob/a.csv", {"Measurement": "Luminescence"}, "mode", "not one of the allowed values"),
    ],
)
def test_each_problem_is_told_in_plain_words(
    rule: Rule, path: str, header: dict[str, str], field: str, problem: str
) -> None:
    result = DatasetTypes([rule]).validate(rule, path, metadata(**header))
    assert not result.ok
    (found,) = [p for p in result.problems if p.field == field]
    assert problem in found.problem, found
    assert found.looked_in  # says where the value was looked for


def test_missing_header_line_says_where_it_was_looked_for(rule: Rule) -> None:
    meta = metadata()
    del meta["header"]["Wavelength [nm]"]
    result = DatasetTypes([rule]).validate(rule, "EXP-000001_bob/a.csv", meta)
    (problem,) = result.problems
    assert problem.sentence() == (
        "wavelength_nm: missing; rule 'plate' (rules/plate.toml) requires it "
        "(looked in the file's metadata at 'header.Wavelength [nm]')"
    )


def test_a_date_without_zone_needs_one(tmp_path: Path) -> None:
    write(
        tmp_path / "rules" / "r.toml",
        'match = ["*"]\n[fields]\nacquisition_date = "start"\n'
        '[validation.acquisition_date]\ntype = "datetime"\nrequired = true',
    )
    rules = load_rules(tmp_path / "rules", [])
    rule = rules.rule_for("d", "x")
    naive = {"start": "2024-05-01T10:00:00"}
    (problem,) = DatasetTypes([rule]).validate(rule, "x", naive).problems
    assert "has no time zone and the rule names none" in problem.problem
    # The site's zone fills in; an explicit offset needs none.
    assert DatasetTypes([rule], "Asia/Tokyo").validate(rule, "x", naive).values["acquisition_date"] == (
        "2024-05-01T10:00:00+09:00"
    )
    aware = {"start": "2024-05-01T10:00:00+00:00"}
    assert DatasetTypes([rule]).validate(rule, "x", aware).ok
    soon = {"start": (datetime.now(UTC) + timedelta(minutes=2)).isoformat()}
    assert DatasetTypes([rule]).validate(rule, "x", soon).ok  # clock skew is not the future


def _generic(tmp_path: Path, timezone: str | None = None) -> Rule:
    zone = f'timezone = "{timezone}"\n' if timezone else ""
    write(tmp_path / "rules" / "any.toml", f'match = ["*"]\n{zone}')
    return load_rules(tmp_path / "rules", []).rule_for("d", "x")


@pytest.mark.parametrize(
    ("read", "rule_zone", "site_zone", "start", "end"),
    [
        # The file's own offset is kept.
        ({"start": "2020-11-06T13:42:10+01:00"}, None, None, "2020-11-06T13:42:10+01:00", None),
        # A time without a zone gets the rule's zone, before the site's.
        (
            {"start": "2020-03-02T09:50:15", "end": "2020-03-02T10:20:00"},
            "America/New_York",
            "Europe/Berlin",
            "2020-03-02T09:50:15-05:00",
            "2020-03-02T10:20:00-05:00",
        ),
        ({"start": "2019-06-28T17:29:39"}, None, "Europe/Berlin", "2019-06-28T17:29:39+02:00", None),
        # An end before the start is not an end.
        (
            {"start": "2020-03-02T10:00:00Z", "end": "2020-03-01T10:00:00Z"},
            None,
            None,
            "2020-03-02T10:00:00+00:00",
            None,
        ),
    ],
)
def test_an_extractors_acquisition_time_is_zoned(
    tmp_path: Path,
    read: dict[str, str],
    rule_zone: str | None,
    site_zone: str | None,
    start: str,
    end: str | None,
) -> None:
    rule = _generic(tmp_path, rule_zone)
    acquired = DatasetTypes([rule], site_zone).acquisition(rule, {"acquisition": {**read, "source": "x"}}, {})
    assert (acquired.start, acquired.end, acquired.note) == (start, end, None)


@pytest.mark.parametrize(
    ("start", "note"),
    [
        ("2020-03-02T09:50:15", "it has no time zone, and neither the rule nor the site names one"),
        ("2099-01-01T00:00:00+00:00", "it is in the future; check the instrument's clock"),
        ("2099-01-01", "it is in the future; check the instrument's clock"),
        ("02-Mar-2020", "it is not an ISO 8601 date and time"),
    ],
)
def test_an_acquisition_time_that_cannot_be_used_is_left_out_with_a_note(
    tmp_path: Path, start: str, note: str
) -> None:
    rule = _generic(tmp_path)
    acquired = DatasetTypes([rule]).acquisition(
        rule, {"acquisition": {"start": start, "source": "$DATE"}}, {}
    )
    assert acquired.start is None and acquired.end is None
    assert acquired.note is not None and note in acquired.note and "(from $DATE)" in acquired.note


def test_the_rules_acquisition_date_wins_over_the_extractors(rule: Rule) -> None:
    read = {"acquisition": {"start": "2026-03-14T08:00:00", "end": "2026-03-14T10:00:00", "source": "x"}}
    acquired = DatasetTypes([rule]).acquisition(rule, read, {"acquisition_date": "2026-03-14T09:41:00+01:00"})
    assert (acquired.start, acquired.end) == ("2026-03-14T09:41:00+01:00", "2026-03-14T10:00:00+01:00")


def test_lookup_finds_keys_with_dots_and_list_items() -> None:
    meta = {"header": {"Averaging Nr. [scans]": "100", "a": {"b": 1}}, "experiments": [{"name": "x"}]}
    assert lookup(meta, "header.Averaging Nr. [scans]") == "100"
    assert lookup(meta, "header.a.b") == 1
    assert lookup(meta, "experiments.0.name") == "x"
    assert lookup(meta, "experiments.5.name") is None
    assert lookup(meta, "header.nothing") is None


def table(*columns: tuple[str, str], **header: str) -> dict[str, Any]:
    return {"header": header, "columns": [{"name": n, "type": t} for n, t in columns], "rowCount": 3}


def test_drift_finds_new_missing_and_retyped_keys() -> None:
    baseline = Baseline("plate", sessions_needed=2)
    first = shape_of({"operator": "a"}, table(("Time", "integer"), ("A1", "number"), Device="x"))
    second = shape_of({"operator": "b"}, table(("Time", "integer"), ("A1", "number"), Device="x", Note="y"))
    baseline.learn(first)
    baseline.learn(second)
    # Seen in every learnt file: expected; seen in some: optional.
    assert "header:Note" not in baseline.expected()
    assert compare(baseline, first) == compare(baseline, second)
    assert not compare(baseline, first)
    later = shape_of({"operator": "c"}, table(("Time", "string"), ("B1", "number"), Device="x"))
    drift = compare(baseline, later)
    assert drift.new == ("column:B1",)
    assert drift.missing == ("column:A1",)
    assert drift.retyped == (("column:Time", "integer", "string"),)
    assert drift.sentence() == "new: column:B1; missing: column:A1; retyped: column:Time (integer -> string)"
    # An integer column that now has decimals is the same measurement.
    assert not compare(
        baseline, shape_of({"operator": "d"}, table(("Time", "number"), ("A1", "number"), Device="x"))
    )


def test_a_declared_baseline_speaks_only_of_what_it_declares() -> None:
    baseline = declared_baseline("uvvis", DriftSettings(columns={"Wave": "number", "Sample": "number"}))
    assert not baseline.learning
    same = shape_of({}, table(("Wave", "number"), ("Sample", "number"), Anything="x"))
    assert not compare(baseline, same)
    drift = compare(baseline, shape_of({}, table(("Wave", "number"), ("Counts", "number"))))
    assert drift.new == ("column:Counts",) and drift.missing == ("column:Sample",)


def _crate_action(entities: list[dict[str, Any]]) -> dict[str, Any]:
    from agent.core.config import SiteSettings
    from agent.ingest.crate import SessionCrate

    crate = SessionCrate("drop", "s", SiteSettings())
    for entity in entities:
        crate.add([{"encodingFormat": "x", "dateModified": "2030-01-01T00:00:00+00:00", **entity}])
    graph = json.loads("".join(crate.text()))["@graph"]
    return next(e for e in graph if e.get("@type") == "CreateAction")


def test_the_crate_span_is_the_acquisition_compared_as_instants() -> None:
    action = _crate_action(
        [
            {
                "@id": "a",
                "dateCreated": "2026-03-14T09:41:00+01:00",  # 08:41 UTC: the first
                "temporalCoverage": "2026-03-14T09:41:00+01:00/2026-03-14T10:20:00+01:00",
            },
            {"@id": "b", "dateCreated": "2026-03-14T09:00:00+00:00"},  # 09:00 UTC: the last
            {"@id": "c"},  # no acquisition time: not part of the span, nor is any dateModified
        ]
    )
    assert (action["startTime"], action["endTime"]) == (
        "2026-03-14T09:41:00+01:00",
        "2026-03-14T10:20:00+01:00",
    )
    assert "description" not in action


def test_a_session_without_acquisition_times_says_its_time_is_unknown() -> None:
    action = _crate_action([{"@id": "a"}, {"@id": "b"}])
    assert "startTime" not in action and "endTime" not in action
    assert action["description"].startswith("When the data was acquired is unknown")
