"""BioLogic EC-Lab settings files (.mps): the real corpus file, a newer version's, and fuzzing."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.extractors import Budget, Source, run_extractor
from agent.extractors.base import ExtractionError
from agent.extractors.biologic import MAX_TECHNIQUES, BiologicExtractor

from .conftest import CORPUS, write

MPS = "instruments/echem/jdb11-1_c3_gcpl_5cycles_2V-3p8V_C-24_data.mps"
EXTRACTOR = BiologicExtractor()


def extract(path: Path) -> dict[str, Any]:
    return run_extractor(EXTRACTOR, Source(path, path.name, path.parent), 10)


@pytest.fixture
def mps() -> Path:
    path = CORPUS / MPS
    if not path.exists():
        pytest.skip(f"corpus file {MPS} not found")
    return path


def row(name: str, *values: str) -> str:
    """A technique's parameter line as EC-Lab writes it: 20-character columns."""
    return "".join(f"{cell:<20}" for cell in (name, *values)) + "\r\n"


def test_the_corpus_settings_file(mps: Path) -> None:
    assert EXTRACTOR.accepts(mps.name, mps.read_bytes()[:4096])
    meta = extract(mps)
    assert meta["encoding"] == "cp1252"  # µ and ² are single bytes
    assert (meta["device"], meta["linkedTechniques"]) == ("MPG-2", 1)
    assert meta["originalPath"].endswith(r"jdb11-1_c3_NaCoO2\jdb11-1_c3_gcpl_5cycles_2V-3p8V_C-24_data.mps")
    (gcpl,) = meta["techniques"]
    assert (gcpl["number"], gcpl["name"], gcpl["abbreviation"], gcpl["sequences"]) == (
        1,
        "Galvanostatic Cycling with Potential Limitation",
        "GCPL",
        4,
    )
    parameters = gcpl["parameters"]
    assert parameters["Is"] == ["0.000", "-88.796", "88.796", "-88.796"]
    assert parameters["unit Is"] == ["mA", "µA", "µA", "µA"]
    assert parameters["EM (V)"] == ["0.000", "2.000", "3.800", "2.000"]
    assert parameters["nc cycles"] == ["0", "0", "0", "5"]
    assert parameters["goto Ns'"] == ["0", "0", "0", "2"]


def test_the_corpus_cell_setup_and_description(mps: Path) -> None:
    meta = extract(mps)
    assert meta["cell"]["Electrode surface area"] == "0.001 cm²"
    assert meta["cell"]["Mass of active material"] == "7000.000 mg; at x = 1.000"
    assert meta["cell"]["Characteristic mass"] == "0.001 g"
    assert "Electrolyte" not in meta["cell"]  # empty in this file
    assert meta["setup"]["Current amplifier"] == "CCH-1"
    assert meta["setup"]["Safety Limits"] == "Do not start on E overload"
    assert "Record Power" in meta["notes"]
    # "Acquisition started at : xo = 0.900" is the intercalation start, not a time.
    assert meta["cell"]["Acquisition started at"] == "xo = 0.900" and "acquisition" not in meta
    assert meta["instrument"] == {"name": "MPG-2", "model": "MPG-2", "manufacturer": "BioLogic"}
    assert meta["description"] == "BioLogic EC-Lab settings: GCPL on the MPG-2"
    assert "warnings" not in meta


NEWER = (
    "EC-LAB SETTING FILE\r\n\r\nNumber of linked techniques : 2\r\n\r\n"
    "EC-LAB for windows v11.43 (software)\r\nInternet server v11.40 (firmware)\r\n"
    "Command interpretor v11.40 (firmware)\r\n\r\n"
    "Filename : C:\\Users\\lab\\Documents\\EC-Lab\\Data\\cell7_ocv_peis.mps\r\n\r\n"
    # Channel, serial number and start as EC-Lab writes them in its text exports' headers.
    "Device : VMP3 (SN 0123)\r\nRun on channel : 3\r\nAcquisition started on : 03/04/2024 09:05:12.345\r\n"
    "Electrode connection : standard\r\nEwe ctrl range : min = -10.00 V, max = 10.00 V\r\n"
    "Electrode material : LiFePO4\r\nInitial state : pristine\r\nElectrolyte : 1 M LiPF6 in EC/DMC\r\n"
    "Comments : \r\nElectrode surface area : 1.130 cm²\r\nCharacteristic mass : 12.500 mg\r\n"
    "Cycle Definition : Charge/Discharge alternance\r\n\r\n"
    "Technique : 1\r\nOpen Circuit Voltage\r\n"
    + row("tR (h:m:s)", "0:10:0.0000")
    + row("dER/dt (mV/h)", "0.0")
    + row("E range min (V)", "-10.000")
    + "\r\nTechnique : 2\r\nPotentio Electrochemical Impedance Spectroscopy\r\n"
    + row("Mode", "Single sine")
    + row("E (V)", "0.0000")
    + row("vs.", "Eoc")
    + row("fi", "100.000")
    + row("unit fi", "kHz")
    + row("ff", "100.000")
    + row("unit ff", "mHz")
)


def test_a_newer_settings_file_with_versions_channel_and_start(tmp_path: Path) -> None:
    path = write(tmp_path / "cell7_ocv_peis.MPS", NEWER)  # Windows names it either way
    assert EXTRACTOR.accepts(path.name, path.read_bytes())
    meta = extract(path)
    assert meta["encoding"] == "utf-8"
    assert meta["versions"] == {
        "EC-LAB for windows": "11.43",
        "Internet server": "11.40",
        "Command interpretor": "11.40",
    }
    assert meta["instrument"] == {
        "name": "VMP3",
        "model": "VMP3",
        "manufacturer": "BioLogic",
        "serialNumber": "0123",
        "software": "EC-Lab 11.43",
    }
    assert meta["channel"] == "3"
    # EC-Lab writes month first: 03/04 is the 4th of March.
    assert meta["acquisition"] == {
        "start": "2024-03-04T09:05:12",
        "source": 'setting "Acquisition started on" (MM/DD/YYYY)',
    }
    assert [t["abbreviation"] for t in meta["techniques"]] == ["OCV", "PEIS"]
    assert meta["techniques"][1]["parameters"]["unit ff"] == ["mHz"]
    assert meta["cell"]["Electrolyte"] == "1 M LiPF6 in EC/DMC"
    assert meta["description"] == "BioLogic EC-Lab settings: OCV, PEIS on channel 3 of the VMP3"


def test_a_file_that_is_not_what_it_says(tmp_path: Path) -> None:
    other = write(tmp_path / "notes.mps", "Some other program's settings\n")
    assert not EXTRACTOR.accepts(other.name, other.read_bytes())
    assert not EXTRACTOR.accepts("settings.txt", NEWER.encode())
    with pytest.raises(ExtractionError, match="not an EC-Lab settings file"):
        EXTRACTOR.extract(Source(other, other.name, tmp_path), Budget(5))


def test_a_missing_technique_and_too_many_are_said(tmp_path: Path) -> None:
    lost = NEWER[: NEWER.index("\r\nTechnique : 2")]
    meta = extract(write(tmp_path / "lost.mps", lost))
    assert meta["warnings"] == ["the file says 2 linked technique(s) but holds 1"]
    many = "EC-LAB SETTING FILE\r\n" + "".join(
        f"Technique : {n}\r\nOpen Circuit Voltage\r\n" + row("tR (h:m:s)", "0:00:1.0000")
        for n in range(1, 100)
    )
    meta = extract(write(tmp_path / "many.mps", many))
    assert len(meta["techniques"]) == MAX_TECHNIQUES
    assert "techniques cut" in meta["warnings"][0]


FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LINES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "Technique : 1",
                "Technique : 99999999999999999999",
                "Device : VMP3 (SN",
                "Run on channel : ",
                "Acquisition started on : 13/45/2020 99:99:99",
                "Number of linked techniques : 7",
                " at x = 1",
                "\tDo not start",
                "EC-LAB for windows v (software)",
                "Ns" + " " * 18 + "0" + " " * 19 + "1",
            ]
        ),
        st.text(alphabet=st.sampled_from(list("ab :=()/.\t0123456789µ²-vVN")), max_size=80),
    ),
    max_size=60,
)


def run(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / "fuzz.mps", data)
        try:
            meta = EXTRACTOR.extract(Source(path, path.name, path.parent), Budget(10))
        except ExtractionError:
            return
    assert isinstance(meta["description"], str) and meta["description"].startswith("BioLogic EC-Lab settings")
    json.dumps(meta)  # what a sidecar can hold


@FUZZ
@given(
    lines=LINES, newline=st.sampled_from(["\r\n", "\n", "\r"]), encoding=st.sampled_from(["utf-8", "cp1252"])
)
def test_settings_like_text_gives_metadata_or_a_clean_error(
    lines: list[str], newline: str, encoding: str
) -> None:
    text = newline.join(["EC-LAB SETTING FILE", *lines])
    run(text.encode(encoding, errors="replace"))


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_after_the_first_line(data: bytes) -> None:
    run(b"EC-LAB SETTING FILE\r\n" + data)
