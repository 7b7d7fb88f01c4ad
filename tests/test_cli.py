"""The real ``fair-agent`` entry point, in a subprocess: output, exit codes, help text."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from agent.cli import build_parser

from .conftest import agent_cli, opened_db, read_error_file, write


def commands(
    parser: argparse.ArgumentParser | None = None, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Every command, nested ones (``rules check``) included."""
    parser = parser or build_parser()
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in sorted(action.choices.items()):
                found.append((*prefix, name))
                found += commands(sub, (*prefix, name))
    return found


@pytest.mark.parametrize("command", commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    result = agent_cli(*command, "--help")
    assert result.returncode == 0
    assert "example:" in result.stdout, result.stdout


def test_the_operations_commands_are_there() -> None:
    assert {("status",), ("inspect",), ("verify",), ("init",), ("rules", "check"), ("drift",)} <= set(
        commands()
    )


def test_scan_prints_a_summary_and_exits_zero(drop: Path, tmp_path: Path) -> None:
    write(drop / "s" / "a.csv", "1\n")
    result = agent_cli("scan", str(drop), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 0, result.stderr
    assert "files ingested" in result.stdout and "dead-lettered" in result.stdout
    assert Path(f"{drop}/s/a.csv.fair.json").exists()
    events = [json.loads(line)["event"] for line in result.stderr.splitlines() if line.startswith("{")]
    assert "batch ingested" in events


def test_unreadable_file_is_dead_lettered_and_the_rest_goes_on(drop: Path, tmp_path: Path) -> None:
    secret = write(drop / "s" / "locked.csv", "no\n")
    write(drop / "s" / "open.csv", "yes\n")
    secret.chmod(0o000)
    state = tmp_path / "state"
    result = agent_cli("scan", str(drop), "--state-dir", str(state), drop_dac=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert Path(f"{drop}/s/open.csv.fair.json").exists()
    assert not Path(f"{drop}/s/locked.csv.fair.json").exists()
    error = read_error_file(drop / "s" / "locked.csv")
    assert "permission denied" in error["reason"] and "read permission" in error["whatToDo"]
    with opened_db(state / "ledger.sqlite3") as db:
        dead = db.execute("SELECT relpath, category, error_class, message FROM dead_letters").fetchall()
    assert dead == [
        ("s/locked.csv", "terminal", "FileUnreadableError", "cannot read 's/locked.csv': permission denied")
    ]
    # Fixed by a person: the chmod moves ctime, so the next scan tries again and succeeds.
    secret.chmod(0o644)
    again = agent_cli("scan", str(drop), "--state-dir", str(state), drop_dac=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert Path(f"{drop}/s/locked.csv.fair.json").exists()
    assert not Path(f"{drop}/s/locked.csv.fair.error.json").exists()
    with opened_db(state / "ledger.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


def test_unchanged_dead_letter_keeps_the_exit_code_nonzero(drop: Path, tmp_path: Path) -> None:
    write(drop / "s" / "locked.csv", "no\n").chmod(0o000)
    args = ("scan", str(drop), "--state-dir", str(tmp_path / "state"))
    assert agent_cli(*args, drop_dac=True).returncode == 1
    assert agent_cli(*args, drop_dac=True).returncode == 1


def test_bad_config_is_a_clear_error(drop: Path, tmp_path: Path) -> None:
    cfg = write(tmp_path / "agent.toml", "workers = 4\nwokers = 5\n")
    result = agent_cli("scan", str(drop), "--config", str(cfg))
    assert result.returncode == 3
    assert "wokers: unknown setting" in result.stderr


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = agent_cli("scan", str(tmp_path / "nope"), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 3 and "is not a folder" in result.stderr


def test_sample_data_scans_clean(tmp_path: Path) -> None:
    import shutil

    from .conftest import REPO

    demo = tmp_path / "demo"
    shutil.copytree(REPO / "sample_data", demo)
    result = agent_cli("scan", str(demo), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (demo / "EXP-000123_alice" / "ro-crate-metadata.json").exists()
    assert Path(f"{demo}/EXP-000125_notebook.eln.fair.json").exists()


def test_the_readme_demo_runs_the_service_on_the_sample_data(tmp_path: Path) -> None:

    # The README's first command, run from the repository as the README says.
    result = agent_cli("demo", "sample_data", str(tmp_path / "demo"), "--rules", "rules", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout.replace("\n", "")
    assert "EXP-000123_alice/ro-crate-metadata.json" in out
    assert "session EXP-000126_carol was not ingested" in out and "wavelength_nm: missing" in out
    sidecars = sorted(p.name for p in (tmp_path / "demo").rglob("*.fair.json"))
    assert len(sidecars) == 6 and (tmp_path / "demo-state" / "ledger.sqlite3").exists()
    assert (tmp_path / "demo" / "EXP-000126_carol.fair.error.json").exists()
