"""The HDF5 extractor on NeXus files written here with h5py: every way NeXus stores a string reads as
the same text, and the entry's definition, times, instrument and people come out as literal values."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.extractors import Source, run_extractor
from agent.extractors.hdf5 import Hdf5Extractor

h5py = pytest.importorskip("h5py")

FIXTURES = Path(__file__).parent / "fixtures" / "hdf5"


def extract(path: Path) -> dict[str, Any]:
    metadata = run_extractor(Hdf5Extractor(), Source(path, path.name, path.parent), 20)
    json.dumps(metadata, allow_nan=False)  # it crosses the isolation boundary as JSON
    return metadata


# The shapes NeXus writers give a string: h5py reads them as bytes, str, or arrays of shape (1,).
STRING_SHAPES: dict[str, Callable[[str], Any]] = {
    "fixed-length": lambda text: np.bytes_(text.encode()),
    "variable-length": lambda text: text,
    "fixed-length, one-element array": lambda text: np.array([text.encode()], dtype=f"S{len(text.encode())}"),
    "variable-length, one-element array": lambda text: np.array([text], dtype=h5py.string_dtype()),
}


def nexus(
    path: Path, shape: Callable[[str], Any] = STRING_SHAPES["variable-length"], libver: str = "earliest"
) -> Any:
    """A NeXus file with one NXentry holding a title, times and an instrument; left open to add to."""
    f = h5py.File(path, "w", libver=libver)
    entry = group(f, "entry", "NXentry")
    entry["title"] = shape("Ti-6Al-4V powder, 300 K")
    entry["start_time"] = shape("2026-03-14T09:41:00+01:00")
    entry["end_time"] = shape("2026-03-14T10:12:30.250+01:00")
    group(entry, "instrument", "NXinstrument")["name"] = shape("I11 powder diffraction")
    return f


def group(parent: Any, name: str, nx_class: str) -> Any:
    created = parent.create_group(name)
    created.attrs["NX_class"] = nx_class
    return created


@pytest.mark.parametrize("shape", STRING_SHAPES.values(), ids=STRING_SHAPES.keys())
def test_every_shape_of_a_nexus_string_reads_as_the_same_text(
    tmp_path: Path, shape: Callable[[str], Any]
) -> None:
    path = tmp_path / "scan.nxs"
    nexus(path, shape).close()
    meta = extract(path)
    assert meta["nexusEntries"] == [
        {
            "name": "entry",
            "title": "Ti-6Al-4V powder, 300 K",
            "start_time": "2026-03-14T09:41:00+01:00",
            "end_time": "2026-03-14T10:12:30.250+01:00",
            "instrument": "I11 powder diffraction",
        }
    ]
    assert meta["acquisition"] == {
        "start": "2026-03-14T09:41:00+01:00",
        "end": "2026-03-14T10:12:30+01:00",
        "source": "/entry/start_time",
    }
    assert meta["instrument"] == {"name": "I11 powder diffraction"}
    assert meta["description"] == (
        "NeXus data: entry 'entry' ('Ti-6Al-4V powder, 300 K'), instrument 'I11 powder diffraction'"
    )
    assert "warnings" not in meta


def test_the_application_definition_program_source_and_people(tmp_path: Path) -> None:
    path = tmp_path / "mx.nxs"
    with nexus(path) as f:
        f.attrs.update(
            {"file_time": "2026-03-14T10:13:00+01:00", "creator": "GDA 9.31", "HDF5_Version": "1.14.3"}
        )
        f.attrs["NeXus_version"] = "4.3.0"
        entry = f["entry"]
        entry["definition"] = np.array([b"NXmx"], dtype="S4")
        entry["definition"].attrs.update({"version": "1.5", "URL": "https://manual.nexusformat.org/NXmx"})
        entry["experiment_identifier"] = "mx12345-6"
        entry["program_name"] = "GDA"
        entry["program_name"].attrs["version"] = "9.31"
        entry["duration"] = np.array([1890.25])
        entry["instrument/name"].attrs["short_name"] = "I11"
        source = group(entry["instrument"], "ring", "NXsource")
        source.update({"name": "Diamond Light Source", "probe": "x-ray", "type": "Synchrotron X-ray Source"})
        for number, name in enumerate(["Ada Lovelace", "Josiah Carberry"]):
            group(entry, f"user_{number}", "NXuser")["name"] = name
        group(entry, "sample", "NXsample")["name"] = np.array(["lysozyme"], dtype=h5py.string_dtype())
        group(entry, "mx", "NXsubentry")["definition"] = "NXmx"
    meta = extract(path)
    nx = meta["nexusEntries"][0]
    assert {k: v for k, v in nx.items() if k not in ("title", "start_time", "end_time")} == {
        "name": "entry",
        "definition": "NXmx",
        "definitionVersion": "1.5",
        "definitionURL": "https://manual.nexusformat.org/NXmx",
        "experiment_identifier": "mx12345-6",
        "program_name": "GDA",
        "programVersion": "9.31",
        "duration": 1890.25,
        "instrument": "I11 powder diffraction",
        "instrumentShortName": "I11",
        "source": {"name": "Diamond Light Source", "probe": "x-ray", "type": "Synchrotron X-ray Source"},
        "users": ["Ada Lovelace", "Josiah Carberry"],
        "sample": "lysozyme",
        "subentries": [{"name": "mx", "definition": "NXmx"}],
    }
    assert (meta["file_time"], meta["creator"], meta["HDF5_Version"], meta["NeXus_version"]) == (
        "2026-03-14T10:13:00+01:00",
        "GDA 9.31",
        "1.14.3",
        "4.3.0",
    )
    assert meta["description"].startswith("NeXus NXmx data: entry 'entry' ('Ti-6Al-4V")


def test_a_definition_only_in_a_subentry_still_names_the_data(tmp_path: Path) -> None:
    path = tmp_path / "sub.nxs"
    with nexus(path) as f:
        group(f["entry"], "tomo", "NXsubentry")["definition"] = b"NXtomo"
    assert extract(path)["description"].startswith("NeXus NXtomo data: entry 'entry'")


@pytest.mark.parametrize(
    ("start", "end", "acquisition"),
    [
        ("2026-03-14T09:41:00Z", None, {"start": "2026-03-14T09:41:00+00:00"}),
        # No offset in the file: none is made up (the rule's or the site's time zone applies).
        (
            "2026-03-14T09:41:00.123456",
            "2026-03-14 10:00:00",
            {"start": "2026-03-14T09:41:00", "end": "2026-03-14T10:00:00"},
        ),
        ("2026-03-14T09:41:00-0500", None, {"start": "2026-03-14T09:41:00-05:00"}),
    ],
)
def test_start_and_end_times_with_and_without_an_offset(
    tmp_path: Path, start: str, end: str | None, acquisition: dict[str, str]
) -> None:
    path = tmp_path / "times.nxs"
    with nexus(path) as f:
        del f["entry/start_time"], f["entry/end_time"]
        f["entry/start_time"] = start
        if end is not None:
            f["entry/end_time"] = end
    assert extract(path)["acquisition"] == {**acquisition, "source": "/entry/start_time"}


def test_a_time_that_is_not_iso_8601_is_a_warning_not_a_guess(tmp_path: Path) -> None:
    path = tmp_path / "odd.nxs"
    with nexus(path) as f:
        f["entry/start_time"][()] = "14/03/2026 09:41"
    meta = extract(path)
    assert "acquisition" not in meta
    assert meta["warnings"] == ["the start_time of entry 'entry' is not ISO 8601: '14/03/2026 09:41'"]


def test_an_instrument_without_a_name_is_not_named_by_its_group(tmp_path: Path) -> None:
    path = tmp_path / "anonymous.nxs"
    with nexus(path) as f:
        del f["entry/instrument/name"]
    meta = extract(path)
    # The entry's summary says which group it is, as it always did; no instrument is made of it.
    assert meta["nexusEntries"][0]["instrument"] == "instrument"
    assert "instrument" not in meta
    assert meta["description"] == "NeXus data: entry 'entry' ('Ti-6Al-4V powder, 300 K')"


def test_several_entries_are_summarised_and_the_first_one_dates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "two.nxs"
    with nexus(path) as f:
        second = group(f, "entry2", "NXentry")
        second["start_time"] = "2026-03-15T08:00:00+01:00"
        group(f, "calibration", "NXcollection")
    meta = extract(path)
    assert [e["name"] for e in meta["nexusEntries"]] == ["entry", "entry2"]
    assert meta["acquisition"]["start"] == "2026-03-14T09:41:00+01:00"
    assert meta["description"].startswith("NeXus data: 2 entries, the first 'entry' (")


def test_plain_hdf5_says_it_has_no_nexus_entry(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["counts"] = np.arange(10)
        f.attrs["creator"] = np.array([b"labview"])
    meta = extract(path)
    assert meta["creator"] == "labview" and meta["attributes"] == {"creator": "labview"}
    assert meta["description"] == "HDF5 data with no NeXus entry (1 object at the root)"
    assert "nexusEntries" not in meta and "acquisition" not in meta


def test_an_external_link_is_never_followed_even_to_a_file_that_is_there(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "detector.h5", "w") as f:
        f["title"] = "read from the linked file"
    path = tmp_path / "linked.nxs"
    with nexus(path) as f:
        del f["entry/title"]
        f["entry/title"] = h5py.ExternalLink("detector.h5", "/title")
        f["entry/data"] = h5py.ExternalLink("missing_0001.h5", "/entry/data")
    meta = extract(path)
    assert "title" not in meta["nexusEntries"][0]
    assert meta["missingExternalLinks"] == [
        {"name": "entry/data", "file": "missing_0001.h5", "path": "/entry/data"}
    ]
    assert meta["warnings"] == [
        "the external link 'entry/data' points to 'missing_0001.h5', not in the folder"
    ]


def test_large_and_empty_values_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "big.nxs"
    with nexus(path, libver="latest") as f:  # the latest format stores large attributes
        del f["entry/title"], f["entry/end_time"]
        f["entry/title"] = np.bytes_(b"x" * (100 << 10))
        f["entry/end_time"] = h5py.Empty("S10")
        f.attrs.create("vector", np.zeros(20_000), dtype="f8")  # 160 kB: over the limit
    meta = extract(path)
    assert set(meta["nexusEntries"][0]) == {"name", "start_time", "instrument"}
    assert "vector" not in meta["attributes"]


def test_the_fuzz_base_fixture() -> None:
    meta = extract(FIXTURES / "base.nxs")
    assert meta["nexusEntries"] == [
        {
            "name": "entry",
            "title": "in-situ scan 17",
            "start_time": "2026-03-14T09:41:00+01:00",
            "end_time": "2026-03-14T10:12:30+01:00",
            "instrument": "Empyrean",
            "sample": "LiFePO4 cathode",
        }
    ]
    assert meta["attributes"]["fixed"] == "fixed-width" and meta["attributes"]["labels"] == [
        "alpha",
        "beta",
        "gamma",
    ]
    assert meta["creator"] == "fair-agent fuzz base"
    assert meta["instrument"] == {"name": "Empyrean"}
    assert meta["acquisition"] == {
        "start": "2026-03-14T09:41:00+01:00",
        "end": "2026-03-14T10:12:30+01:00",
        "source": "/entry/start_time",
    }
    assert meta["description"] == "NeXus data: entry 'entry' ('in-situ scan 17'), instrument 'Empyrean'"
