"""The day-to-day commands, through the real entry point: status, inspect, verify, init."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from agent.core.config import load_config

from .conftest import REPO, agent_cli, write


def scanned(tmp_path: Path) -> tuple[Path, Path]:
    drop, state = tmp_path / "drop", tmp_path / "state"
    write(drop / "run-1" / "a.csv", "x,y\n1,2\n")
    write(drop / "run-1" / "b.dat", b"\x01" * 4096)
    write(drop / "run-2" / "c.txt", "hello\n")
    result = agent_cli("scan", str(drop), "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    return drop, state


def test_verify_reports_changed_missing_and_new_files(tmp_path: Path) -> None:
    drop, state = scanned(tmp_path)
    clean = agent_cli("verify", str(drop), "--state-dir", str(state), "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout)["counts"] == {"ok": 3}

    # One flipped byte, with size and mtime put back: only the hash can tell.
    target = drop / "run-1" / "b.dat"
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[2048] ^= 0x01
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    (drop / "run-2" / "c.txt").unlink()
    write(drop / "run-2" / "d.txt", "added after ingest\n")

    result = agent_cli("verify", str(drop), "--state-dir", str(state), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["counts"] == {"ok": 1, "changed": 1, "missing": 1, "not-ingested": 1}
    statuses = {f["file"]: f["status"] for f in report["findings"]}
    assert statuses == {"run-1/b.dat": "changed", "run-2/c.txt": "missing", "run-2/d.txt": "not-ingested"}
    changed = next(f for f in report["findings"] if f["status"] == "changed")
    assert changed["expectedSha256"] != changed["actualSha256"]

    # A session folder alone, and a tampered sidecar.
    only = agent_cli("verify", str(drop / "run-1"), "--state-dir", str(state), "--json")
    assert json.loads(only.stdout)["counts"] == {"ok": 1, "changed": 1}
    sidecar = drop / "run-1" / "a.csv.fair.json"
    sidecar.write_text(sidecar.read_text().replace('"sha256": "', '"sha256": "0'), encoding="utf-8")
    tampered = agent_cli("verify", str(drop / "run-1" / "a.csv"), "--state-dir", str(state))
    assert tampered.returncode == 1 and "sidecar-mismatch" in tampered.stdout


def test_verify_of_an_unknown_folder_is_an_error(tmp_path: Path) -> None:
    _, state = scanned(tmp_path)
    result = agent_cli("verify", str(tmp_path / "elsewhere"), "--state-dir", str(state))
    assert result.returncode == 3 and "not inside any folder the ledger knows" in result.stderr


def test_inspect_shows_versions_metadata_and_dead_letters(tmp_path: Path) -> None:
    drop, state = scanned(tmp_path)
    write(drop / "run-1" / "a.csv", "x,y\n1,2\n3,4\n")
    assert agent_cli("scan", str(drop), "--state-dir", str(state)).returncode == 0

    by_sidecar = agent_cli(
        "inspect", str(drop / "run-1" / "a.csv.fair.json"), "--state-dir", str(state), "--json"
    )
    assert by_sidecar.returncode == 0, by_sidecar.stderr
    account = json.loads(by_sidecar.stdout)
    assert account["state"] == "ingested" and account["session"] == "run-1"
    assert [(v["version"], v["status"]) for v in account["history"]] == [(1, "superseded"), (2, "current")]
    assert account["current"]["sha256"] == account["sidecar"]["sha256"]
    assert account["sidecar"]["metadata"]["extractor"] == "tabular"
    assert account["sidecar"]["validation"]["status"] == "valid"

    human = agent_cli("inspect", str(drop / "run-1" / "a.csv"), "--state-dir", str(state))
    assert human.returncode == 0 and "versions in the ledger" in human.stdout and "superseded" in human.stdout
    assert "metadata read from the file" in human.stdout and "tabular" in human.stdout

    folder = json.loads(agent_cli("inspect", str(drop / "run-1"), "--state-dir", str(state), "--json").stdout)
    assert folder["kind"] == "folder" and folder["crate"] is True
    assert [f["file"] for f in folder["files"]] == ["run-1/a.csv", "run-1/b.dat"]

    with zipfile.ZipFile(write(drop / "run-3" / "bad.eln", b""), "w") as archive:
        archive.writestr("/etc/passwd", "refused for safety: an absolute member path")
    agent_cli("scan", str(drop), "--state-dir", str(state))
    dead = json.loads(
        agent_cli("inspect", str(drop / "run-3" / "bad.eln"), "--state-dir", str(state), "--json").stdout
    )
    assert dead["state"] == "dead-lettered" and dead["deadLetter"]["category"] == "terminal"
    assert dead["deadLetter"]["whatToDo"]


def test_init_writes_a_config_that_loads_as_is(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "agent.toml"
    drop = tmp_path / "drop"
    result = agent_cli("init", str(target), "--watch", str(drop), "--rules", str(REPO / "rules"))
    assert result.returncode == 0, result.stderr
    text = target.read_text(encoding="utf-8")
    assert text.count("\n# ") > 10  # commented
    config = load_config(target, env={})
    assert [r.path for r in config.roots] == [drop]
    assert config.rules_dir == REPO / "rules" and not config.metrics.enabled
    again = agent_cli("init", str(target))
    assert again.returncode == 3 and "exists" in again.stderr
    assert agent_cli("init", str(target), "--force").returncode == 0
    assert load_config(target, env={}).roots == ()


def test_status_shows_what_a_running_service_waits_for(tmp_path: Path) -> None:
    drop, state = scanned(tmp_path)
    config = write(
        tmp_path / "agent.toml",
        f'state_dir = "{state}"\n[completion]\nquiet_period_s = 600\n[[roots]]\npath = "{drop}"\n',
    )
    service = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        write(drop / "run-4" / "e.csv", "x\n1\n")
        deadline = time.monotonic() + 30
        while True:
            status = json.loads(agent_cli("status", "--json", "--config", str(config)).stdout)
            if status["pending"] and status["pending"][0]["session"] == "run-4":
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        assert status["service"] == f"pid {service.pid} (run)"
        assert status["roots"][0]["mode"] == "events"
        assert status["pending"][0]["reason"] == "quiet period"
        assert status["counts"]["files"] == 3 and status["ledger_bytes"] > 0
        human = agent_cli("status", "--config", str(config))
        assert "sessions pending and in flight" in human.stdout and "run-4" in human.stdout
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0
    stopped = json.loads(agent_cli("status", "--json", "--config", str(config)).stdout)
    assert stopped["service"] is None and stopped["pending"] is None
    assert stopped["roots"][0]["mode"] == "events"  # what it would be, from the configuration


def test_verify_and_inspect_say_what_is_gone_or_unknown(tmp_path: Path) -> None:
    drop, state = scanned(tmp_path)
    nowhere = agent_cli("verify", str(drop / "no-such-run"), "--state-dir", str(state))
    assert nowhere.returncode == 3 and "does not exist" in nowhere.stderr
    outside = agent_cli("inspect", str(drop / ".." / ".." / "elsewhere"), "--state-dir", str(state))
    assert outside.returncode == 3 and "not inside any folder" in outside.stderr
    # A sidecar's path stands for its data file.
    by_sidecar = agent_cli(
        "verify", str(drop / "run-1" / "a.csv.fair.json"), "--state-dir", str(state), "--json"
    )
    assert json.loads(by_sidecar.stdout)["counts"] == {"ok": 1}
    # A deleted session is still known to the ledger, and said to be gone.
    for path in sorted((drop / "run-2").iterdir()):
        path.unlink()
    (drop / "run-2").rmdir()
    gone = json.loads(agent_cli("inspect", str(drop / "run-2"), "--state-dir", str(state), "--json").stdout)
    assert gone["kind"] == "folder" and gone["onDisk"] is False
    assert [f["file"] for f in gone["files"]] == ["run-2/c.txt"]
    missing = agent_cli("verify", str(drop / "run-2"), "--state-dir", str(state), "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["counts"] == {"missing": 1}


def test_run_exits_75_when_a_root_is_not_there_yet(tmp_path: Path) -> None:
    result = agent_cli("run", "--watch", str(tmp_path / "not-mounted"), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 75 and "not mounted yet?" in result.stderr


def test_a_ledger_the_reader_may_not_read_is_said_so(tmp_path: Path) -> None:
    _, state = scanned(tmp_path)
    ledger = state / "ledger.sqlite3"
    ledger.chmod(0o000)
    try:
        result = agent_cli("status", "--state-dir", str(state), drop_dac=True)
    finally:
        ledger.chmod(0o640)
    assert result.returncode == 3 and "permission denied reading the ledger" in result.stderr
    assert "Move it aside" not in result.stderr
