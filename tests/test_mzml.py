"""The mzML extractor: real files from the corpus, hand-written documents for each rule, and fuzzing.

Expected corpus values were read from the files themselves (grep), not from the extractor.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.extractors import Budget, Source, run_extractor
from agent.extractors.base import ExtractionError, UnsafeInputError
from agent.extractors.mzml import TAIL_BYTES, MzmlExtractor
from agent.extractors.xmlformats import MAX_BYTES

from .conftest import CORPUS, write

MASS_SPEC = CORPUS / "instruments" / "mass_spec"
EXTRACTOR = MzmlExtractor()


def extract(path: Path) -> dict[str, Any]:
    return EXTRACTOR.extract(Source(path, path.name, path.parent), Budget(20))


def corpus(name: str) -> Path:
    path = MASS_SPEC / name
    if not path.exists():
        pytest.skip(f"corpus file {name} not found")
    return path


HEADER = """
  <cvList count="1"><cv id="MS" fullName="PSI-MS" URI="https://purl.obolibrary.org/obo/ms.obo"/></cvList>
  <fileDescription>
    <fileContent><cvParam cvRef="MS" accession="MS:1000580" name="MSn spectrum" value=""/></fileContent>
  </fileDescription>
  <softwareList count="1">
    <software id="acq" version="4.1"><cvParam cvRef="MS" accession="MS:1000532" name="Xcalibur"/></software>
  </softwareList>
  <instrumentConfigurationList count="1">
    <instrumentConfiguration id="IC">
      <cvParam cvRef="MS" accession="MS:1001742" name="LTQ Orbitrap Velos" value=""/>
      <softwareRef ref="acq"/>
    </instrumentConfiguration>
  </instrumentConfigurationList>
  <dataProcessingList count="1"><dataProcessing id="dp"/></dataProcessingList>
"""
SPECTRA = """
    <spectrumList count="2" defaultDataProcessingRef="dp">
      <spectrum index="0" id="scan=1" defaultArrayLength="0"><binaryDataArrayList count="0"/></spectrum>
      <spectrum index="1" id="scan=2" defaultArrayLength="0"><binaryDataArrayList count="0"/></spectrum>
    </spectrumList>
    <chromatogramList count="1" defaultDataProcessingRef="dp">
      <chromatogram index="0" id="TIC" defaultArrayLength="0"><binaryDataArrayList count="0"/></chromatogram>
    </chromatogramList>
"""
NS = "http://psi.hupo.org/ms/mzml"
RUN = 'id="run1" defaultInstrumentConfigurationRef="IC" startTimeStamp="2021-03-04T05:06:07Z"'


def mzml(header: str = HEADER, run: str = RUN, body: str = SPECTRA, *, index: str | None = None) -> str:
    """An mzML document; with ``index``, wrapped as indexedmzML with that index list."""
    doc = f'<mzML xmlns="{NS}" version="1.1.0" id="doc1">{header}<run {run}>{body}</run></mzML>'
    if index is not None:
        doc = f'<indexedmzML xmlns="{NS}">{doc}{index}</indexedmzML>'
    return f'<?xml version="1.0" encoding="utf-8"?>\n{doc}\n'


def test_accepts_mzml_in_any_case_but_not_mzxml() -> None:
    assert EXTRACTOR.accepts("run.mzML", b"")
    assert EXTRACTOR.accepts("RUN.MZML", b"")
    assert EXTRACTOR.accepts("a.b.mzml", b"")
    assert not EXTRACTOR.accepts("run.mzXML", b"<?xml")
    assert not EXTRACTOR.accepts("run.xml", b"<?xml")
    assert not EXTRACTOR.accepts("mzml", b"")


def test_example_mzml_q_exactive_run() -> None:
    meta = run_extractor(EXTRACTOR, Source(corpus("example.mzML"), "example.mzML", MASS_SPEC), 20)
    assert meta["extractor"] == "mzml"
    assert meta["mzmlVersion"] == "1.1.0"
    assert meta["mzmlId"] == meta["runId"] == "exp105-01-ds5562-Pos"
    assert meta["indexed"] is True
    # The declared count, although the file holds a subset of eleven spectra (see SOURCES.md).
    assert meta["spectrumCount"] == 2918
    assert meta["chromatogramCount"] == 1  # the TIC, after the spectra
    assert meta["fileContent"] == ["MS1 spectrum"]
    assert meta["sourceFiles"] == [
        {
            "name": "exp105-01-ds5562-Pos.raw",
            "location": "file:///C:/Xcalibur/data/exp105",
            "nativeIdFormat": "Thermo nativeID format",
            "fileFormat": "Thermo RAW file",
            "checksum": {"type": "SHA-1", "value": "40cf85e46ecda3d8d71e067fb090e51f75d9a4b0"},
        }
    ]
    assert meta["software"] == [
        {"id": "Xcalibur", "name": "Xcalibur", "version": "2.2-164600/2.2.1.1646"},
        {"id": "pwiz", "name": "ProteoWizard", "version": "3.0.3768"},
    ]
    assert meta["instrumentConfigurations"] == [
        {
            "id": "IC1",
            "model": "Q Exactive",  # through referenceableParamGroupRef "CommonInstrumentParams"
            "serialNumber": "Exactive Series slot 0244",
            "software": "Xcalibur",
            "components": {
                "source": ["electrospray ionization", "electrospray inlet"],
                "analyzer": ["quadrupole", "orbitrap"],
                "detector": ["inductive detector"],
            },
        }
    ]
    assert meta["dataProcessing"] == [{"id": "pwiz_Reader_Thermo_conversion", "software": ["pwiz"]}]
    assert meta["acquisition"] == {"start": "2013-09-10T10:31:08+00:00", "source": "run/@startTimeStamp"}
    assert meta["instrument"] == {
        "model": "Q Exactive",
        "serialNumber": "Exactive Series slot 0244",
        "manufacturer": "Thermo Fisher Scientific",  # from the Thermo RAW source file
        "software": "Xcalibur 2.2-164600/2.2.1.1646",
    }
    assert (
        meta["description"]
        == "mzML 1.1.0 mass spectrometry run on a Q Exactive: 2,918 spectra, 1 chromatogram"
    )
    assert "warnings" not in meta


def test_mini_chrom_mzml_holds_only_chromatograms() -> None:
    meta = extract(corpus("mini.chrom.mzML"))
    assert meta["mzmlVersion"] == "1.1.0"
    assert "mzmlId" not in meta  # <mzML> has no id, only accession=""
    assert meta["indexed"] is False
    assert meta["runId"] == "ru_0"
    assert meta["spectrumCount"] == 0  # no <spectrumList>: the chromatogram list comes first
    assert meta["chromatogramCount"] == 3
    assert meta["fileContent"] == ["mass spectrum"]
    assert meta["sourceFiles"][0]["checksum"] == {
        "type": "SHA-1",
        "value": "2ae9910d00d01bb67f7e3ccc9eba71add1bc2f20",
    }
    assert meta["samples"] == [{"id": "sa_0"}]  # name=""
    assert [s["name"] for s in meta["software"]] == [
        "Analyst",
        "custom unreleased software tool",
        "ProteoWizard",
        "FileConverter",
        "OpenSwathChromatogramExtractor",  # the value of a "custom unreleased software tool"
    ]
    # Only the generic "instrument model" term: the model is not named, so none is made up.
    assert meta["instrumentConfigurations"] == [{"id": "ic_0", "software": "so_in_0"}]
    assert meta["instrument"] == {"software": "Analyst"}  # version "unknown" left out
    assert "acquisition" not in meta  # the run has no startTimeStamp
    assert meta["description"] == "mzML 1.1.0 mass spectrometry run: 0 spectra, 3 chromatograms"
    assert "warnings" not in meta


def test_instrument_model_and_serial_through_a_referenceable_param_group(tmp_path: Path) -> None:
    header = """
      <referenceableParamGroupList count="1">
        <referenceableParamGroup id="common">
          <cvParam cvRef="MS" accession="MS:1000529" name="instrument serial number" value="SN-42"/>
          <cvParam cvRef="MS" accession="MS:1002416" name="Orbitrap Fusion" value=""/>
        </referenceableParamGroup>
      </referenceableParamGroupList>
      <instrumentConfigurationList count="2">
        <instrumentConfiguration id="other">
          <cvParam accession="MS:1000449" name="LTQ Orbitrap"/>
        </instrumentConfiguration>
        <instrumentConfiguration id="IC">
          <cvParam cvRef="MS" accession="MS:1000032" name="customization" value="extra lens"/>
          <referenceableParamGroupRef ref="common"/>
          <componentList count="3">
            <detector order="3"><cvParam accession="MS:1000624" name="inductive detector"/></detector>
            <source order="1"><cvParam accession="MS:1000073" name="electrospray ionization"/></source>
            <analyzer order="2"><cvParam accession="MS:1000484" name="orbitrap"/></analyzer>
          </componentList>
        </instrumentConfiguration>
      </instrumentConfigurationList>
    """
    meta = extract(write(tmp_path / "group.mzML", mzml(header)))
    # The run's default configuration, not the first; the customization is not the model.
    assert meta["instrument"] == {"model": "Orbitrap Fusion", "serialNumber": "SN-42"}
    assert meta["instrumentConfigurations"][1]["components"] == {
        "source": ["electrospray ionization"],
        "analyzer": ["orbitrap"],
        "detector": ["inductive detector"],
    }
    assert (
        meta["description"]
        == "mzML 1.1.0 mass spectrometry run on an Orbitrap Fusion: 2 spectra, 1 chromatogram"
    )


def test_a_vendor_model_term_names_the_manufacturer(tmp_path: Path) -> None:
    header = """
      <instrumentConfigurationList count="1"><instrumentConfiguration id="IC">
        <cvParam cvRef="MS" accession="MS:1000126" name="Waters instrument model" value="Xevo G3"/>
      </instrumentConfiguration></instrumentConfigurationList>
    """
    meta = extract(write(tmp_path / "waters.mzML", mzml(header)))
    assert meta["instrument"] == {"model": "Xevo G3", "manufacturer": "Waters"}


def test_mzml_1_0_software_params(tmp_path: Path) -> None:
    header = """
      <softwareList count="1"><software id="Xcalibur">
        <softwareParam cvRef="MS" accession="MS:1000532" name="Xcalibur" version="2.0.5"/>
      </software></softwareList>
      <instrumentConfigurationList count="1"><instrumentConfiguration id="IC">
        <cvParam cvRef="MS" accession="MS:1000449" name="LTQ Orbitrap"/>
        <instrumentSoftwareRef ref="Xcalibur"/>
      </instrumentConfiguration></instrumentConfigurationList>
    """
    run = 'id="r" instrumentConfigurationRef="IC" startTimeStamp="2008-01-02T03:04:05"'
    meta = extract(write(tmp_path / "old.mzML", mzml(header, run)))
    assert meta["instrument"] == {"model": "LTQ Orbitrap", "software": "Xcalibur 2.0.5"}


def test_an_indexed_mzml_wrapper(tmp_path: Path) -> None:
    index = (
        '<indexList count="1"><index name="spectrum"><offset idRef="scan=1">0</offset></index></indexList>'
    )
    meta = extract(write(tmp_path / "indexed.mzML", mzml(index=index)))
    assert meta["indexed"] is True
    assert (meta["mzmlId"], meta["runId"], meta["spectrumCount"], meta["chromatogramCount"]) == (
        "doc1",
        "run1",
        2,
        1,
    )
    assert meta["instrument"] == {"model": "LTQ Orbitrap Velos", "software": "Xcalibur 4.1"}
    assert meta["fileContent"] == ["MSn spectrum"]
    assert "warnings" not in meta


def test_the_chromatogram_count_of_a_long_indexed_file_comes_from_its_index(tmp_path: Path) -> None:
    # A spectrum index longer than the tail that is read: the chromatogram list itself is out of
    # reach, the chromatogram index (at the very end) is not.
    offsets = "".join(f'<offset idRef="scan={i}">{i}</offset>\n' for i in range(TAIL_BYTES // 30))
    chromatograms = '<offset idRef="TIC">1</offset><offset idRef="BPC">2</offset>'
    index = (
        f'<indexList count="2"><index name="spectrum">{offsets}</index>'
        f'<index name="chromatogram">{chromatograms}</index></indexList>'
        "<indexListOffset>0</indexListOffset><fileChecksum>0</fileChecksum>"
    )
    meta = extract(write(tmp_path / "long.mzML", mzml(index=index)))
    assert (meta["spectrumCount"], meta["chromatogramCount"]) == (2, 2)


@pytest.mark.parametrize(
    ("stamp", "start"),
    [
        ("2021-03-04T05:06:07Z", "2021-03-04T05:06:07+00:00"),
        ("2021-03-04T05:06:07.875+02:00", "2021-03-04T05:06:07+02:00"),
        ("2021-03-04T05:06:07-05:30", "2021-03-04T05:06:07-05:30"),
        ("2021-03-04T05:06:07", "2021-03-04T05:06:07"),  # no zone: the agent applies the site's
    ],
)
def test_start_time_keeps_the_files_offset(tmp_path: Path, stamp: str, start: str) -> None:
    meta = extract(write(tmp_path / "t.mzML", mzml(run=f'id="r" startTimeStamp="{stamp}"')))
    assert meta["acquisition"] == {"start": start, "source": "run/@startTimeStamp"}


@pytest.mark.parametrize("stamp", ["yesterday", "2021-13-04T05:06:07Z", "2021-03-04", "04.03.2021 05:06"])
def test_a_start_time_that_is_no_date_time_is_a_warning(tmp_path: Path, stamp: str) -> None:
    meta = extract(write(tmp_path / "t.mzML", mzml(run=f'id="r" startTimeStamp="{stamp}"')))
    assert "acquisition" not in meta
    assert meta["warnings"] == [f"run/@startTimeStamp {stamp!r} is not a date and time: none read."]


def test_a_count_that_is_not_a_number_is_a_warning(tmp_path: Path) -> None:
    body = SPECTRA.replace('spectrumList count="2"', 'spectrumList count="many"')
    meta = extract(write(tmp_path / "c.mzML", mzml(body=body)))
    assert "spectrumCount" not in meta
    assert meta["warnings"] == ["spectrumList/@count is 'many', not a number of items."]
    assert meta["description"] == "mzML 1.1.0 mass spectrometry run on a LTQ Orbitrap Velos: 1 chromatogram"


def test_a_dtd_with_an_entity_is_refused_for_safety(tmp_path: Path) -> None:
    doc = mzml(header=HEADER.replace("PSI-MS", "&x;")).replace(
        "\n", '\n<!DOCTYPE mzML [<!ENTITY x "PSI-MS">]>\n', 1
    )
    with pytest.raises(UnsafeInputError, match="refused for safety"):
        extract(write(tmp_path / "dtd.mzML", doc))


def test_a_document_cut_after_the_run_start_still_gives_its_metadata(tmp_path: Path) -> None:
    doc = mzml()
    cut = doc[: doc.index("<spectrumList") + len("<spectrumLi")]
    meta = extract(write(tmp_path / "cut.mzML", cut))
    assert meta["runId"] == "run1"
    assert meta["acquisition"]["start"] == "2021-03-04T05:06:07+00:00"
    assert meta["instrument"]["model"] == "LTQ Orbitrap Velos"
    assert len(meta["warnings"]) == 1
    assert meta["warnings"][0].startswith("The document is cut off or damaged after the start of the run")


def test_a_real_file_cut_among_its_spectra_is_called_incomplete(tmp_path: Path) -> None:
    data = corpus("example.mzML").read_bytes()
    meta = extract(write(tmp_path / "example.mzML", data[: len(data) // 2]))
    assert meta["spectrumCount"] == 2918
    assert "chromatogramCount" not in meta  # its list was in the half that is missing
    assert meta["warnings"] == [
        "The document does not end with </indexedmzML>: the file is incomplete "
        "(still being written, or cut off when it was copied)."
    ]


def test_a_document_cut_after_its_run_is_called_incomplete(tmp_path: Path) -> None:
    doc = mzml(body='<spectrumList count="0"/>').removesuffix("</mzML>\n")
    meta = extract(write(tmp_path / "cut.mzML", doc))
    assert (meta["spectrumCount"], meta["chromatogramCount"]) == (0, 0)
    assert meta["warnings"] == [
        "The document does not end with </mzML>: the file is incomplete "
        "(still being written, or cut off when it was copied)."
    ]


def test_a_document_cut_in_the_header_is_an_error(tmp_path: Path) -> None:
    doc = mzml()
    cut = doc[: doc.index("<instrumentConfigurationList") + 40]
    with pytest.raises(ExtractionError, match="breaks off in the mzML header"):
        extract(write(tmp_path / "cut.mzML", cut))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not well-formed XML"),
        (b"\x89HDF\r\n\x1a\n" + bytes(100), "not well-formed XML"),
        (
            b"<?xml version='1.0'?><mzXML><msRun scanCount='3'/></mzXML>",
            "not mzML: its root element is <mzXML>",
        ),
        (b"<mzML version='1.1.0'><cvList count='0'/></mzML>", "has no <run>"),
    ],
)
def test_what_is_not_mzml_is_an_error(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(ExtractionError, match=message):
        extract(write(tmp_path / "x.mzML", data))


def test_a_header_longer_than_the_bound_is_not_read(tmp_path: Path) -> None:
    huge = f'<dataProcessingList count="1"><dataProcessing id="{"x" * MAX_BYTES}"/></dataProcessingList>'
    with pytest.raises(ExtractionError, match="header is over 4 MiB"):
        extract(write(tmp_path / "huge.mzML", mzml(HEADER + huge)))


def _bytes_read() -> int:
    io_stats = Path("/proc/self/io")
    if not io_stats.exists():
        pytest.skip("no /proc/self/io to count the bytes read")
    fields = dict(line.split(": ") for line in io_stats.read_text().splitlines())
    return int(fields["rchar"])


def test_a_large_binary_array_after_the_lists_is_never_read(tmp_path: Path) -> None:
    blob = 50 << 20
    doc = mzml(body="@SPECTRA@").encode()
    before, after = doc.split(b"@SPECTRA@")
    path = tmp_path / "large.mzML"
    with path.open("wb") as f:
        f.write(before + b'<spectrumList count="1"><spectrum index="0" id="scan=1" defaultArrayLength="1">')
        f.write(b'<binaryDataArrayList count="1"><binaryDataArray encodedLength="52428800"><binary>')
        for _ in range(blob >> 20):
            f.write(b"A" * (1 << 20))
        f.write(b"</binary></binaryDataArray></binaryDataArrayList></spectrum></spectrumList>")
        f.write(b'<chromatogramList count="7"></chromatogramList>' + after)
    start = _bytes_read()
    meta = extract(path)
    read = _bytes_read() - start
    assert (meta["spectrumCount"], meta["chromatogramCount"]) == (1, 7)
    assert "warnings" not in meta
    # The header up to the first spectrum (a read-ahead of 64 KiB at most) and the last MiB.
    assert read < TAIL_BYTES + (512 << 10), f"read {read:,} bytes of a {blob:,}-byte array"


# Whatever the bytes, metadata or an ExtractionError: never another exception.
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def outcome(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / "fuzz.mzML", data)
        try:
            result = extract(path)
        except ExtractionError:
            return
        assert isinstance(result, dict)
        assert isinstance(result.get("description"), str)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    outcome(data)


@FUZZ
@given(name=st.sampled_from(["example.mzML", "mini.chrom.mzML"]), cut=st.floats(0.0, 1.0))
def test_truncated_real_files(name: str, cut: float) -> None:
    data = corpus(name).read_bytes()
    outcome(data[: int(len(data) * cut)])


@FUZZ
@given(
    name=st.sampled_from(["example.mzML", "mini.chrom.mzML"]),
    changes=st.lists(st.tuples(st.floats(0, 0.05), st.integers(0, 255)), min_size=1, max_size=16),
)
def test_real_files_with_bytes_changed_in_their_header(name: str, changes: list[tuple[float, int]]) -> None:
    data = bytearray(corpus(name).read_bytes())
    for where, value in changes:  # the first 5 % of each file is its header, where the parsing is
        data[int(where * len(data))] = value
    outcome(bytes(data))


@FUZZ
@given(
    parts=st.lists(
        st.sampled_from(
            [
                HEADER,
                SPECTRA,
                "<run id='r' startTimeStamp='2020-02-30T00:00:00Z'>",
                "<spectrumList count='-1'>",
                "<chromatogramList count='1e9'>",
                "<instrumentConfiguration id='IC'><componentList><source order='x'/></componentList>",
                "<referenceableParamGroupRef ref='nowhere'/>",
                "<cvParam accession='MS:1000031' name='instrument model'/>",
                "</run>",
                "</mzML>",
                "<index name='chromatogram'><offset>1</offset>",
                "&amp;",
                "<![CDATA[</mzML>]]>",
            ]
        ),
        max_size=12,
    )
)
def test_mzml_shaped_pieces_in_any_order(parts: list[str]) -> None:
    outcome(("<?xml version='1.0'?><indexedmzML><mzML version='1.1.0'>" + "".join(parts)).encode())
