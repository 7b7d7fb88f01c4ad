"""The shared corpus of real third-party exports, scanned as a lab would drop it."""

from __future__ import annotations

from pathlib import Path

from agent.core.config import AgentConfig

from .conftest import copy_corpus, read_crate, read_sidecar, run_scan, sha256_of, validate_crates


async def test_corpus_sidecars_carry_true_hashes_and_crates_validate(
    tmp_path: Path, config: AgentConfig
) -> None:
    drop = copy_corpus(tmp_path / "drop")
    data_files = sorted(p for p in drop.rglob("*") if p.is_file())
    # Each of eln/ and instruments/ is a drop folder; its sub-folders (one per ELN or
    # instrument) are the sessions.
    for root in ("eln", "instruments"):
        report = await run_scan(drop / root, config)
        assert report.ok, report
    assert len(data_files) >= 30
    for path in data_files:
        meta = read_sidecar(path)
        assert meta["sha256"] == sha256_of(path), path
    for root in ("eln", "instruments"):
        for folder in (drop / root).iterdir():
            crate = read_crate(folder)
            root_entity = next(n for n in crate["@graph"] if n["@id"] == "./")
            assert len(root_entity["hasPart"]) == sum(1 for p in data_files if p.is_relative_to(folder))
    # Formats with their own extractor are read by it, and say what they hold in the crate.
    mps = next((drop / "instruments" / "echem").glob("*.mps"))
    assert read_sidecar(mps)["metadata"]["extractor"] == "biologic"
    entity = next(n for n in read_crate(mps.parent)["@graph"] if n["@id"] == mps.name)
    assert entity["description"].startswith("BioLogic EC-Lab settings: GCPL")
    # The validator takes seconds per crate: two sessions with awkward names, not all of them.
    for result in validate_crates([drop / "instruments" / "ftir", drop / "eln" / "elabftw"]):
        assert result.returncode == 0, result.stdout + result.stderr
