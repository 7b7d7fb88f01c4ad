"""Derived tables: a rule's [transform] makes an analysis-ready table beside the raw export.

Checked for real: the agent's scan and service write ``<file>.tidy.parquet`` with the batch,
values against hand-computed ones, the raw bytes untouched, a person's file never overwritten, an
impossible unit a validation problem, and a redo after kill -9 byte-identical.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from agent.core.config import AgentConfig
from agent.core.naming import is_own_output
from agent.core.transform import TransformSpec
from agent.core.units import UnitError, conversion, parse_unit
from agent.extractors import gaps, tablereading
from agent.extractors.base import Budget, Source
from agent.extractors.derive import derive
from agent.rules import RuleError, load_rules
from agent.rules import ruleset as ruleset_module

from .conftest import (
    CORPUS,
    REPO,
    agent_cli,
    read_crate,
    read_error_file,
    read_sidecar,
    run_scan,
    sha256_of,
    validate_crate,
    write,
)

EXTRACTORS = ["tabular"]
PLATE = "OD600_kinetics.csv"


def with_rules(config: AgentConfig, folder: Path) -> AgentConfig:
    return config.model_copy(update={"rules_dir": folder})


def sample_lab(drop: Path, *sessions: str) -> None:
    for session in sessions:
        shutil.copytree(REPO / "sample_data" / session, drop / session)


def rule_folder(tmp_path: Path, transform: str, *, extractor: str = "tabular") -> Path:
    folder = tmp_path / "rules"
    write(
        folder / "plate.toml",
        f'match = ["EXP-*/*.csv"]\nextractor = "{extractor}"\ndataset_type = "plate"\n{transform}',
    )
    return folder


def numbers(path: Path, column: str) -> list[float]:
    """A column of the raw export, as the file writes it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Cycle,"))
    header = lines[start].split(",")
    rows = [line.split(",") for line in lines[start + 1 :] if line.strip()]
    return [float(row[header.index(column)]) for row in rows]


def derive_into(path: Path, spec: TransformSpec, out: Path) -> dict[str, Any]:
    """The derived table of ``path`` written to ``out`` in this process (no agent, no worker)."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        return derive(Source(path, path.name, path.parent), spec, fd, Budget(30), detected={}, provenance={})
    finally:
        os.close(fd)


# --- units ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "code"),
    [
        ("°C", "Cel"),
        ("degC", "Cel"),
        ("[nm]", "nm"),
        ("counts", "{counts}"),
        ("%T", "%{transmittance}"),
        ("µm", "um"),
        ("cm-1", "/cm"),
        ("mL/min", "mL/min"),
        ("mM", "mmol/L"),
        ("mA.h", "mA.h"),
        ("AU", "{AU}"),
        ("Torr", None),
    ],
)
def test_lab_spellings_have_their_ucum_codes(written: str, code: str | None) -> None:
    assert parse_unit(written).ucum == code


def test_conversions_are_the_hand_computed_ones() -> None:
    assert conversion("°C", "K") == pytest.approx((1.0, 273.15))
    assert conversion("s", "min") == pytest.approx((1 / 60, 0.0))
    assert conversion("[nm]", "µm") == pytest.approx((1e-3, 0.0))
    assert conversion("degF", "degC") == pytest.approx((5 / 9, -160 / 9))
    assert conversion("AU", "au") == (1.0, 0.0)


@pytest.mark.parametrize(("source", "target"), [("°C", "min"), ("AU", "K"), ("nm", "kg")])
def test_an_impossible_conversion_names_both_units(source: str, target: str) -> None:
    with pytest.raises(UnitError) as caught:
        conversion(source, target)
    assert repr(source) in str(caught.value) and repr(target) in str(caught.value)


def test_derived_names_are_the_agents_and_a_persons_tidy_file_is_data() -> None:
    assert is_own_output("OD600_kinetics.csv.tidy.parquet")
    assert is_own_output("run.txt.tidy.csv")
    assert is_own_output("run.export.tidy.csv"), "any extension before .tidy"
    assert not is_own_output("results.tidy.csv")
    assert not is_own_output("OD600_kinetics.csv")


# --- rules ---------------------------------------------------------------------------------------


def test_a_transform_that_cannot_work_is_refused_at_load(tmp_path: Path) -> None:
    folder = rule_folder(
        tmp_path,
        '[transform]\nformat = "csv"\n[transform.columns."Time [s]"]\nunit = "fortnights-ish"\n',
    )
    with pytest.raises(RuleError) as caught:
        load_rules(folder, EXTRACTORS)
    assert "transform.columns.Time [s].unit" in str(caught.value)
    assert "'fortnights-ish' is not a unit" in str(caught.value)

    folder = rule_folder(tmp_path, '[transform]\nformat = "csv"\n', extractor="auto")
    with pytest.raises(RuleError, match='must say extractor = "tabular"'):
        load_rules(folder, EXTRACTORS)

    folder = rule_folder(
        tmp_path,
        '[transform]\nformat = "csv"\n'
        '[transform.columns."Cycle"]\ntype = "integer"\nmissing = "interpolate"\n',
    )
    with pytest.raises(RuleError, match="'interpolate' makes fractions"):
        load_rules(folder, EXTRACTORS)


def test_parquet_without_pyarrow_is_refused_with_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyarrow is installed here (the test extra); the check asks whether it can be found.
    monkeypatch.setattr(ruleset_module, "parquet_available", lambda: False)
    with pytest.raises(RuleError) as caught:
        load_rules(rule_folder(tmp_path, '[transform]\nformat = "parquet"\n'), EXTRACTORS)
    assert "pip install 'fair-agent[transform]'" in str(caught.value)
    load_rules(rule_folder(tmp_path, '[transform]\nformat = "csv"\n'), EXTRACTORS)  # CSV needs pandas only


def test_rules_check_shows_the_derived_head_and_the_columns_the_files_lack(tmp_path: Path) -> None:
    folder = tmp_path / "lab"
    sample_lab(folder, "EXP-000124_bob")
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    result = agent_cli(
        "rules", "check", "--rules", str(rules), str(folder), "--json", "--state-dir", str(tmp_path / "s")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    head = next(f for f in report["files"] if f["file"].endswith(PLATE))["derivedHead"]
    assert head[0][:5] == ["cycle", "time", "temperature", "A1", "A1_imputed"]
    assert head[5][:3] == ["5", "40", "303.15"] and head[5][5:7] == ["0.1665", "True"]
    assert not list(folder.rglob("*.tidy.*")), "the dry run writes nothing"

    text = (rules / "platemaster-od600.toml").read_text(encoding="utf-8")
    (rules / "platemaster-od600.toml").write_text(
        text + '\n[transform.columns."Humidity [%]"]\nname = "humidity"\n', encoding="utf-8"
    )
    result = agent_cli(
        "rules", "check", "--rules", str(rules), str(folder), "--json", "--state-dir", str(tmp_path / "s")
    )
    assert result.returncode == 1
    problems = next(f for f in json.loads(result.stdout)["files"] if f["file"].endswith(PLATE))["problems"]
    assert problems == [
        "transform: the rule's [transform] names column 'Humidity [%]', which this file does not have"
    ]


# --- the agent -----------------------------------------------------------------------------------


async def test_the_sample_lab_gets_its_derived_tables_with_the_hand_computed_values(
    tmp_path: Path, drop: Path, config: AgentConfig
) -> None:
    sample_lab(drop, "EXP-000123_alice", "EXP-000124_bob")
    raw = {p: sha256_of(p) for p in drop.rglob("*") if p.is_file()}
    config = with_rules(config, REPO / "rules")
    report = await run_scan(drop, config)
    assert report.files_ingested == 5 and report.dead_lettered == 0
    assert {p: sha256_of(p) for p in raw} == raw, "the raw files are never modified"

    for session in ("EXP-000123_alice", "EXP-000124_bob"):
        export = drop / session / PLATE
        table = pq.read_table(drop / session / f"{PLATE}.tidy.parquet").to_pydict()
        assert table["temperature"] == pytest.approx(
            [t + 273.15 for t in numbers(export, "Temperature [°C]")]
        )
        assert table["time"] == pytest.approx([s / 60 for s in numbers(export, "Time [s]")])
        assert table["cycle"] == list(range(1, 25))
        sidecar = read_sidecar(export)
        derived = sidecar["derived"]
        assert derived["name"] == f"{PLATE}.tidy.parquet"
        assert derived["sha256"] == sha256_of(drop / session / derived["name"])
        assert {
            "name": "temperature",
            "from": "Temperature [°C]",
            "type": "number",
            "unit": "K",
            "unitCode": "K",
            "convertedFrom": "°C",
        } in derived["columns"]
        raw_units = {v["name"]: v.get("unitCode") for v in sidecar["variableMeasured"]}
        assert raw_units["Temperature"] == "Cel" and raw_units["Time"] == "s"
        assert not (drop / session / f"{PLATE}.tidy.parquet.fair.json").exists(), "an output, not data"

    bob = pq.read_table(drop / "EXP-000124_bob" / f"{PLATE}.tidy.parquet").to_pydict()
    # Bob's export misses well A2 at cycle 5: the mean of cycles 4 and 6, and marked.
    assert bob["A2"][4] == pytest.approx((0.1468 + 0.1862) / 2)
    assert bob["A2_imputed"] == [i == 4 for i in range(24)]
    assert not any(any(v) for k, v in bob.items() if k.endswith("_imputed") and k != "A2_imputed")
    columns = {c["name"]: c for c in read_sidecar(drop / "EXP-000124_bob" / PLATE)["derived"]["columns"]}
    assert columns["A2"]["imputed"] == {"count": 1, "method": "interpolate", "mask": "A2_imputed"}

    crate = read_crate(drop / "EXP-000124_bob")
    graph = {e["@id"]: e for e in crate["@graph"]}
    table_id = f"{PLATE}.tidy.parquet"
    assert graph[table_id]["isBasedOn"] == {"@id": PLATE}
    assert {"@id": table_id} in graph["./"]["hasPart"]
    action = graph[f"#derive-{table_id}"]
    assert action["@type"] == "CreateAction" and action["result"] == {"@id": table_id}
    assert action["instrument"] == {"@id": "#fair-agent"}
    assert action["object"] == [{"@id": PLATE}, {"@id": "#rule-platemaster-od600"}]
    assert validate_crate(drop / "EXP-000124_bob").returncode == 0

    again = await run_scan(drop, config)
    assert again.files_ingested == 0 and again.dead_lettered == 0, "the derived tables are not data"


async def test_a_real_tecan_export_written_a_variable_per_line_is_turned_into_columns(
    drop: Path, config: AgentConfig
) -> None:
    source = CORPUS / "instruments" / "plate_reader" / "200228_example_data.csv"
    if not source.is_file():
        pytest.skip(f"corpus not found at {CORPUS}")
    export = drop / "plate_reader" / source.name
    write(export, source.read_bytes())
    report = await run_scan(drop, with_rules(config, REPO / "rules"))
    assert report.files_ingested == 1 and report.dead_lettered == 0
    table = pq.read_table(export.with_name(export.name + ".tidy.parquet")).to_pydict()
    lines: dict[str, list[str]] = {}
    for line in source.read_text(encoding="utf-8-sig").splitlines():  # the first table's lines
        lines.setdefault(line.split(",", 1)[0], line.split(",")[1:])
    assert table["cycle"] == list(range(1, 49))
    assert table["time"] == pytest.approx([float(v) / 60 for v in lines["Time [s]"][:48]])
    assert table["temperature"] == pytest.approx([float(v) + 273.15 for v in lines["Temp. [°C]"][:48]])
    assert table["E5"][:3] == pytest.approx([0.1008, 0.1019, 0.1049])
    assert set(table["A1"]) == {None}, "a well never read stays empty: nothing to interpolate from"
    derived = read_sidecar(export)["derived"]
    assert derived["rows"] == 48 and derived["rule"] == "plate-reader-tecan"


async def test_a_persons_file_in_the_derived_tables_place_is_never_overwritten(
    drop: Path, config: AgentConfig
) -> None:
    sample_lab(drop, "EXP-000123_alice")
    theirs = write(drop / "EXP-000123_alice" / f"{PLATE}.tidy.parquet", b"my own analysis")
    report = await run_scan(drop, with_rules(config, REPO / "rules"))
    assert report.files_ingested == 3
    assert theirs.read_bytes() == b"my own analysis"
    sidecar = read_sidecar(drop / "EXP-000123_alice" / PLATE)
    assert "derived" not in sidecar
    assert any("fair-agent did not write is in its place" in w for w in sidecar["warnings"])
    assert not [p for p in (drop / "EXP-000123_alice").iterdir() if p.name.endswith(".fair-tmp")]


async def test_an_impossible_conversion_fails_validation_naming_the_column_and_units(
    tmp_path: Path, drop: Path, config: AgentConfig
) -> None:
    sample_lab(drop, "EXP-000123_alice")
    folder = rule_folder(tmp_path, '[transform]\n[transform.columns."Temperature [°C]"]\nunit = "min"\n')
    report = await run_scan(drop, with_rules(config, folder))
    assert report.files_ingested == 0
    problems = read_error_file(drop / "EXP-000123_alice")["problems"]
    text = str(problems)
    assert "Temperature [°C]" in text and "'°C'" in text and "'min'" in text
    assert not list(drop.rglob("*.tidy.*")) and not list(drop.rglob("*.fair-tmp"))


async def test_coercion_and_gap_methods_are_reported_and_applied(
    tmp_path: Path, drop: Path, config: AgentConfig
) -> None:
    write(
        drop / "EXP-000001_x" / "run.csv",
        "t [s],a,b,c,d,flag\n0,1.0,1,,x,yes\n60,OVER,,2,y,no\n120,3.0,3,,,maybe\n180,,4,4,w,1\n"
        "240,5.0,5,5,v,0\n",
    )
    folder = rule_folder(
        tmp_path,
        '[transform]\nformat = "csv"\n'
        '[transform.columns."t [s]"]\nname = "t"\nunit = "min"\n'
        '[transform.columns."a"]\ntype = "number"\nmissing = "interpolate"\n'
        '[transform.columns."b"]\ntype = "integer"\nmissing = "ffill"\n'
        '[transform.columns."c"]\ntype = "number"\nmissing = -1\n'
        '[transform.columns."d"]\ntype = "string"\nmissing = "drop"\n'
        '[transform.columns."flag"]\ntype = "boolean"\n',
    )
    report = await run_scan(drop, with_rules(config, folder))
    assert report.files_ingested == 1
    text = (drop / "EXP-000001_x" / "run.csv.tidy.csv").read_text(encoding="utf-8")
    assert text.splitlines() == [
        "t,a,a_imputed,b,b_imputed,c,c_imputed,d,flag",
        "0,1,False,1,False,-1,True,x,True",
        "1,2,True,1,True,2,False,y,False",
        "3,4,True,4,False,4,False,w,True",
        "4,5,False,5,False,5,False,v,False",
    ]
    sidecar = read_sidecar(drop / "EXP-000001_x" / "run.csv")
    columns = {c["name"]: c for c in sidecar["derived"]["columns"]}
    assert columns["a"]["notCoerced"] == {"count": 1, "examples": ["OVER"]}
    # The row without d went first; a's gaps are interpolated between the rows kept.
    assert columns["a"]["imputed"] == {"count": 2, "method": "interpolate", "mask": "a_imputed"}
    assert columns["b"]["imputed"] == {"count": 1, "method": "ffill", "mask": "b_imputed"}
    assert columns["c"]["imputed"] == {"count": 1, "method": "constant", "mask": "c_imputed", "value": -1}
    assert columns["flag"]["notCoerced"] == {"count": 1, "examples": ["maybe"]}
    assert any("'OVER'" in w for w in sidecar["warnings"])
    assert sidecar["derived"]["rows"] == 4


async def test_hostile_values_are_reported_and_the_rest_of_the_table_is_made(
    tmp_path: Path, drop: Path, config: AgentConfig
) -> None:
    write(
        drop / "EXP-000001_x" / "run.csv",
        "id,when,flag,big,Time [s],level,level_imputed\n"
        "007,2026-03-14T09:41:00+01:00,1,5,60,1.5,x\n"
        "008,2026-03-14T09:42:00Z,,1e20,120,,y\n"
        "009,not a date,0,7,180,2.5,z\n",
    )
    write(drop / "EXP-000001_x" / "plate", "a,b\n1,2\n")
    folder = tmp_path / "rules"
    write(
        folder / "plate.toml",
        'match = ["EXP-*/*"]\nextractor = "tabular"\n[transform]\nformat = "csv"\n'
        '[transform.columns."id"]\ntype = "string"\n'
        '[transform.columns."when"]\ntype = "datetime"\n'
        '[transform.columns."flag"]\ntype = "boolean"\n'
        '[transform.columns."big"]\ntype = "integer"\n'
        '[transform.columns."Time [s]"]\nunit = "min"\n'
        '[transform.columns."level"]\nmissing = "n/a"\n',
    )
    report = await run_scan(drop, with_rules(config, folder))
    assert report.files_ingested == 2
    text = (drop / "EXP-000001_x" / "run.csv.tidy.csv").read_text(encoding="utf-8")
    assert text.splitlines() == [
        "id,when,flag,big,Time [min],level,level_imputed",
        "007,2026-03-14 08:41:00,True,5,1,1.5,x",
        "008,2026-03-14 09:42:00,,,2,,y",
        "009,,False,7,3,2.5,z",
    ], "zones to UTC, the digits of a string kept, a converted column named by its new unit"
    sidecar = read_sidecar(drop / "EXP-000001_x" / "run.csv")
    columns = {c["name"]: c for c in sidecar["derived"]["columns"]}
    assert columns["when"]["notCoerced"] == {"count": 1, "examples": ["not a date"]}
    assert columns["big"]["notCoerced"]["count"] == 1
    assert "imputed" not in columns["level"]
    assert any(
        "constant 'n/a' for the gaps of column 'level' is not a number" in w for w in sidecar["warnings"]
    )
    # A file without an extension gets no derived table: its name would look like a person's.
    plain = read_sidecar(drop / "EXP-000001_x" / "plate")
    assert "derived" not in plain and any("has no extension" in w for w in plain["warnings"])
    assert not list(drop.rglob("*.fair-tmp"))


def test_chunks_give_the_table_one_read_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Gaps that straddle chunk boundaries are interpolated as in one read: the rows wait for the
    # value after the gap.
    lines = ["x,y"]
    for i in range(500):
        y = "" if (i % 37) in (5, 6, 7) or 100 <= i < 180 else f"{i * 0.5:.1f}"
        lines.append(f"{i},{y}")
    path = write(tmp_path / "big.csv", "\n".join(lines) + "\n")
    spec = TransformSpec.model_validate(
        {"format": "csv", "columns": {"y": {"type": "number", "missing": "interpolate"}}}
    )

    reports: dict[str, dict[str, object]] = {}

    def run(name: str) -> bytes:
        reports[name] = derive_into(path, spec, tmp_path / name)
        return (tmp_path / name).read_bytes()

    whole = run("whole.csv")
    monkeypatch.setattr(tablereading, "_chunk_rows", lambda layout, cells=0: 16)
    assert run("chunked.csv") == whole
    rows = [line.split(",") for line in whole.decode().splitlines()[1:]]
    assert all(float(y) == pytest.approx(int(x) * 0.5) for x, y, _ in rows)

    # A gap longer than the rows that may be held is left empty whole, and counted; the gaps after
    # it are interpolated again.
    monkeypatch.setattr(gaps, "MAX_HELD_CELLS", 3 * 40)
    capped = [line.split(",") for line in run("capped.csv").decode().splitlines()[1:]]
    empty = [int(x) for x, y, _ in capped if not y]
    assert empty == list(range(100, 180))
    (column,) = [c for c in reports["capped.csv"]["columns"] if c["name"] == "y"]  # type: ignore[attr-defined]
    assert column["gapsLeftEmpty"] == 80
    assert all(float(y) == pytest.approx(int(x) * 0.5) for x, y, _ in capped if y)


# --- kill -9 -------------------------------------------------------------------------------------


def test_a_redo_after_kill_9_writes_byte_identical_derived_tables(tmp_path: Path) -> None:
    sessions = 24
    lab = tmp_path / "lab"
    for n in range(sessions):
        source = REPO / "sample_data" / ("EXP-000123_alice" if n % 2 else "EXP-000124_bob")
        shutil.copytree(source, lab / f"EXP-{n:06d}_lab")
    calm = tmp_path / "calm"
    shutil.copytree(lab, calm)
    reference = agent_cli("scan", str(calm), "--rules", "rules", "--state-dir", str(tmp_path / "calm-state"))
    assert reference.returncode == 0, reference.stderr

    killed = tmp_path / "killed"
    shutil.copytree(lab, killed)
    state = tmp_path / "killed-state"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "scan",
            str(killed),
            "--rules",
            "rules",
            "--state-dir",
            str(state),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(killed.rglob("*.tidy.parquet"))) < 3:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list(killed.rglob("*.tidy.parquet")))
    assert 3 <= done < sessions, f"killed after {done} of {sessions} tables: not mid-run"

    redo = agent_cli("scan", str(killed), "--rules", "rules", "--state-dir", str(state))
    assert redo.returncode == 0, redo.stderr
    for table in calm.rglob("*.tidy.parquet"):
        twin = killed / table.relative_to(calm)
        assert twin.read_bytes() == table.read_bytes(), twin
        assert (
            read_sidecar(twin.with_name(PLATE))["derived"] == read_sidecar(table.with_name(PLATE))["derived"]
        )
    assert not list(killed.rglob("*.fair-tmp")), "no temp file is left behind"


def test_a_chunk_whose_rows_are_all_dropped_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = ["x,y,keep"]
    for i in range(64):
        lines.append(f"{i},{'' if i in (10, 11, 40) else i},{'' if 16 <= i < 32 else 'k'}")
    path = write(tmp_path / "t.csv", "\n".join(lines) + "\n")
    spec = TransformSpec.model_validate(
        {
            "format": "csv",
            "columns": {
                "keep": {"type": "string", "missing": "drop"},
                "y": {"type": "number", "missing": "interpolate"},
            },
        }
    )
    monkeypatch.setattr(tablereading, "_chunk_rows", lambda layout, cells=0: 16)
    out = tmp_path / "out.csv"
    report = derive_into(path, spec, out)
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    assert [int(x) for x, _, _, _ in rows] == [*range(16), *range(32, 64)]
    assert all(float(y) == int(x) for x, y, _, _ in rows)  # 10, 11 and 40 filled on the line
    assert [x for x, _, imputed, _ in rows if imputed == "True"] == ["10", "11", "40"]
    assert report["rows"] == 48


def test_a_table_a_variable_per_line_with_a_decimal_comma_text_and_repeated_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path / "plate.csv",
        "Device: Spark\n\n"
        "Cycle Nr.;1;2;3;4\n"
        "Time [s];0;60;120;180\n"
        "A1;0,101;0,102;OVER;0,104\n"
        "A1;0,201;0,202;0,203;0,204\n"
        "A1;0,301;0,302;0,303;0,304\n",
    )
    spec = TransformSpec.model_validate(
        {"format": "csv", "columns": {"re:A1.*": {"type": "number", "missing": "interpolate"}}}
    )
    out = tmp_path / "out.csv"
    report = derive_into(path, spec, out)
    lines = out.read_text().splitlines()
    assert lines[0] == "Cycle Nr.,Time [s],A1,A1_imputed,A1 (2),A1 (2)_imputed,A1 (3),A1 (3)_imputed"
    # The text cell is the only value lost (and interpolated); its neighbours keep their commas' worth.
    assert lines[3].split(",")[2:] == ["0.103", "True", "0.203", "False", "0.303", "False"]
    (a1,) = [c for c in report["columns"] if c["name"] == "A1"]
    assert a1["notCoerced"] == {"count": 1, "examples": ["OVER"]}
