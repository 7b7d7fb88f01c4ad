"""Vendor text exports read as their makers write them: Tecan and the sample lab's plate reader,
AvaSoft, Shimadzu, HORIBA LabSpec-style comment headers, units in column names, Excel dates."""

from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.extractors import Budget, Source, run_extractor
from agent.extractors import lines as lines_module
from agent.extractors.base import ExtractionError, read_at
from agent.extractors.columns import split_unit
from agent.extractors.lines import BlockEnd
from agent.extractors.tablereading import SAMPLE_BYTES
from agent.extractors.tabular import TabularExtractor
from agent.extractors.vendorheader import excel_date, parse_vendor_date

from .conftest import CORPUS, REPO, write

TECAN = "instruments/plate_reader/200228_example_data.csv"


def extract(path: Path) -> dict[str, Any]:
    # Through run_extractor: what the agent keeps, bounded, with the extractor's name.
    return run_extractor(TabularExtractor(), Source(path, path.name, path.parent), 60)


def corpus(rel: str) -> Path:
    path = CORPUS / rel
    if not path.exists():
        pytest.skip(f"corpus file {rel} not found")
    return path


def by_name(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in meta["columns"]}


# --- Tecan Spark (the corpus export) ---------------------------------------------------------


def test_tecan_acquisition_runs_from_start_time_to_end_time() -> None:
    meta = extract(corpus(TECAN))
    assert meta["acquisition"] == {
        "start": "2020-02-27T17:28:00",
        "end": "2020-02-28T09:11:00",
        "source": 'header "Start Time" and trailer "End Time"',
    }
    # The End Time line follows the last table; the header's Date/Time (the export) stay as read.
    assert meta["trailer"] == {"End Time": "28/02/2020 09:11"}
    assert (meta["header"]["Date"], meta["header"]["Time"]) == ("28/02/2020", "9:11 AM")
    assert [d["field"] for d in meta["dates"]] == ["Date", "Start Time", "End Time"]


def test_tecan_later_reads_keep_their_settings() -> None:
    meta = extract(corpus(TECAN))
    reads = [(m["mode"], m.get("name")) for m in meta["measurements"]]
    assert reads == [
        ("Kinetic", None),
        ("Absorbance", "OD600"),
        ("Absorbance", "OD700"),
        ("Fluorescence Top Reading", "GFP"),
        ("Fluorescence Top Reading", "mCherry"),
    ]
    assert meta["measurements"][0]["settings"]["Interval time"] == "00:20:00 hh:mm:ss"
    assert meta["measurements"][2]["settings"]["Measurement wavelength"] == "700 nm"
    mcherry = meta["measurements"][4]["settings"]
    assert (mcherry["Excitation wavelength"], mcherry["Emission wavelength"], mcherry["Gain"]) == (
        "561 nm",
        "620 nm",
        "180 Manual",
    )
    # A rule reading header.Gain gets the first value, as before; every value is kept beside it.
    assert meta["header"]["Gain"] == "135 Manual"
    assert meta["headerRepeated"]["Gain"] == ["135 Manual", "180 Manual"]
    assert meta["headerRepeated"]["Number of flashes"] == ["10", "10", "30", "30"]
    assert "Part of Plate" not in meta["headerRepeated"]  # the same every time


def test_tecan_wells_in_rows_are_variables_named_by_well() -> None:
    meta = extract(corpus(TECAN))
    assert meta["orientation"] == "rows"
    columns = by_name(meta)
    assert [c["name"] for c in meta["columns"][:4]] == ["Cycle", "Time", "Temperature", "A1"]
    assert (columns["Time"]["unit"], columns["Time"]["label"], columns["Time"]["max"]) == (
        "s",
        "Time [s]",
        56396.416,
    )
    assert (columns["Temperature"]["unit"], columns["Temperature"]["min"]) == ("°C", 35.6)
    assert (columns["C1"]["nonNull"], columns["C1"]["min"], columns["C1"]["max"]) == (48, 0.1074, 0.5313)
    assert columns["A1"]["type"] == "empty"  # an empty well of the plate
    assert meta["wells"] == {"count": 96, "withData": 21}
    assert (meta["observationCount"], meta["rowCount"], meta["tables"]) == (48, 98, 4)
    assert meta["tableLabels"] == ["OD600", "OD700", "GFP", "mCherry"]


def test_tecan_instrument_and_description() -> None:
    meta = extract(corpus(TECAN))
    instrument = meta["instrument"]
    assert (instrument["name"], instrument["model"], instrument["manufacturer"]) == (
        "Spark",
        "Spark",
        "Tecan",
    )
    assert (instrument["serialNumber"], instrument["software"]) == ("x", "SparkControl V2.3")  # anonymised
    assert meta["description"] == (
        "Tecan Spark plate-reader kinetics (OD600, OD700, GFP, mCherry): 4 tables, 96 wells, 48 cycles"
    )


def tecan_export(cycles: int) -> str:
    """A SparkControl kinetic export laid out as the corpus file is, with as many cycles as asked."""
    values = ",".join(f"{0.1 + i / 1000:.4f}" for i in range(cycles))
    lines = ["Application: SparkControl,,,,V3.1", "Device: Spark,,,,Serial number: 1911005123", ",,,,"]
    lines += ["Start Time,,,,27/02/2020 17:28", ",,,,"]
    for read in ("OD600", "OD700", "GFP", "mCherry"):
        lines += [read, "Cycle Nr.," + ",".join(str(i + 1) for i in range(cycles))]
        lines += ["Time [s]," + ",".join(str(i * 600) for i in range(cycles)), "Temp. [°C]," + values]
        lines += [f"{r}{c},{values}" for r in "AB" for c in range(1, 13)] + [",,,,"]
    return "\n".join([*lines, "End Time,,,,28/02/2020 09:11,,,,", ""])


def test_a_long_kinetics_is_cut_at_its_first_table_and_its_trailer_found(tmp_path: Path) -> None:
    # 4 reads of 1,500 cycles: the first table alone is longer than the sample.
    path = write(tmp_path / "long.csv", tecan_export(1500))
    assert path.stat().st_size > 4 * SAMPLE_BYTES
    meta = extract(path)
    columns = by_name(meta)
    assert meta["rowCount"] == 26 and len(meta["columns"]) == 27  # Cycle, Time, Temperature, 24 wells
    assert (columns["Cycle"]["max"], columns["A1"]["nonNull"]) == (1500, 1500)  # not the OD700 rows
    assert meta["acquisition"]["end"] == "2020-02-28T09:11:00"  # from the file's last lines
    assert "what follows it is not profiled" in meta["note"]
    assert meta["description"] == "Tecan Spark plate-reader kinetics (OD600): 24 wells, 1,500 cycles"


def test_the_open_file_a_worker_is_given_reads_as_its_path_does(tmp_path: Path) -> None:
    # In a worker the file is the agent's open descriptor (Source.fd), read at offsets rather
    # than opened again by its path; the metadata must not differ. The long export takes the
    # sample, the tail and pandas; the corpus's text exports the rest.
    files = [write(tmp_path / "long.csv", tecan_export(1500))]
    files += sorted(p for p in (CORPUS / "instruments").rglob("*") if p.suffix.lower() in (".csv", ".txt"))
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.lseek(fd, 123, os.SEEK_SET)  # where someone else left the shared position
            source = Source(Path(f"/proc/self/fd/{fd}"), path.name, path.parent, fd)
            by_descriptor = run_extractor(TabularExtractor(), source, 60)
        finally:
            os.close(fd)
        assert by_descriptor == extract(path), path.name


def test_read_at_reads_up_to_the_end_and_no_further(tmp_path: Path) -> None:
    path = tmp_path / "ten"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert (read_at(fd, 2, 3), read_at(fd, 7, 10), read_at(fd, 10, 4)) == (b"234", b"789", b"")
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
    finally:
        os.close(fd)


def test_wells_as_columns_and_rows_without_a_cycle_line(tmp_path: Path) -> None:
    columns = write(
        tmp_path / "columns.csv",
        "Device: Spark\n\nCycle Nr.,Time [s],Temp. [°C],A1,A2,A3\n"
        "1,0,37.0,0.1,0.2,0.3\n2,600,37.1,0.11,0.21,OVER\n",
    )
    meta = extract(columns)
    assert [c["name"] for c in meta["columns"]] == ["Cycle", "Time", "Temperature", "A1", "A2", "A3"]
    assert meta["orientation"] == "columns" and by_name(meta)["A3"]["type"] == "text"  # "OVER"
    rows = write(
        tmp_path / "rows.csv",
        "Time [s];0;600;1200\nTemp. [°C];37,0;37,1;37,0\n"
        "A1;0,1;0,2;0,3\nA2;0,11;0,21;0,31\nA3;0,12;0,22;0,32\n",
    )
    meta = extract(rows)
    assert (meta["delimiter"], meta["decimal"], meta["orientation"]) == (";", ",", "rows")
    assert [c["name"] for c in meta["columns"]] == ["Time", "Temperature", "A1", "A2", "A3"]
    assert (by_name(meta)["A2"]["max"], meta["observationCount"]) == (0.31, 3)
    assert meta["description"] == "Plate-reader kinetics: 3 wells, 3 cycles"


# --- The sample lab's plate reader, AvaSoft, Shimadzu -----------------------------------------


def test_platemaster_sample_export() -> None:
    meta = extract(REPO / "sample_data" / "EXP-000123_alice" / "OD600_kinetics.csv")
    assert meta["acquisition"] == {"start": "2026-03-14T09:41:00", "source": 'header "Date"'}
    instrument = meta["instrument"]
    assert (instrument["model"], instrument["serialNumber"]) == ("PlateMaster Nova", "PMN-20419")
    assert instrument["software"] == "PlateMaster Control V4.1.2" and "manufacturer" not in instrument
    assert meta["header"]["Wavelength [nm]"] == "600"  # the rule's field path still works
    names = [c["name"] for c in meta["columns"]]
    assert names == ["Cycle", "Time", "Temperature", *[f"{r}{c}" for r in "AB" for c in range(1, 7)]]
    temperature = by_name(meta)["Temperature"]
    assert (temperature["unit"], temperature["label"], temperature["max"]) == ("°C", "Temperature [°C]", 37.1)
    assert meta["wells"] == {"count": 12, "withData": 12}
    assert meta["description"] == "PlateMaster Nova plate-reader kinetics: 12 wells, 24 cycles"


def test_avasoft_and_shimadzu_exports_are_described() -> None:
    uvvis = extract(corpus("instruments/uvvis_timeseries/1908047U1_0000.Raw8.TXT"))
    assert uvvis["description"] == "Text table, 5 columns, 1,921 rows (instrument 1908047U1)"
    assert uvvis["instrument"] == {"name": "1908047U1"}
    assert "acquisition" not in uvvis  # AvaSoft writes no date in these files
    ftir = extract(corpus("instruments/ftir/[FTIRText]020.txt"))
    assert ftir["description"] == "Text table, 2 columns, 27 rows (INFRARED SPECTRUM)"
    assert [(c["name"], c["unit"]) for c in ftir["columns"]] == [("column 1", "1/CM"), ("column 2", "%T")]


# --- Comment headers (HORIBA LabSpec and the like) ---------------------------------------------

LABSPEC = (
    "#Acq. time (s)=\t10\n#Accumulations=\t2\n#Range (cm-¹)=\t99...3200\n#Windows=\t3\n"
    "#Spike filter=\tMultiple accum.\n#Detector temperature (°C)=\t-60\n#Instrument=\tLabRAM HR Evol\n"
    "#Detector=\tSyncerity OE\n#Objective=\tx100_VIS\n#Grating=\t600 (500nm)\n#Laser=\t532nm Edge\n"
    "#Laser (nm)=\t532.14\n#Acquired=\t05.11.2020 11:16:41\n#Title=\tSi_reference\n#Remark=\t\n"
    "#Date=\t05.11.2020 11:16\n"
)
SPECTRUM = "99.9871\t1016.23\n101.229\t1011.04\n102.470\t1020.55\n103.711\t1033.90\n104.952\t1029.12\n"


def test_labspec_comment_lines_are_the_header_not_rows(tmp_path: Path) -> None:
    meta = extract(write(tmp_path / "Si_reference.txt", LABSPEC + SPECTRUM))
    assert meta["header"]["Acq. time (s)"] == "10"
    assert meta["header"]["Grating"] == "600 (500nm)"
    assert meta["header"]["Detector temperature (°C)"] == "-60"
    assert "Remark" not in meta["header"]  # empty
    assert meta["rowCount"] == 5 and [c["nonNull"] for c in meta["columns"]] == [5, 5]
    assert meta["columns"][0]["min"] == 99.9871
    assert meta["acquisition"] == {"start": "2020-11-05T11:16:41", "source": 'header "Acquired"'}
    acquired = next(d for d in meta["dates"] if d["field"] == "Acquired")
    assert acquired["dayMonthOrder"].startswith("day-first")
    assert meta["instrument"] == {
        "name": "LabRAM HR Evol",
        "model": "LabRAM HR Evol",
        "manufacturer": "HORIBA",
    }
    assert meta["description"] == "Text table, 2 columns, 5 rows (HORIBA LabRAM HR Evol)"


@pytest.mark.parametrize(
    ("names", "data"),
    [
        ("#Wave\t#Intensity\n", SPECTRUM),
        ("# Wave Intensity\n", SPECTRUM.replace("\t", "   ")),
        ("#Wave;#Intensity\n", SPECTRUM.replace("\t", ";")),
    ],
    ids=["tabs", "blanks", "semicolons"],
)
def test_a_commented_names_line_names_the_columns(tmp_path: Path, names: str, data: str) -> None:
    meta = extract(write(tmp_path / "spectrum.txt", LABSPEC + names + data))
    assert [c["name"] for c in meta["columns"]] == ["Wave", "Intensity"]
    assert by_name(meta)["Intensity"]["max"] == 1033.90 and meta["rowCount"] == 5


def test_a_column_named_hash_is_not_a_comment(tmp_path: Path) -> None:
    meta = extract(write(tmp_path / "runs.csv", "Operator: a\n\n#,Time,Value\n1,0.5,3\n2,1.0,4\n3,1.5,5\n"))
    assert [c["name"] for c in meta["columns"]] == ["#", "Time", "Value"] and meta["rowCount"] == 3


def test_hash_colon_headers_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    text = (
        "# Operator: ana\n# Date: 2021-03-04T10:22:11+01:00\n"
        "Time / s;Ewe/V;I (mA);A/B ratio\n0,0;1,25;0,5;2\n0,5;1,30;0,5;2\n1,0;1,35;0,5;3\n"
    )
    meta = extract(write(tmp_path / "cell.csv", text))
    assert (meta["delimiter"], meta["decimal"]) == (";", ",")
    assert [(c["name"], c.get("unit")) for c in meta["columns"]] == [
        ("Time", "s"),
        ("Ewe", "V"),
        ("I", "mA"),
        ("A/B ratio", None),
    ]
    assert by_name(meta)["Ewe"]["max"] == 1.35
    # The file's own UTC offset is kept.
    assert meta["acquisition"] == {"start": "2021-03-04T10:22:11+01:00", "source": 'header "Date"'}


# --- Units, dates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "name", "unit"),
    [
        ("Time [s]", "Time", "s"),
        ("Temp. [°C]", "Temp.", "°C"),
        ("Wavelength (nm)", "Wavelength", "nm"),
        ("Absorbance (AU)", "Absorbance", "AU"),
        ("I (mA)", "I", "mA"),
        ("Voltage / V", "Voltage", "V"),
        ("Ewe/V", "Ewe", "V"),
        ("(Q-Qo)/mA.h", "(Q-Qo)", "mA.h"),
        ("Q charge/discharge/mA.h", "Q charge/discharge", "mA.h"),
        ("control/V/mA", "control", "V/mA"),
        ("Capacitance charge/µF", "Capacitance charge", "µF"),
        ("Wavenumber (cm-1)", "Wavenumber", "cm-1"),
        ("Concentration (mg/mL)", "Concentration", "mg/mL"),
        ("t1 (h:m:s)", "t1", "h:m:s"),
    ],
)
def test_units_in_column_names(label: str, name: str, unit: str) -> None:
    assert split_unit(label) == (name, unit)


@pytest.mark.parametrize(
    "label",
    ["A/B ratio", "A/B", "m/z", "S/N", "ox/red", "Number of flashes (per well)", "Sample (1)", "Wave"],
)
def test_names_that_hold_no_unit(label: str) -> None:
    assert split_unit(label) == (label, None)


def test_excel_serial_dates_in_a_column_and_a_header(tmp_path: Path) -> None:
    text = "Operator: ana\nDate: 45000.5\nSample count: 45000\n\nDate,Time [s],Value\n"
    text += "45000.5,20000,1\n45001.25,30000,2\n45002,80000,3\n"
    meta = extract(write(tmp_path / "log.csv", text))
    date = by_name(meta)["Date"]
    assert (date["min"], date["max"]) == (45000.5, 45002.0)  # the numbers are kept
    assert date["excelDate"] == {"min": "2023-03-15T12:00:00", "max": "2023-03-17"}
    assert "excelDate" not in by_name(meta)["Time"]  # seconds, whatever their size
    (found,) = meta["dates"]
    assert (found["field"], found["original"], found["excelSerial"]) == ("Date", "45000.5", 45000.5)
    assert (found["iso"], found["timezone"]) == ("2023-03-15T12:00:00", "unknown")
    assert meta["acquisition"]["start"] == "2023-03-15T12:00:00"


def test_a_day_alone_stays_a_day(tmp_path: Path) -> None:
    meta = extract(
        write(tmp_path / "od.csv", "Date: 14/03/2026\nCreated: 01/03/2026 10:00\n\nt,A1\n0,1\n1,2\n2,3\n")
    )
    # "Created" is the method's date, not the measurement's: the day is all the file says of that.
    assert meta["acquisition"] == {"start": "2026-03-14", "source": 'header "Date"'}


@pytest.mark.parametrize(
    ("serial", "iso"),
    [
        (45000, "2023-03-15"),
        (45000.75, "2023-03-15T18:00:00"),
        (25569, "1970-01-01"),
        (19999.9, None),
        (90000, None),
    ],
)
def test_excel_serial_days(serial: float, iso: str | None) -> None:
    assert excel_date(serial) == iso


@pytest.mark.parametrize(
    ("value", "iso", "zone"),
    [
        ("2021-03-04T10:22:11+01:00", "2021-03-04T10:22:11+01:00", "+01:00"),
        ("2021-03-04 10:22:11.250", "2021-03-04T10:22:11", "unknown"),
        ("05.11.2020 11:16", "2020-11-05T11:16:00", "unknown"),
        ("28/02/2020 not a time", "2020-02-28", "unknown"),  # no made-up midnight
    ],
)
def test_vendor_dates_keep_offsets_and_invent_nothing(value: str, iso: str, zone: str) -> None:
    parsed = parse_vendor_date(value)
    assert parsed is not None and (parsed["iso"], parsed["timezone"]) == (iso, zone)


# --- Property-based ----------------------------------------------------------------------------

LINE = st.one_of(
    st.text(alphabet="0123456789.;,\t ab", max_size=40),
    st.sampled_from(["", ",,,,", " \t ", ";;"]),
)


@settings(max_examples=80, deadline=None)
@given(
    lines=st.lists(LINE, min_size=1, max_size=200),
    crlf=st.booleans(),
    after=st.integers(min_value=0, max_value=4000),
    read=st.integers(min_value=1, max_value=64),
)
def test_block_end_stops_at_the_first_blank_line_after_its_start(
    lines: list[str], crlf: bool, after: int, read: int
) -> None:
    data = ("\r\n" if crlf else "\n").join(lines).encode()
    after = min(after, len(data))
    blank = re.compile(rb"\n[ \t,;|]*\r?\n").search(data, max(0, after - 1))
    expected = data[: blank.start() + 1] if blank else data
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lines_module, "READ_BYTES", read)  # blank lines across reads
        block = BlockEnd(io.BytesIO(data), after)
        assert io.BufferedReader(block).read() == expected
    assert block.ended == (blank is not None)


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
KEYS = st.text(alphabet="abcXYZ0123 ._()°µ-", min_size=1, max_size=16).filter(str.strip)
VALUES = st.text(alphabet="abcXYZ0123 ._()°µ-/:", min_size=1, max_size=24).filter(str.strip)


@FUZZ
@given(
    pairs=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=12),
    separator=st.sampled_from(["=", "=\t", ": "]),
    rows=st.integers(min_value=3, max_value=30),
)
def test_comment_header_pairs_are_read_back(pairs: list[tuple[str, str]], separator: str, rows: int) -> None:
    header = "".join(f"#{k}{separator}{v}\n" for k, v in pairs)
    table = "".join(f"{100 + i}.5\t{i * 3}\n" for i in range(rows))
    with tempfile.TemporaryDirectory() as folder:
        meta = extract(write(Path(folder) / "spectrum.txt", header + table))
    assert meta["header"] == {k.strip(): v.strip() for k, v in reversed(pairs)}  # the first value wins
    assert meta["rowCount"] == rows and meta["columns"][0]["min"] == 100.5


COMMENTISH = st.text(alphabet="#=:;,\t\n -.0123456789eEabcAH[]()/°", max_size=3000)


@FUZZ
@given(text=COMMENTISH)
def test_comment_heavy_text_gives_metadata_or_a_clean_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / "fuzz.txt", text)
        try:
            meta = TabularExtractor().extract(Source(path, path.name, path.parent), Budget(20))
        except ExtractionError:
            return
    assert isinstance(meta["description"], str) and meta["description"]
