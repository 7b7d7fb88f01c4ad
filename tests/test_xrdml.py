"""The XRDML extractor on real Empyrean scans, on hand-written documents, and on broken and hostile
bytes: literal values read from the files, and never anything but metadata or an ExtractionError."""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.extractors.base import Budget, ExtractionError, ExtractionTimeout, Source, UnsafeInputError
from agent.extractors.xmlformats import MAX_BYTES
from agent.extractors.xrdml import MAX_LISTED, XrdmlExtractor
from agent.rules.dataset import lookup

from .conftest import CORPUS, REPO

SESSION = CORPUS / "instruments" / "xrd_session"
V21 = "http://www.xrdml.com/XRDMeasurement/2.1"


def extract(path: Path, seconds: float = 20) -> dict[str, Any]:
    return XrdmlExtractor().extract(Source(path, path.name, path.parent), Budget(seconds))


def scan_c(number: int) -> Path:
    path = SESSION / f"Scan_C{number}.xrdml"
    if not path.exists():
        pytest.skip(f"corpus file {path} not found")
    return path


def scan(start: str, end: str, status: str = "Completed", body: str = "") -> str:
    return f"""
  <scan appendNumber="0" mode="Pre-set time" scanAxis="2Theta" status="{status}">
   <header><startTimeStamp>{start}</startTimeStamp><endTimeStamp>{end}</endTimeStamp>
    <author><name>A. Person</name></author>
    <source><applicationSoftware version="6.1">Data Collector</applicationSoftware>
     <instrumentID>SN-42</instrumentID></source></header>
   <dataPoints>{body or DATA_POINTS}</dataPoints>
  </scan>"""


DATA_POINTS = """
    <positions axis="2Theta" unit="deg"><startPosition>10.0</startPosition><endPosition>80</endPosition>
    </positions>
    <positions axis="Omega" unit="deg"><commonPosition>5.0</commonPosition></positions>
    <commonCountingTime unit="seconds">1</commonCountingTime>
    <counts unit="counts">1 4 9
     16 9 4 1</counts>"""


def document(*scans: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements xmlns="{V21}" status="Completed">
 <comment><entry>Diffractometer system=XPERT-PRO</entry></comment>
 <sample type="To be analyzed"><id>S-17</id><name>LiFePO4 cathode</name></sample>
 <xrdMeasurement measurementType="Scan" status="Completed">
  <usedWavelength intended="K-Alpha 1"><kAlpha1 unit="Angstrom">1.7890100</kAlpha1>
   <ratioKAlpha2KAlpha1>0.0</ratioKAlpha2KAlpha1></usedWavelength>
  <incidentBeamPath><xRayTube id="1" name="Co LFF"><tension unit="kV">45</tension>
   <current unit="mA">40</current><anodeMaterial>Co</anodeMaterial></xRayTube></incidentBeamPath>
  <diffractedBeamPath><detector name="PIXcel3D"/></diffractedBeamPath>{"".join(scans)}
 </xrdMeasurement>
</xrdMeasurements>
"""


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "scan.xrdml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_an_empyrean_scan_read_from_the_corpus() -> None:
    meta = extract(scan_c(1))
    assert (meta["namespace"], meta["xrdmlVersion"]) == ("http://www.xrdml.com/XRDMeasurement/1.5", "1.5")
    assert meta["measurement"] == {
        "measurementType": "Scan",
        "status": "Completed",
        "sampleMode": "Reflection",
    }
    assert meta["sample"] == {"type": "To be analyzed"}  # its id and name are empty in the file
    assert meta["usedWavelength"] == {
        "intended": "K-Alpha",
        "kAlpha1": {"value": 1.540598, "unit": "Angstrom"},
        "kAlpha2": {"value": 1.544426, "unit": "Angstrom"},
        "kBeta": {"value": 1.39225, "unit": "Angstrom"},
        "ratioKAlpha2KAlpha1": 0.5,
    }
    assert meta["xRayTube"] == {
        "id": "1010041",
        "name": "Empyrean Cu LFF (9430 033 7300x) DK413100",
        "tension": {"value": 40.0, "unit": "kV"},
        "current": {"value": 40.0, "unit": "mA"},
        "anodeMaterial": "Cu",
    }
    assert meta["detector"] == "X'Celerator detector"
    assert meta["scanCount"] == 1
    assert meta["scans"][0] == {
        "scanAxis": "Gonio",
        "mode": "Continuous",
        "status": "Completed",
        "appendNumber": "0",
        "start": "2020-11-06T18:09:37+00:00",
        "end": "2020-11-06T18:24:18+00:00",
        "author": "Univ. of Cambridge",
        "applicationSoftware": {"name": "Data Collector", "version": "4.0a"},
        "instrumentControlSoftware": {"name": "EMPYREAN", "version": "7.6"},
        "instrumentID": "0000000011120626",
        "positions": {
            "2Theta": {"unit": "deg", "start": 5.00475563, "end": 124.99166689},
            "Omega": {"unit": "deg", "start": 2.50237782, "end": 62.49583345},
        },
        "countingTime": {"value": 15.24, "unit": "seconds"},
        "points": 7181,
    }
    assert meta["acquisition"] == {
        "start": "2020-11-06T18:09:37+00:00",
        "end": "2020-11-06T18:24:18+00:00",
        "source": "scan/header/startTimeStamp",
    }
    assert meta["instrument"] == {
        "model": "EMPYREAN",
        "serialNumber": "0000000011120626",
        "software": "Data Collector 4.0a",
    }
    assert meta["description"] == (
        "PANalytical XRDML 2θ/ω scan (Gonio), 5.00–124.99° 2θ, 7,181 points, Cu Kα1 1.5406 Å, "  # noqa: RUF001
        "15.24 s per step"
    )
    assert "warnings" not in meta and "truncated" not in meta


def test_the_generic_readers_keys_still_hold_what_the_xrd_rule_reads() -> None:
    meta = extract(scan_c(5))
    assert meta["root"] == "xrdMeasurements"
    assert (meta["start"], meta["end"]) == ("2020-11-06T19:09:32+00:00", "2020-11-06T19:24:12+00:00")
    assert meta["source"].startswith("Empyrean Cu LFF") and meta["rootAttributes"]["status"] == "Completed"
    rule = tomllib.loads((REPO / "rules" / "xrd-panalytical.toml").read_text())
    for field, where in rule["fields"].items():
        assert lookup(meta, where) is not None, f"the rule's field {field!r} at {where!r} is gone"


@pytest.mark.parametrize("number", range(1, 11))
def test_every_scan_of_the_in_situ_series_is_complete(number: int) -> None:
    meta = extract(scan_c(number))
    acquisition = meta["acquisition"]
    assert acquisition["start"] < acquisition["end"] and acquisition["start"].startswith("2020-11-06T")
    assert meta["scans"][0]["points"] == 7181 and "warnings" not in meta


def test_a_hand_written_document_of_several_scans(tmp_path: Path) -> None:
    scans = [
        scan("2024-05-02T09:00:00+02:00", "2024-05-02T09:30:00+02:00"),
        scan("2024-05-02T09:31:00+02:00", "2024-05-02T09:40:00+02:00", status="Aborted"),
        scan("2024-05-02T09:41:00+02:00", "2024-05-02T10:15:30+02:00"),
    ]
    meta = extract(write(tmp_path, document(*scans)))
    assert meta["xrdmlVersion"] == "2.1" and meta["scanCount"] == 3
    assert meta["sample"] == {"type": "To be analyzed", "id": "S-17", "name": "LiFePO4 cathode"}
    assert meta["usedWavelength"] == {
        "intended": "K-Alpha 1",
        "kAlpha1": {"value": 1.78901, "unit": "Angstrom"},
        "ratioKAlpha2KAlpha1": 0.0,
    }
    assert (meta["source"], meta["detector"]) == ("Co LFF", "PIXcel3D")
    assert meta["scans"][0]["positions"] == {
        "2Theta": {"unit": "deg", "start": 10.0, "end": 80.0},
        "Omega": {"unit": "deg", "common": 5.0},
    }
    assert [s["points"] for s in meta["scans"]] == [7, 7, 7]
    # The measurement spans the first scan's start to the last scan's end, offsets kept.
    assert meta["acquisition"] == {
        "start": "2024-05-02T09:00:00+02:00",
        "end": "2024-05-02T10:15:30+02:00",
        "source": "scan/header/startTimeStamp",
    }
    instrument = {"model": "XPERT-PRO", "serialNumber": "SN-42", "software": "Data Collector 6.1"}
    assert meta["instrument"] == instrument
    assert meta["description"] == (
        "PANalytical XRDML, 3 scans, the first a 2θ scan (2Theta), 10.00–80.00° 2θ, 7 points, "  # noqa: RUF001
        "Co Kα1 1.7890 Å, 1 s per step"  # noqa: RUF001
    )
    assert meta["warnings"] == ["scan 2 has the status 'Aborted', not 'Completed'"]


def test_scans_past_the_listed_ones_are_counted_and_the_last_ends_the_measurement(tmp_path: Path) -> None:
    scans = [scan(f"2024-05-02T{h:02}:00:00", f"2024-05-02T{h:02}:30:00") for h in range(24)]
    meta = extract(write(tmp_path, document(*scans)))
    assert (meta["scanCount"], len(meta["scans"])) == (24, MAX_LISTED)
    # No offset in the file: none is made up (the rule's or the site's time zone applies).
    assert meta["acquisition"]["start"] == "2024-05-02T00:00:00"
    assert meta["acquisition"]["end"] == "2024-05-02T23:30:00"


def test_a_list_of_positions_is_noted_not_read(tmp_path: Path) -> None:
    body = """<positions axis="2Theta" unit="deg"><listPositions>10 11 12</listPositions></positions>
              <intensities unit="counts">5 6 7</intensities>"""
    meta = extract(write(tmp_path, document(scan("2024-05-02T09:00:00Z", "2024-05-02T09:01:00Z", body=body))))
    assert meta["scans"][0]["positions"] == {"2Theta": {"unit": "deg", "listPositions": True}}
    assert meta["scans"][0]["points"] == 3
    assert meta["description"].startswith("PANalytical XRDML 2θ scan (2Theta), 3 points, Co Kα1")  # noqa: RUF001


def test_a_document_without_scans_or_with_odd_times_says_so(tmp_path: Path) -> None:
    assert extract(write(tmp_path, document()))["warnings"] == ["the file holds no scan"]
    meta = extract(write(tmp_path, document(scan("yesterday", "today"))))
    assert meta["start"] == "yesterday" and "acquisition" not in meta
    assert meta["warnings"] == ["the scan times ('yesterday', 'today') are not ISO 8601 date and time"]


def test_a_truncated_file_keeps_what_came_before_the_break(tmp_path: Path) -> None:
    data = scan_c(3).read_bytes()
    meta = extract(write(tmp_path, data[: data.index(b"<intensities") + 5000]))
    assert meta["truncated"].startswith("the document breaks off: ")
    assert meta["warnings"] == [meta["truncated"]]
    assert meta["acquisition"]["start"] == "2020-11-06T18:39:35+00:00"
    assert meta["xRayTube"]["anodeMaterial"] == "Cu"
    assert "points" not in meta["scans"][0]  # the counts were cut: not counted


def test_past_the_byte_limit_nothing_is_read(tmp_path: Path) -> None:
    first = scan("2024-05-02T09:00:00Z", "2024-05-02T09:01:00Z")
    head = document(first, scan("2024-05-02T09:02:00Z", "2024-05-02T09:03:00Z", body="<counts>CUT</counts>"))
    text = head.split("CUT</counts>", 1)[0] + "1 " * (MAX_BYTES // 2 + 1000)
    meta = extract(write(tmp_path, text))
    assert meta["truncated"] == "only its first 4 MiB were read: what follows is not described"
    assert meta["acquisition"]["start"] == "2024-05-02T09:00:00+00:00"
    assert meta["description"].startswith("PANalytical XRDML, at least 2 scans, the first a 2θ scan")


DOCTYPES = {
    "entity": b'<!DOCTYPE x [<!ENTITY a "aaaaaaaa">]>',
    "external-entity": b'<!DOCTYPE x [<!ENTITY a SYSTEM "file:///etc/passwd">]>',
    "external-dtd": b'<!DOCTYPE x SYSTEM "http://example.org/x.dtd">',
}


@pytest.mark.parametrize("doctype", DOCTYPES.values(), ids=DOCTYPES.keys())
def test_a_dtd_is_refused_as_unsafe(tmp_path: Path, doctype: bytes) -> None:
    text = b'<?xml version="1.0"?>' + doctype + b"<xrdMeasurements><comment>&a;</comment></xrdMeasurements>"
    with pytest.raises(UnsafeInputError, match="refused for safety: DTDForbidden"):
        extract(write(tmp_path, text))


NOT_XRDML = [
    (b"", "not well-formed XML"),
    (b"\x00\x01 not xml", "not well-formed XML"),
    (b'<?xml version="1.0"?><mzML/>', "its root element is <mzML>, not <xrdMeasurements>"),
]


@pytest.mark.parametrize(("content", "message"), NOT_XRDML)
def test_what_is_not_xrdml_is_an_extraction_error(tmp_path: Path, content: bytes, message: str) -> None:
    with pytest.raises(ExtractionError, match=message):
        extract(write(tmp_path, content))


def test_the_time_limit_stops_the_reading() -> None:
    with pytest.raises(ExtractionTimeout):
        extract(scan_c(1), seconds=-1)


def test_accepts_xrdml_by_its_extension_in_any_case() -> None:
    extractor = XrdmlExtractor()
    assert extractor.accepts("run/Scan_C1.XRDML", b"") and extractor.accepts("a.xrdml", b"<?xml")
    assert not extractor.accepts("a.xml", b'<?xml version="1.0"?><xrdMeasurements>')


FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def metadata_or_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.xrdml"
        path.write_bytes(data)
        try:
            result = extract(path)
        except ExtractionError:
            return
        assert isinstance(result, dict) and isinstance(result["description"], str)


def seed() -> bytes:
    path = SESSION / "Scan_C1.xrdml"
    if not path.exists():
        pytest.skip("corpus not found")
    return path.read_bytes()


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    metadata_or_error(data)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=40_000))
def test_truncations_of_a_real_scan(cut: int) -> None:
    metadata_or_error(seed()[:cut])


CHANGES = st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.binary(max_size=8)), min_size=1, max_size=16
)


@FUZZ
@given(changes=CHANGES)
def test_mutations_of_a_real_scan(changes: list[tuple[float, bytes]]) -> None:
    # In the first 4 kB, where the structure is: a changed count would be just another count.
    data = bytearray(seed())
    for where, replacement in changes:
        at = int(where * 4000)
        data[at : at + len(replacement)] = replacement
    metadata_or_error(bytes(data))
