"""An extractor that fails never loses the file: it is ingested with its generic description and a
warning, and only content refused for safety is dead-lettered."""

from __future__ import annotations

import zipfile
from pathlib import Path

from agent.core.config import AgentConfig

from .conftest import REPO, dead_letters, read_crate, read_error_file, read_sidecar, run_scan, write


def with_rules(config: AgentConfig) -> AgentConfig:
    return config.model_copy(update={"rules_dir": REPO / "rules"})


async def test_a_file_its_extractor_cannot_read_is_ingested_with_a_warning(
    drop: Path, config: AgentConfig
) -> None:
    write(drop / "s" / "broken.jdx", "##TITLE= cut off here\n")  # no ##JCAMP-DX= label
    write(drop / "s" / "notes.txt", "fine\n")
    report = await run_scan(drop, config)
    assert report.ok and report.files_ingested == 2 and dead_letters(config) == []
    sidecar = read_sidecar(drop / "s" / "broken.jdx")
    failure = sidecar["metadata"]["extraction_error"]
    assert failure["extractor"] == "jcamp" and failure["error"] == "ExtractionError"
    assert "JCAMP" in failure["message"]
    assert sidecar["warnings"] == [f"the jcamp extractor could not read the file: {failure['message']}"]
    assert sidecar["encodingFormat"] == "chemical/x-jcamp-dx"  # the generic description stays
    assert "broken.jdx" in {e["@id"] for e in read_crate(drop / "s")["@graph"]}


async def test_a_rule_that_needs_the_extractors_field_names_the_extractors_error(
    drop: Path, config: AgentConfig
) -> None:
    write(drop / "s" / "broken.jdx", "##TITLE= cut off here\n")
    report = await run_scan(drop, with_rules(config))
    assert report.dead_lettered == 1
    error = read_error_file(drop / "s")
    assert error["errorClass"] == "ValidationFailedError"
    problems = {p["field"]: p["problem"] for p in error["problems"][0]["fields"]}
    assert set(problems) == {"data_type", "jcamp_version"}
    assert "the jcamp extractor could not read the file: " in problems["data_type"]
    assert "no ##JCAMP-DX= version" in problems["data_type"]
    assert "damaged" not in error["whatToDo"]


async def test_an_archive_that_is_not_one_is_kept_and_an_unsafe_one_is_refused(
    drop: Path, config: AgentConfig
) -> None:
    write(drop / "s" / "not-a-zip.eln", b"this is no ZIP archive")
    unsafe = drop / "s" / "escape.eln"
    with zipfile.ZipFile(unsafe, "w") as archive:
        archive.writestr("../../etc/cron.d/x", "* * * * * root true\n")
    report = await run_scan(drop, config)
    assert report.files_ingested == 1 and report.dead_lettered == 1
    kept = read_sidecar(drop / "s" / "not-a-zip.eln")
    assert kept["metadata"]["extraction_error"]["extractor"] == "eln"
    assert "not a readable ZIP archive" in kept["warnings"][0]
    refused = read_error_file(unsafe)
    assert refused["errorClass"] == "UnsafeArchiveError"
    assert "outside its folder" in refused["reason"]


async def test_xml_refused_for_safety_is_dead_lettered(drop: Path, config: AgentConfig) -> None:
    bomb = (
        '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n<r>&b;</r>\n'
    )
    write(drop / "s" / "scan.xrdml", bomb)
    report = await run_scan(drop, config)
    assert report.dead_lettered == 1
    assert read_error_file(drop / "s" / "scan.xrdml")["errorClass"] == "UnsafeInputError"
