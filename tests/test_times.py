"""True times on real exports: a file's dateCreated is when it was measured, zoned; the session's
CreateAction spans those times; the copy time is only ever dateModified."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent.core.batch import NS_MAX, NS_MIN
from agent.core.config import AgentConfig, SiteSettings
from agent.extractors.jcamp import acquisition
from agent.ingest.metadata import iso_time

from .conftest import CORPUS, read_crate, read_sidecar, run_scan, write

BERLIN = SiteSettings(timezone="Europe/Berlin")


@pytest.fixture(scope="module")
def corpus_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus's instrument exports and ELN files, scanned once with a site time zone."""
    import asyncio

    drop = tmp_path_factory.mktemp("times") / "drop"
    for part in ("flow_cytometry", "mass_spec", "jcamp", "xrd_session"):
        shutil.copytree(CORPUS / "instruments" / part, drop / part)
    shutil.copytree(CORPUS / "eln" / "elabftw", drop / "elabftw")
    state = drop.parent / "state"
    config = AgentConfig(state_dir=state, site=BERLIN)
    assert asyncio.run(run_scan(drop, config)).ok
    return drop


def action_of(folder: Path) -> dict[str, Any]:
    return next(e for e in read_crate(folder)["@graph"] if e.get("@type") == "CreateAction")


def entity_of(folder: Path, file_id: str) -> dict[str, Any]:
    return next(e for e in read_crate(folder)["@graph"] if e["@id"] == file_id)


@pytest.mark.parametrize(
    ("path", "instrument", "created", "counts"),
    [
        (
            "flow_cytometry/G11.fcs",
            {"model": "4486521 Attune NxT Acoustic Focusing Cytometer (Lasers: BRVY)"},
            "2020-03-02T09:50:15+01:00",  # $DATE 02-Mar-2020 $BTIM 09:50:15, Berlin winter time
            {"events": 5785, "parameters": 12},
        ),
        (
            "flow_cytometry/variable_int_example.fcs",
            {"model": "S1400EXi", "serialNumber": "S1417EXiBRVY01052015-45"},
            "2019-06-28T17:29:39+02:00",  # 28-JUN-2019 17:29:39, summer time
            {"events": 2, "parameters": 26},
        ),
        (
            "mass_spec/example.mzML",
            {"model": "Q Exactive"},
            "2013-09-10T10:31:08+00:00",  # startTimeStamp 2013-09-10T10:31:08Z: the file's own zone
            {"spectrumCount": 2918, "chromatogramCount": 1},
        ),
    ],
)
def test_fcs_and_mzml_give_instrument_time_and_counts(
    corpus_scan: Path, path: str, instrument: dict[str, str], created: str, counts: dict[str, int]
) -> None:
    sidecar = read_sidecar(corpus_scan / path)
    metadata = sidecar["metadata"]
    assert {k: metadata["instrument"].get(k) for k in instrument} == instrument
    assert {k: metadata[k] for k in counts} == counts
    assert sidecar["dateCreated"] == created
    folder, name = path.split("/")
    assert entity_of(corpus_scan / folder, name)["dateCreated"] == created


def test_the_session_spans_its_acquisitions_not_its_copies(corpus_scan: Path) -> None:
    action = action_of(corpus_scan / "flow_cytometry")
    # The Sony runs of 2019 and the Attune run of 2020; the files were copied today.
    assert action["startTime"] == "2019-06-28T17:29:39+02:00"
    assert action["endTime"] == "2020-03-02T09:50:30+01:00"
    xrd = action_of(corpus_scan / "xrd_session")
    assert xrd["startTime"].startswith("2020-11-06T") and xrd["endTime"].startswith("2020-11-")
    g11 = entity_of(corpus_scan / "flow_cytometry", "G11.fcs")
    assert g11["temporalCoverage"] == "2020-03-02T09:50:15+01:00/2020-03-02T09:50:30+01:00"
    assert not g11["dateModified"].startswith("2020")


def test_an_eln_export_is_dated_by_its_experiments(corpus_scan: Path) -> None:
    sidecar = read_sidecar(corpus_scan / "elabftw" / "export.eln")
    assert sidecar["dateCreated"] == "2025-09-16T10:32:50+02:00"
    assert sidecar["temporalCoverage"] == "2025-09-16T10:32:50+02:00/2025-09-16T10:32:57+02:00"


def test_a_jcamp_date_without_time_stays_a_day(corpus_scan: Path) -> None:
    assert read_sidecar(corpus_scan / "jcamp" / "acetone.jdx")["dateCreated"] == "1998-10-01"
    # "##DATE=1964" is a year, not a date: no dateCreated, and no warning about it either.
    carbon = read_sidecar(corpus_scan / "jcamp" / "carbon monoxide.jdx")
    assert "dateCreated" not in carbon and carbon["warnings"] == []


@pytest.mark.parametrize(
    ("labels", "start"),
    [
        ({"LONGDATE": "2003/05/16 12:34:56 +0200"}, "2003-05-16T12:34:56+02:00"),
        ({"LONGDATE": "2003/05/16"}, "2003-05-16"),
        ({"DATE": "98/10/1", "TIME": "10:11"}, "1998-10-01T10:11:00"),
        ({"DATE": "05/02/28"}, "2005-02-28"),
    ],
)
def test_jcamp_dates(labels: dict[str, str], start: str) -> None:
    found = acquisition(labels)
    assert found is not None and found["start"] == start


async def test_files_without_an_acquisition_time_leave_the_time_unknown(
    drop: Path, config: AgentConfig
) -> None:
    write(drop / "s" / "notes.md", "# notes\n")
    write(drop / "s" / "raw.bin", b"\x00\x01")
    assert (await run_scan(drop, config)).ok
    action = action_of(drop / "s")
    assert "startTime" not in action and "endTime" not in action
    assert action["description"].startswith("When the data was acquired is unknown")
    assert "dateCreated" not in read_sidecar(drop / "s" / "notes.md")


async def test_a_time_without_zone_and_no_zone_configured_is_a_warning(
    drop: Path, config: AgentConfig
) -> None:
    shutil.copy(CORPUS / "instruments" / "flow_cytometry" / "G11.fcs", write(drop / "s" / "G11.fcs", b""))
    assert (await run_scan(drop, config)).ok
    sidecar = read_sidecar(drop / "s" / "G11.fcs")
    assert "dateCreated" not in sidecar
    assert sidecar["metadata"]["acquisition"]["start"] == "2020-03-02T09:50:15"  # the raw value stays
    (warning,) = [w for w in sidecar["warnings"] if "acquisition time" in w]
    assert warning == (
        "the acquisition time '2020-03-02T09:50:15' (from $DATE $BTIM $ETIM) is not used: it has no "
        "time zone, and neither the rule nor the site names one (set 'timezone' in the rule, or "
        "site.timezone in the configuration)"
    )


@given(
    st.integers(min_value=NS_MIN, max_value=NS_MAX)
    | st.integers(min_value=-(2**33), max_value=2**33).map(lambda s: s * 10**9)  # whole seconds
)
@example(1_700_000_000_000_000_000)
@example(1_700_000_000_999_989_999)
@example(1_700_000_000_999_999_999)
@example(6_207_890_733_000_000_000)  # 2166: the float division gives the second before
@example(-8_355_950_087_000_000_000)  # 1705: likewise
@example(-1)
@example(-1_500_000_000)
def test_date_modified_is_the_second_datetime_gives(mtime_ns: int) -> None:
    # iso_time keeps the text of each second it made; it must be what it always was.
    expected = datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC).isoformat(timespec="seconds")
    assert iso_time(mtime_ns) == expected
