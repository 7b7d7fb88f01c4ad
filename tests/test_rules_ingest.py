"""Rules end to end: real folders scanned with the shipped rules and with drift policies."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from agent.core.config import AgentConfig
from agent.core.naming import CRATE_NAME, SESSION_DOCUMENTS, error_name, is_own_output, sidecar_name
from agent.ledger import Ledger
from agent.service.daemon import Service

from .conftest import (
    CORPUS,
    REPO,
    agent_cli,
    copy_corpus,
    dead_letters,
    live_config,
    opened_db,
    read_crate,
    read_error_file,
    read_sidecar,
    run_scan,
    validate_crate,
    wait_for,
    write,
)

RULES = REPO / "rules"


def with_rules(config: AgentConfig, rules: Path = RULES) -> AgentConfig:
    return config.model_copy(update={"rules_dir": rules})


async def test_sample_data_passes_except_the_session_that_fails_validation(
    tmp_path: Path, config: AgentConfig
) -> None:
    drop = tmp_path / "drop"
    shutil.copytree(REPO / "sample_data", drop)
    config = with_rules(config)
    report = await run_scan(drop, config)
    assert report.files_ingested == 6 and report.dead_lettered == 2

    alice = read_sidecar(drop / "EXP-000123_alice" / "OD600_kinetics.csv")
    assert alice["datasetType"] == "plate-reader-kinetics"
    assert alice["validation"] == {
        "status": "valid",
        "rule": "platemaster-od600",
        "datasetType": "plate-reader-kinetics",
    }
    assert alice["dataset"]["experiment_id"] == "EXP-000123"
    assert alice["dataset"]["acquisition_date"] == "2026-03-14T09:41:00+01:00"
    assert alice["dateCreated"] == "2026-03-14T09:41:00+01:00"
    assert alice["instrument"]["@type"] == "IndividualProduct"
    assert alice["instrument"]["serialNumber"] == "PMN-20419"
    assert alice["creator"][0]["@id"] == "https://orcid.org/0000-0002-1825-0097"
    assert alice["license"]["@id"] == "https://creativecommons.org/licenses/by/4.0/"
    assert alice["drift"]["status"] == "learning"
    assert read_sidecar(drop / "EXP-000125_notebook.eln")["datasetType"] == "eln-export"

    crate = read_crate(drop / "EXP-000123_alice")
    graph = {e["@id"]: e for e in crate["@graph"]}
    action = graph["#fair-agent-ingest"]
    assert action["agent"] == {"@id": "#fair-agent"}
    assert action["instrument"] == {"@id": "#instrument-platemaster-nova-lab-2-14-pmn-20419"}
    assert action["startTime"] == "2026-03-14T09:41:00+01:00"
    assert graph["./"]["license"] == {"@id": "https://creativecommons.org/licenses/by/4.0/"}
    assert graph["./"]["creator"] == {"@id": "https://orcid.org/0000-0002-1825-0097"}
    result = validate_crate(drop / "EXP-000123_alice")
    assert result.returncode == 0, result.stdout + result.stderr

    # The rejected session: nothing written in it, one error file beside it, field by field.
    carol = drop / "EXP-000126_carol"
    assert sorted(p.name for p in carol.iterdir()) == ["OD600_kinetics.csv", "notes.md"]
    error = read_error_file(drop / "EXP-000126_carol")
    assert error["errorClass"] == "ValidationFailedError" and error["category"] == "terminal"
    assert error["filesHeldBack"] == ["OD600_kinetics.csv", "notes.md"]
    (problem,) = error["problems"]
    assert problem["file"] == "OD600_kinetics.csv"
    assert problem["rule"] == "platemaster-od600 (rules/platemaster-od600.toml)"
    assert [f["field"] for f in problem["fields"]] == ["wavelength_nm", "temperature_c"]
    assert "out of range" in problem["fields"][1]["problem"]
    assert "header.Wavelength [nm]" in problem["fields"][0]["lookedIn"]
    assert dead_letters(config) == [
        ("EXP-000126_carol/OD600_kinetics.csv", "terminal", "ValidationFailedError"),
        ("EXP-000126_carol/notes.md", "terminal", "ValidationFailedError"),
    ]

    # Unchanged, it stays rejected without being read again.
    again = await run_scan(drop, config)
    assert again.files_hashed == 0 and again.dead_lettered == 2

    # A new file does not slip in past the rejection: the session is judged whole again.
    write(carol / "extra.md", "more notes\n")
    report = await run_scan(drop, config)
    assert report.files_ingested == 0 and report.dead_lettered == 3
    assert sorted(p.name for p in carol.iterdir()) == ["OD600_kinetics.csv", "extra.md", "notes.md"]
    assert read_error_file(drop / "EXP-000126_carol")["filesHeldBack"] == [
        "OD600_kinetics.csv",
        "extra.md",
        "notes.md",
    ]

    # The person fixes the export; the next look ingests the whole session (the files held back
    # with it included), and the error file goes.
    csv = carol / "OD600_kinetics.csv"
    fixed = csv.read_text(encoding="utf-8").replace(
        "Temperature [°C]: 95.0", "Wavelength [nm]: 600\nTemperature [°C]: 42.0"
    )
    csv.write_text(fixed, encoding="utf-8")
    report = await run_scan(drop, config)
    assert report.ok and report.files_ingested == 3, report
    assert read_sidecar(csv)["dataset"]["temperature_c"] == 42.0
    assert (carol / CRATE_NAME).exists() and (carol / sidecar_name("notes.md")).exists()
    assert not (drop / error_name("EXP-000126_carol")).exists()
    assert dead_letters(config) == []


KINETICS_RULE = """
match = ["*/*.csv"]
extractor = "tabular"
dataset_type = "kinetics"
[drift]
policy = "{policy}"
learn_sessions = 2
"""


def kinetics(path: Path, columns: list[str]) -> None:
    rows = "\n".join(",".join(str(i * 10 + j) for j in range(len(columns))) for i in range(5))
    write(path, "Device: Reader\nOperator: x\n\n" + ",".join(columns) + "\n" + rows + "\n")


@pytest.mark.parametrize("policy", ["warn", "quarantine"])
async def test_a_table_that_gains_and_loses_a_column_is_drift(
    tmp_path: Path, config: AgentConfig, policy: str
) -> None:
    rules = write(tmp_path / "rules" / "kinetics.toml", KINETICS_RULE.format(policy=policy)).parent
    config = with_rules(config, rules)
    drop = tmp_path / "drop"
    for session in ("run-1", "run-2"):
        kinetics(drop / session / "plate.csv", ["Time", "A1", "A2"])
    assert (await run_scan(drop, config)).ok
    assert read_sidecar(drop / "run-2" / "plate.csv")["drift"]["status"] == "learning"

    # The export template changed: A2 is gone, B1 is new.
    kinetics(drop / "run-3" / "plate.csv", ["Time", "A1", "B1"])
    report = await run_scan(drop, config)
    async with Ledger.open(config.ledger_path) as ledger:
        (reported,) = await ledger.drift_reports("kinetics")
        baseline = await ledger.drift_baseline("kinetics")
    assert reported.session == "run-3" and reported.policy == policy
    assert reported.diff == {"new": ["column:B1"], "missing": ["column:A2"], "retyped": []}
    assert baseline is not None and baseline.sessions_seen == 2 and not baseline.learning

    shown = agent_cli("drift", "--json", "--rules", str(rules), "--state-dir", str(config.state_dir))
    assert shown.returncode == 0, shown.stderr
    (row,) = [r for r in json.loads(shown.stdout)["datasetTypes"] if r["datasetType"] == "kinetics"]
    assert row["baseline"] == "learnt" and row["latestDrift"]["missing"] == ["column:A2"]

    if policy == "warn":
        assert report.ok
        drift = read_sidecar(drop / "run-3" / "plate.csv")["drift"]
        assert (
            drift["status"] == "drifted"
            and drift["new"] == ["column:B1"]
            and drift["missing"] == ["column:A2"]
        )
        crate = read_crate(drop / "run-3")
        entity = next(e for e in crate["@graph"] if e["@id"] == "plate.csv")
        assert "drift" in entity["description"] and "column:B1" in entity["description"]
        return

    # Quarantined: dead-lettered with the diff as the reason, nothing written in the session.
    assert report.dead_lettered == 1
    assert not Path(sidecar_name(str(drop / "run-3" / "plate.csv"))).exists()
    error = read_error_file(drop / "run-3")
    assert error["errorClass"] == "DriftQuarantinedError"
    assert "new: column:B1; missing: column:A2" in error["reason"]
    assert "fair-agent drift --accept" in error["whatToDo"]
    # A deliberate change: accept the new shape, replay the session.
    accepted = agent_cli(
        "drift", "--accept", "kinetics", "--rules", str(rules), "--state-dir", str(config.state_dir)
    )
    assert accepted.returncode == 0, accepted.stderr
    replayed = agent_cli(
        "replay",
        "--session",
        str(drop / "run-3"),
        "--rules",
        str(rules),
        "--state-dir",
        str(config.state_dir),
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert read_sidecar(drop / "run-3" / "plate.csv")["drift"]["status"] == "none"
    assert not (drop / error_name("run-3")).exists()


async def test_rules_group_sessions_below_the_first_folder(tmp_path: Path, config: AgentConfig) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    drop = tmp_path / "drop"
    scans = sorted((CORPUS / "instruments" / "xrd_session").glob("*.xrdml"))
    for n, scan_file in enumerate(scans):
        # One folder per instrument, one per run below it: the XRD rule's depth = 2.
        run_folder = drop / "xrd" / f"run-{n % 2 + 1}"
        run_folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(scan_file, run_folder / scan_file.name)
    write(drop / "xrd" / "README.txt", "one folder per run\n")
    # Claimed by no XRD rule, but inside a run's folder: that run's.
    write(drop / "xrd" / "run-1" / "notes.txt", "beam dump at 19:40\n")
    config = with_rules(config)
    report = await run_scan(drop, config)
    assert report.ok and report.files_ingested == len(scans) + 2
    for run in ("run-1", "run-2"):
        crate = read_crate(drop / "xrd" / run)
        root = next(e for e in crate["@graph"] if e["@id"] == "./")
        assert root["name"] == f"xrd/{run}"
        assert len(root["hasPart"]) == len(scans) // 2 + (run == "run-1")
        assert all((drop / "xrd" / run / part["@id"]).is_file() for part in root["hasPart"])
        first = read_sidecar(drop / "xrd" / run / Path(root["hasPart"][0]["@id"]).name)
        assert first["session"] == f"xrd/{run}" and first["datasetType"] == "xrd-scan"
        assert first["dataset"]["acquisition_date"].startswith("2020-11-06T")
    # The file one level down stays in the instrument folder's session, with its own crate.
    top = read_crate(drop / "xrd")
    # One part is written as itself, not as a list of one (RO-Crate 1.2's compact form).
    assert next(e for e in top["@graph"] if e["@id"] == "./")["hasPart"] == {"@id": "README.txt"}
    result = validate_crate(drop / "xrd" / "run-1")
    assert result.returncode == 0, result.stdout + result.stderr
    # Nothing is read twice, and the nested crates are not taken for data.
    again = await run_scan(drop, config)
    assert again.files_hashed == 0 and again.files_seen == len(scans) + 2
    assert read_sidecar(drop / "xrd" / "run-1" / "notes.txt")["session"] == "xrd/run-1"


async def test_changing_how_rules_group_moves_files_between_sessions(
    tmp_path: Path, config: AgentConfig
) -> None:
    drop = tmp_path / "drop"
    for run in ("run-1", "run-2"):
        write(drop / "ms" / run / "a.raw", f"{run}\n")
    assert (await run_scan(drop, config)).ok  # no rules: one session, "ms"
    rules = write(tmp_path / "rules" / "ms.toml", 'match = ["ms/**"]\n[session]\ndepth = 2').parent
    regrouped = with_rules(config, rules)
    report = await run_scan(drop, regrouped)
    assert report.ok and dead_letters(regrouped) == [], dead_letters(regrouped)
    assert read_sidecar(drop / "ms" / "run-1" / "a.raw")["session"] == "ms/run-1"
    assert read_sidecar(drop / "ms" / "run-1" / "a.raw")["fileVersion"] == 2  # a path's versions go on
    top = read_crate(drop / "ms")
    assert next(e for e in top["@graph"] if e["@id"] == "./")["hasPart"] == []
    with opened_db(regrouped.ledger_path) as db:
        rows = db.execute(
            "SELECT relpath, session, version FROM files WHERE status = 'current' ORDER BY 1"
        ).fetchall()
    assert rows == [("ms/run-1/a.raw", "ms/run-1", 2), ("ms/run-2/a.raw", "ms/run-2", 2)]
    assert (await run_scan(drop, regrouped)).files_hashed == 0


EXPECTED_TYPES = {
    "xrd_session": "xrd-scan",
    "uvvis_timeseries": "uvvis-scan",
    "echem": "biologic-ec-lab",
    "plate_reader": "tecan-spark-kinetics",
    "jcamp": "jcamp-spectrum",
    "ftir": "ftir-spectrum",
}


async def test_the_corpus_passes_the_shipped_rules(tmp_path: Path, config: AgentConfig) -> None:
    drop = copy_corpus(tmp_path / "drop")
    config = with_rules(config)
    for root in ("eln", "instruments"):
        report = await run_scan(drop / root, config)
        assert report.ok, (report, dead_letters(config))
    for folder, dataset_type in EXPECTED_TYPES.items():
        for path in (drop / "instruments" / folder).iterdir():
            if is_own_output(path.name) or path.name in SESSION_DOCUMENTS:
                continue
            meta = read_sidecar(path)
            assert meta["datasetType"] == dataset_type, path
            assert meta["validation"]["status"] == "valid"
    for path in (drop / "eln").rglob("*.eln"):
        assert read_sidecar(path)["dataset"]["title"]
    xrd = read_sidecar(drop / "instruments" / "xrd_session" / "Scan_C1.xrdml")
    assert xrd["dataset"]["acquisition_date"] == "2020-11-06T18:09:37+00:00"
    uvvis = read_sidecar(drop / "instruments" / "uvvis_timeseries" / "1908047U1_0000.Raw8.TXT")
    assert uvvis["dataset"]["integration_time_ms"] == 1.5 and uvvis["drift"]["status"] == "none"
    result = validate_crate(drop / "instruments" / "xrd_session")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_check_reports_without_writing(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    shutil.copytree(REPO / "sample_data", drop)
    before = sorted(p for p in drop.rglob("*"))
    state = tmp_path / "state"
    result = agent_cli(
        "rules", "check", str(drop), "--rules", str(RULES), "--json", "--state-dir", str(state)
    )
    assert result.returncode == 1, result.stderr  # the carol session would fail
    files = {f["file"]: f for f in json.loads(result.stdout)["files"]}
    assert files["EXP-000123_alice/OD600_kinetics.csv"]["valid"]
    assert files["EXP-000123_alice/OD600_kinetics.csv"]["fields"]["operator"] == "alice"
    assert files["EXP-000123_alice/notes.md"]["rule"] == "session-notes"
    bad = files["EXP-000126_carol/OD600_kinetics.csv"]
    assert not bad["valid"] and any(p.startswith("wavelength_nm: missing") for p in bad["problems"])
    assert sorted(p for p in drop.rglob("*")) == before
    assert not state.exists()


def test_a_broken_rule_set_stops_run_and_is_explained(tmp_path: Path) -> None:
    rules = write(tmp_path / "rules" / "bad.toml", 'match = ["/abs/*.csv"]\ncolour = "red"').parent
    drop = tmp_path / "drop"
    drop.mkdir()
    checked = agent_cli("rules", "check", "--rules", str(rules))
    assert checked.returncode == 3
    assert "rules/bad.toml: colour: unknown key" in checked.stdout
    started = agent_cli(
        "run", "--watch", str(drop), "--rules", str(rules), "--state-dir", str(tmp_path / "s")
    )
    assert started.returncode == 3
    assert "rules/bad.toml: match: '/abs/*.csv' can never match" in started.stderr
    assert list(drop.iterdir()) == []


async def test_the_service_waits_for_the_marker_a_rule_asks_for(
    tmp_path: Path, drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    rules = write(
        tmp_path / "rules" / "slow.toml",
        'match = ["slow-*/**"]\n[completion]\nquiet_period_s = 0.4\nmarker = "*.done"',
    ).parent
    config = with_rules(live_config(config, drop), rules)
    async with Service(config, ledger).running():
        write(drop / "slow-1" / "a.csv", "x\n1\n")
        write(drop / "fast-1" / "a.csv", "x\n1\n")
        await wait_for(lambda: Path(sidecar_name(str(drop / "fast-1" / "a.csv"))).exists())
        assert not Path(sidecar_name(str(drop / "slow-1" / "a.csv"))).exists()
        write(drop / "slow-1" / "run.done", "")
        await wait_for(lambda: Path(sidecar_name(str(drop / "slow-1" / "a.csv"))).exists())


async def test_accepting_drift_learns_each_file_of_the_session(tmp_path: Path, config: AgentConfig) -> None:
    rules = write(
        tmp_path / "rules" / "k.toml",
        KINETICS_RULE.format(policy="quarantine").replace("learn_sessions = 2", "learn_sessions = 1"),
    ).parent
    config = with_rules(config, rules)
    drop = tmp_path / "drop"
    kinetics(drop / "s1" / "x.csv", ["a", "b"])
    assert (await run_scan(drop, config)).ok
    # The template changed, and differently in two files of one session.
    kinetics(drop / "s2" / "x.csv", ["a", "c"])
    kinetics(drop / "s2" / "z.csv", ["a", "d"])
    assert (await run_scan(drop, config)).dead_lettered == 2
    state = ["--rules", str(rules), "--state-dir", str(config.state_dir)]
    assert agent_cli("drift", "--accept", "kinetics", "--session", "nope", *state).returncode == 3
    assert agent_cli("drift", "--accept", "kinetics", "--session", "s2", *state).returncode == 0
    replayed = agent_cli("replay", "--session", str(drop / "s2"), *state)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    # Keys only one file had are optional now: a one-file session with either shape passes.
    kinetics(drop / "s3" / "y.csv", ["a", "c"])
    assert (await run_scan(drop, config)).ok
    shown = json.loads(agent_cli("drift", "--json", *state).stdout)
    (row,) = [r for r in shown["datasetTypes"] if r["datasetType"] == "kinetics"]
    assert row["latestDrift"] is None  # what was reported before the accept is history


async def test_sidecars_carry_the_site_license_and_publisher(tmp_path: Path, config: AgentConfig) -> None:
    drop = tmp_path / "drop"
    write(drop / "s" / "a.txt", "x\n")
    site = {"organisation": "Example Lab", "license": "https://creativecommons.org/licenses/by/4.0/"}
    config = AgentConfig.model_validate({**config.model_dump(), "site": site})
    assert (await run_scan(drop, config)).ok
    meta = read_sidecar(drop / "s" / "a.txt")
    assert meta["license"]["@id"] == site["license"]
    assert meta["publisher"] == {
        "@id": "#organization-example-lab",
        "@type": "Organization",
        "name": "Example Lab",
    }


async def test_a_rule_marker_holds_files_found_at_start_up(
    tmp_path: Path, drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    rules = write(
        tmp_path / "rules" / "slow.toml",
        'match = ["slow-*/*.csv"]\n[completion]\nquiet_period_s = 0.3\nmarker = "*.done"',
    ).parent
    # Dropped while the agent was down; only one of the two files is claimed by the marker rule.
    write(drop / "slow-1" / "Notes.md", "x\n")
    write(drop / "slow-1" / "a.csv", "x\n1\n")
    config = with_rules(live_config(config, drop), rules)
    async with Service(config, ledger).running() as service:
        await wait_for(lambda: service.reconciliations >= 1)
        await asyncio.sleep(1.0)
        assert not Path(sidecar_name(str(drop / "slow-1" / "a.csv"))).exists()
        write(drop / "slow-1" / "export.done", "")
        await wait_for(lambda: Path(sidecar_name(str(drop / "slow-1" / "a.csv"))).exists())
