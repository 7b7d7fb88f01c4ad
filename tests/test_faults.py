"""Storage faults on real filesystems, a ledger that is not ours to touch, two agents, replay."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.core.config import AgentConfig, RetrySettings

from .conftest import REPO, agent_cli, opened_db, read_crate, read_sidecar, run_scan, sha256sum, write

FAST_RETRY = {"FAIR_AGENT_RETRY__ATTEMPTS": "2", "FAIR_AGENT_RETRY__BASE_DELAY_S": "0.01"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB tmpfs, so that the disk really fills up and really turns read-only."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def ledger_rows(state: Path, table: str = "files") -> list[tuple[Any, ...]]:
    with opened_db(state / "ledger.sqlite3") as db:
        return db.execute(f"SELECT * FROM {table}").fetchall()


def dead_letters_yet(state: Path) -> bool:
    """Polled while the agent may still be creating its ledger."""
    try:
        return bool(ledger_rows(state, "dead_letters"))
    except sqlite3.OperationalError:  # not created or not migrated yet
        return False


def no_torn_outputs(root: Path) -> None:
    assert not list(root.rglob("*.fair-tmp")), "temp files left behind"
    for sidecar in root.rglob("*.fair.json"):
        json.loads(sidecar.read_text(encoding="utf-8"))  # every sidecar on disk is whole


async def test_disk_full(small_disk: Path, config: AgentConfig) -> None:
    drop = small_disk / "drop"
    for i in range(5):
        write(drop / "s" / f"{i}.csv", f"{i}\n" * 10)
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill what is left, so not even a sidecar fits
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    cfg = config.model_copy(update={"retry": RetrySettings(attempts=2, base_delay_s=0.01, max_delay_s=0.02)})
    report = await run_scan(drop, cfg)
    assert report.files_ingested == 0 and report.dead_lettered == 5
    no_torn_outputs(drop)
    assert ledger_rows(cfg.state_dir) == [], "no ledger row claims success"
    dead = ledger_rows(cfg.state_dir, "dead_letters")
    assert {row[6] for row in dead} == {"OutputWriteError"} and "the disk is full" in dead[0][7]
    # Each file's dead letter names its own sidecar, not the first one that failed.
    assert all(f"'{row[3]}.fair.json'" in row[7] for row in dead), [row[7] for row in dead]
    filler.unlink()
    report = await run_scan(drop, cfg, retry_dead=True)
    assert report.ok and report.files_ingested == 5
    assert read_sidecar(drop / "s" / "0.csv")["sha256"] == sha256sum(drop / "s" / "0.csv")


async def test_read_only_filesystem(small_disk: Path, config: AgentConfig) -> None:
    drop = small_disk / "drop"
    write(drop / "s" / "a.csv", "1\n")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    cfg = config.model_copy(update={"retry": RetrySettings(attempts=2, base_delay_s=0.01, max_delay_s=0.02)})
    try:
        report = await run_scan(drop, cfg)
        assert report.dead_lettered == 1 and report.files_ingested == 0
        assert "read-only" in ledger_rows(cfg.state_dir, "dead_letters")[0][7]
        assert ledger_rows(cfg.state_dir) == []
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    report = await run_scan(drop, cfg, retry_dead=True)
    assert report.ok and report.files_ingested == 1
    no_torn_outputs(drop)


def test_permission_denied_for_the_sidecar_then_replay(drop: Path, tmp_path: Path) -> None:
    write(drop / "s" / "a.csv", "1\n")
    write(drop / "t" / "b.csv", "2\n")
    (drop / "s").chmod(0o555)
    state = tmp_path / "state"
    try:
        result = agent_cli("scan", str(drop), "--state-dir", str(state), drop_dac=True, env=FAST_RETRY)
        assert result.returncode == 1, result.stdout + result.stderr
        assert Path(f"{drop}/t/b.csv.fair.json").exists()
        dead = ledger_rows(state, "dead_letters")
        assert [(r[3], r[6]) for r in dead] == [("s/a.csv", "OutputWriteError")]
        assert "permission denied" in dead[0][7]
        status = json.loads(agent_cli("status", "--json", "--state-dir", str(state)).stdout)
        assert status["counts"]["dead_letters"] == 1 and status["dead_letters"][0]["file"] == "s/a.csv"
    finally:
        (drop / "s").chmod(0o755)
    # Permissions repaired: a replay ingests it and says so.
    result = agent_cli("replay", "--all", "--state-dir", str(state), drop_dac=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ingested" in result.stdout
    assert Path(f"{drop}/s/a.csv.fair.json").exists() and ledger_rows(state, "dead_letters") == []


def test_a_corrupt_ledger_is_refused_and_left_alone(drop: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    write(state / "ledger.sqlite3", b"garbage" * 1000)
    before = (state / "ledger.sqlite3").read_bytes()
    result = agent_cli("scan", str(drop), "--state-dir", str(state))
    assert result.returncode == 3
    assert "not a readable SQLite database" in result.stderr and "Move it aside" in result.stderr
    assert (state / "ledger.sqlite3").read_bytes() == before


def test_a_ledger_locked_by_another_process_is_refused(drop: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert agent_cli("scan", str(drop), "--state-dir", str(state)).returncode == 0
    blocker = sqlite3.connect(state / "ledger.sqlite3", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        result = agent_cli("scan", str(drop), "--state-dir", str(state))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert result.returncode == 3
    assert "locked by another process" in result.stderr


def test_a_second_agent_on_the_same_state_directory_refuses(drop: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--watch", str(drop), "--state-dir", str(state)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (state / "agent.lock").exists() or not (state / "agent.lock").read_text():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        second = agent_cli("run", "--watch", str(drop), "--state-dir", str(state))
        # 75, "try again later": under systemd the service starts once the holder (often a scan) is done.
        assert second.returncode == 75
        assert f"pid {first.pid} (run)" in second.stderr
        assert agent_cli("scan", str(drop), "--state-dir", str(state)).returncode == 3
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=20)
    # The lock went with the process: the next agent starts.
    assert agent_cli("scan", str(drop), "--state-dir", str(state)).returncode == 0


def test_replay_asks_a_running_service(drop: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    write(drop / "s" / "a.csv", "1\n")
    (drop / "s").chmod(0o555)
    env = {
        **os.environ,
        **FAST_RETRY,
        "FAIR_AGENT_COMPLETION__QUIET_PERIOD_S": "0.3",
        "FAIR_AGENT_COMPLETION__STABILITY_LOOK_S": "0.1",
    }
    caps = "-dac_override,-dac_read_search"
    service = subprocess.Popen(
        [
            "setpriv",
            f"--bounding-set={caps}",
            f"--inh-caps={caps}",
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "--watch",
            str(drop),
            "--state-dir",
            str(state),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not dead_letters_yet(state):
            assert time.monotonic() < deadline and service.poll() is None, "no dead letter"
            time.sleep(0.1)
        (drop / "s").chmod(0o755)
        result = agent_cli("replay", "--session", str(drop / "s"), "--state-dir", str(state), "--wait", "30")
        assert result.returncode == 0, result.stdout + result.stderr
        assert Path(f"{drop}/s/a.csv.fair.json").exists()
    finally:
        (drop / "s").chmod(0o755)
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=20)


async def test_a_crate_that_cannot_be_rewritten_is_retried_and_reported(
    small_disk: Path, config: AgentConfig
) -> None:
    drop = small_disk / "drop"
    write(drop / "s" / "keep.csv", "1\n")
    write(drop / "s" / "gone.csv", "2\n")
    cfg = config.model_copy(update={"retry": RetrySettings(attempts=2, base_delay_s=0.01, max_delay_s=0.02)})
    await run_scan(drop, cfg)
    (drop / "s" / "gone.csv").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        report = await run_scan(drop, cfg)
        assert not report.ok and report.uncommitted == 1, "the stale crate is reported, not hidden"
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    report = await run_scan(drop, cfg)
    assert report.ok
    crate = read_crate(drop / "s")
    assert "gone.csv" not in {n["@id"] for n in crate["@graph"]}
