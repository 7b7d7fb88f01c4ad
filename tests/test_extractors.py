"""Every extractor against the real corpus, with real values read from real files."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from agent.core.config import AgentConfig
from agent.extractors import Source, UnsafeArchiveError, choose, detect, load_extractors, run_extractor
from agent.extractors.base import ExtractionError
from agent.extractors.vendorheader import parse_vendor_date

from .conftest import CORPUS, read_crate, read_error_file, read_sidecar, run_scan, write

EXTRACTORS = load_extractors()


def extract(path: Path) -> dict[str, Any]:
    head = path.read_bytes()[:8192]
    extractor = choose(EXTRACTORS, path.name, head)
    assert extractor is not None, f"no extractor for {path.name}"
    return run_extractor(extractor, Source(path, path.name, path.parent), 60)


def corpus(rel: str) -> Path:
    path = CORPUS / rel
    if not path.exists():
        pytest.skip(f"corpus file {rel} not found")
    return path


def test_tecan_plate_reader_header_and_read_date() -> None:
    meta = extract(corpus("instruments/plate_reader/200228_example_data.csv"))
    assert meta["extractor"] == "tabular" and meta["encoding"] == "utf-8-sig"
    assert meta["header"]["Device"] == "Spark"
    assert meta["header"]["Application"] == "SparkControl V2.3"
    read = next(d for d in meta["dates"] if d["field"] == "Date")
    assert read["iso"] == "2020-02-28T09:11:00"  # "28/02/2020" + "9:11 AM"
    assert "day-first" in read["dayMonthOrder"]
    # Four reads (OD600, OD700, GFP, mCherry), one table each: the first is profiled, not a mix.
    assert meta["tables"] == 4
    assert meta["rowCount"] == 98  # Time, Temperature and the 96 wells


def test_uvvis_export_columns_units_and_profile() -> None:
    meta = extract(corpus("instruments/uvvis_timeseries/1908047U1_0000.Raw8.TXT"))
    assert meta["delimiter"] == ";" and meta["rowCount"] == 1921
    wave = meta["columns"][0]
    assert (wave["name"], wave["unit"], wave["type"]) == ("Wave", "nm", "number")
    assert wave["min"] == pytest.approx(128.909)
    assert meta["header"]["Integration time [ms]"] == "1.500"


def test_xrdml_scan_timestamps_and_instrument() -> None:
    meta = extract(corpus("instruments/xrd_session/Scan_C5.xrdml"))
    assert meta["root"] == "xrdMeasurements"
    assert meta["namespace"] == "http://www.xrdml.com/XRDMeasurement/1.5"
    assert (meta["start"], meta["end"]) == ("2020-11-06T19:09:32+00:00", "2020-11-06T19:24:12+00:00")
    assert meta["source"].startswith("Empyrean Cu LFF")


@pytest.mark.parametrize(
    ("rel", "title", "version", "data_type"),
    [
        ("instruments/jcamp/acetone.jdx", "Acetone", "4.24", "INFRARED SPECTRUM"),
        ("instruments/jcamp/carbon monoxide.jdx", "CARBON MONOXIDE", "4.24", "INFRARED SPECTRUM"),
        (
            "instruments/jcamp/TESTSPEC.DX",
            "ETHYLBENZOL/CDCL3",
            "5.00",
            "NMR SPECTRUM",
        ),  # lines start with a space
        ("instruments/jcamp/toluene.jdx", "Toluene", "4.24", "UV/VIS SPECTRUM"),
        ("instruments/jcamp/ethanol_ms.jdx", "ethanol", "5.00", "MASS SPECTRUM"),
    ],
)
def test_jcamp_titles(rel: str, title: str, version: str, data_type: str) -> None:
    meta = extract(corpus(rel))
    assert (meta["title"], meta["jcampVersion"], meta["dataType"]) == (title, version, data_type)


def test_jcamp_look_alike_is_read_as_text_not_jcamp() -> None:
    meta = extract(corpus("instruments/ftir/[FTIRText]020.txt"))
    assert meta["extractor"] == "tabular" and meta["header"]["TITLE"] == "No Description"
    assert meta["rowCount"] == 27


@pytest.mark.parametrize(
    ("rel", "publisher", "experiment"),
    [
        ("eln/elabftw/export.eln", "eLabFTW", None),
        ("eln/SampleDB/sampledb_export.eln", "SampleDB", None),
        ("eln/PASTA/PASTA.eln", "PASTA ELN", None),
        ("eln/kadi4mat/records-example.eln", "Kadi4Mat", None),
        ("eln/RSpace/RSpace-2023-12-08-14-44-xml-SELECTION-c0bEtpHcnNe-HA.eln", "RSpace", None),
        ("eln/OpenSemanticLab/MinimalExample.osl.eln", "OpenSemanticLab", None),
    ],
)
def test_every_eln_export_parses_and_its_hashes_verify(
    rel: str, publisher: str, experiment: str | None
) -> None:
    meta = extract(corpus(rel))
    assert meta["publisher"]["name"] == publisher
    assert meta["experimentCount"] >= 1
    assert meta["checksums"]["allMatch"] and meta["checksums"]["problems"] == []


def test_eln_experiment_names() -> None:
    elab = extract(corpus("eln/elabftw/export.eln"))
    names = {e.get("name") for e in elab["experiments"]}
    assert {"Gold master experiment", "Synthesis of Aspirin"} <= names
    sampledb = extract(corpus("eln/SampleDB/sampledb_export.eln"))
    assert sorted(e["name"] for e in sampledb["experiments"]) == [
        "Measurement",
        "Measurement",
        "OMBE-1",
        "OMBE-1",
    ]
    assert sampledb["signature"]["present"]  # SampleDB signs its exports (minisign)


def test_a_tampered_member_is_reported(tmp_path: Path) -> None:
    original = corpus("eln/PASTA/PASTA.eln")
    tampered = tmp_path / "tampered.eln"
    with zipfile.ZipFile(original) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("simple.csv"):
                data = data.replace(b"1", b"2", 1)
            dst.writestr(info, data)
    meta = extract(tampered)
    problems = meta["checksums"]["problems"]
    assert [p["problem"] for p in problems] == ["mismatch"]
    assert problems[0]["file"].endswith("simple.csv")
    assert not meta["checksums"]["allMatch"]


def test_an_md5_declared_as_sha256_is_called_out(tmp_path: Path) -> None:
    crate = {
        "@context": "https://w3id.org/ro/crate/1.1/context",
        "@graph": [
            {"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "about": {"@id": "./"}},
            {"@id": "./", "@type": "Dataset", "name": "x", "hasPart": [{"@id": "./a.txt"}]},
            {"@id": "./a.txt", "@type": "File", "sha256": hashlib.md5(b"a").hexdigest()},
        ],
    }
    path = tmp_path / "md5.eln"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("export/ro-crate-metadata.json", json.dumps(crate))
        z.writestr("export/a.txt", b"a")
    problem = extract(path)["checksums"]["problems"][0]
    assert "MD5" in problem["problem"]


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../escape.txt", "outside its folder"),
        ("/etc/passwd", "outside its folder"),
        ("export/../../x", "outside its folder"),
    ],
)
def test_unsafe_member_paths_are_refused(tmp_path: Path, member: str, message: str) -> None:
    path = tmp_path / "bad.eln"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("export/ro-crate-metadata.json", '{"@graph": []}')
        z.writestr(member, b"x")
    with pytest.raises(UnsafeArchiveError, match=message):
        extract(path)


def test_a_zip_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    path = tmp_path / "bomb.eln"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("export/ro-crate-metadata.json", '{"@graph": []}')
        with z.open("export/zeros.bin", "w", force_zip64=True) as f:
            for _ in range(64):
                f.write(b"\0" * (1 << 20))  # 64 MiB of zeros compress to ~64 KiB
    assert path.stat().st_size < 1 << 20
    with pytest.raises(UnsafeArchiveError, match="ZIP bomb"):
        extract(path)


def test_an_encrypted_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "enc.eln"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("export/ro-crate-metadata.json", '{"@graph": []}')
        z.writestr("export/secret.txt", b"x")
    # zipfile cannot encrypt; set the encryption flag in the member's local and central headers,
    # as an encrypting zip tool would.
    data = bytearray(path.read_bytes())
    name = b"export/secret.txt"
    for signature, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            if data[start + name_at : start + name_at + len(name)] == name:
                data[start + flag_at] |= 0x1
            start += 4
    path.write_bytes(bytes(data))
    with pytest.raises(UnsafeArchiveError, match="encrypted"):
        extract(path)


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    entities = "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10)
    )
    doc = (
        f'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n{entities}]>\n<lolz>&lol9;</lolz>\n'
    )
    path = write(tmp_path / "laughs.xml", doc)
    with pytest.raises(ExtractionError, match="refused for safety"):
        extract(path)


def test_external_entities_are_never_fetched(tmp_path: Path) -> None:
    doc = '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<x>&e;</x>\n'
    path = write(tmp_path / "xxe.xml", doc)
    with pytest.raises(ExtractionError, match="refused for safety"):
        extract(path)


def test_a_jcamp_file_with_no_header(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.jdx", "1 2 3\n4 5 6\n")
    with pytest.raises(ExtractionError, match="no JCAMP-DX header"):
        extract(path)


def test_a_csv_that_is_one_huge_line(tmp_path: Path) -> None:
    path = tmp_path / "one-line.csv"
    with path.open("wb") as f:
        for _ in range(100):
            f.write(b"1," * (1 << 19))  # 100 MiB, no line break
    with pytest.raises(ExtractionError, match="no line break"):
        extract(path)


@pytest.mark.parametrize(
    ("value", "time", "iso", "order"),
    [
        ("28/02/2020", "9:11 AM", "2020-02-28T09:11:00", "day-first"),
        ("02/28/2020", "9:11 PM", "2020-02-28T21:11:00", "month-first"),
        ("03/04/2020", None, "2020-04-03", "ambiguous"),
        ("2020-11-06", None, "2020-11-06", None),
        ("10/26/20", None, "2020-10-26", "month-first"),
    ],
)
def test_vendor_dates_become_iso_with_the_ambiguity_noted(
    value: str, time: str | None, iso: str, order: str | None
) -> None:
    parsed = parse_vendor_date(value, time)
    assert parsed is not None and parsed["iso"] == iso
    assert (order is None and "dayMonthOrder" not in parsed) or order in parsed["dayMonthOrder"]


@pytest.mark.parametrize(
    ("name", "head", "media", "pronom"),
    [
        ("x.pdf", b"%PDF-1.4\n", "application/pdf", "fmt/18"),
        ("x.h5", b"\x89HDF\r\n\x1a\nrest", "application/x-hdf5", None),
        ("x.eln", b"PK\x03\x04rest", "application/vnd.eln+zip", "x-fmt/263"),
        ("x.csv", b"a,b\n1,2\n", "text/csv", "x-fmt/18"),
        ("x.mpr", b"BIO-LOGIC MODULAR FILE\x1a", "application/octet-stream", None),
        ("x.sta", b"\x00\x00\x01\x02", "application/octet-stream", None),
        ("x.unknown", b"plain words\n", "text/plain", "x-fmt/111"),
        ("x.xrdml", b'<?xml version="1.0"?><a/>', "application/xml", "fmt/101"),
    ],
)
def test_generic_detection(name: str, head: bytes, media: str, pronom: str | None) -> None:
    detected = detect(name, head)
    assert (detected.media_type, detected.pronom) == (media, pronom)


def test_hdf5_nexus_entry_and_a_missing_external_link(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "scan.nxs"
    with h5py.File(path, "w") as f:
        f.attrs["creator"] = "beamline software 1.2"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["title"] = "powder scan"
        entry["start_time"] = "2026-03-14T10:00:00Z"
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        instrument["name"] = "I11"
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = "NXsample"
        entry["data"] = h5py.ExternalLink("detector_0001.h5", "/entry/data")
    meta = extract(path)
    assert meta["attributes"]["creator"] == "beamline software 1.2"
    nx = meta["nexusEntries"][0]
    assert (nx["title"], nx["start_time"], nx["instrument"], nx["sample"]) == (
        "powder scan",
        "2026-03-14T10:00:00Z",
        "I11",
        "sample",
    )
    assert meta["missingExternalLinks"] == [
        {"name": "entry/data", "file": "detector_0001.h5", "path": "/entry/data"}
    ]


async def test_scanning_the_corpus_puts_metadata_in_sidecars_and_crates(
    tmp_path: Path, config: AgentConfig
) -> None:
    if not CORPUS.is_dir():
        pytest.skip("corpus not found")
    drop = tmp_path / "drop"
    shutil.copytree(CORPUS / "instruments", drop)
    for p in drop.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    report = await run_scan(drop, config)
    assert report.ok, report
    sidecar = read_sidecar(drop / "xrd_session" / "Scan_C5.xrdml")
    assert sidecar["metadata"]["extractor"] == "xrdml"
    assert sidecar["dateCreated"] == "2020-11-06T19:09:32+00:00"
    assert sidecar["metadata"]["format"]["pronom"] == "fmt/101"
    crate = read_crate(drop / "uvvis_timeseries")
    entity = next(n for n in crate["@graph"] if n["@id"] == "1908047U1_0000.Raw8.TXT")
    graph = {n["@id"]: n for n in crate["@graph"]}
    wave = graph[entity["variableMeasured"][0]["@id"]]
    assert (wave["@type"], wave["name"], wave["unitText"]) == ("PropertyValue", "Wave", "nm")
    assert wave["minValue"] == pytest.approx(128.909)
    assert {"@id": "https://www.nationalarchives.gov.uk/PRONOM/x-fmt/111"} in entity["encodingFormat"]


async def test_a_bad_file_is_dead_lettered_and_the_rest_of_its_session_ingested(
    drop: Path, config: AgentConfig
) -> None:
    write(drop / "run" / "good.csv", "a,b\n1,2\n3,4\n")
    with zipfile.ZipFile(drop / "run" / "evil.eln", "w") as z:
        z.writestr("../../outside.txt", b"x")
    report = await run_scan(drop, config)
    assert report.files_ingested == 1 and report.dead_lettered == 1
    error = read_error_file(drop / "run" / "evil.eln")
    assert error["errorClass"] == "UnsafeArchiveError" and "outside its folder" in error["reason"]
    assert not (drop.parent / "outside.txt").exists()
    good = read_sidecar(drop / "run" / "good.csv")
    assert good["metadata"]["rowCount"] == 2


def test_a_site_extractor_registered_by_entry_point_is_asked_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real distribution on sys.path, as `pip install lab-extractors` would leave it.
    site = tmp_path / "site"
    (site / "lab_extractors-1.0.dist-info").mkdir(parents=True)
    (site / "lab_extractors-1.0.dist-info" / "METADATA").write_text("Name: lab-extractors\nVersion: 1.0\n")
    (site / "lab_extractors-1.0.dist-info" / "entry_points.txt").write_text(
        "[fair_agent.extractors]\nbiologic = lab_extractors:BiologicSettings\n"
    )
    (site / "lab_extractors.py").write_text(
        "class BiologicSettings:\n"
        "    name = 'biologic-settings'\n"
        "    def accepts(self, name, head):\n"
        "        return head.startswith(b'EC-LAB SETTING FILE')\n"
        "    def extract(self, source, budget):\n"
        "        return {'technique': source.path.read_bytes().split(b'\\n')[0].decode().strip()}\n"
    )
    monkeypatch.syspath_prepend(str(site))
    extractors = load_extractors()
    assert extractors[0].name == "biologic-settings"
    path = write(tmp_path / "settings.mps", b"EC-LAB SETTING FILE\r\nmore\n")
    chosen = choose(extractors, path.name, path.read_bytes())
    assert chosen is not None and chosen.name == "biologic-settings"
    meta = run_extractor(chosen, Source(path, path.name, tmp_path), 5)
    assert meta == {"extractor": "biologic-settings", "technique": "EC-LAB SETTING FILE"}


def test_two_members_with_one_name_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.eln"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("export/ro-crate-metadata.json", '{"@graph": []}')
        z.writestr("export/a.txt", b"checked")
        with pytest.warns(UserWarning, match="Duplicate name"):
            z.writestr("export/a.txt", b"extracted")
    with pytest.raises(UnsafeArchiveError, match="two members named"):
        extract(path)


def test_eln_authors_are_named(tmp_path: Path) -> None:
    elab = extract(corpus("eln/elabftw/export.eln"))
    authors = {a for e in elab["experiments"] for a in e.get("author", [])}
    assert "Nicola Mohr" in authors and not any(a.startswith("person://") for a in authors)


def test_a_wide_table_is_profiled_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    with path.open("w") as f:
        f.write(",".join(f"c{i}" for i in range(3000)) + "\n")
        for row in range(200):
            f.write(",".join(str(row) for _ in range(3000)) + "\n")
    meta = extract(path)
    assert meta["rowCount"] == 200 and len(meta["columns"]) == 3000


def test_an_oversized_xml_text_node_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.xrdml"
    with path.open("w") as f:
        f.write('<?xml version="1.0"?><xrdMeasurements><scan><header><startTimeStamp>2020-01-01T00:00:00Z')
        f.write("</startTimeStamp></header><counts>")
        for _ in range(40):
            f.write("1 " * (1 << 19))  # 40 MiB of counts
        f.write("</counts></scan></xrdMeasurements>")
    meta = extract(path)
    assert meta["start"] == "2020-01-01T00:00:00Z" and "truncated" in meta
