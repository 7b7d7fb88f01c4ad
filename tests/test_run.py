"""`fair-agent run` as a real subprocess: systemd notifications, signals and exit codes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import REPO, opened_db, write

SHORT = {
    "FAIR_AGENT_COMPLETION__QUIET_PERIOD_S": "0.4",
    "FAIR_AGENT_COMPLETION__STABILITY_LOOK_S": "0.1",
}


class Agent:
    """A running `fair-agent run` with a notify socket of our own, as systemd would provide."""

    def __init__(self, drop: Path, state: Path, sock_path: Path, extra_env: dict[str, str]) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(sock_path))
        self.sock.settimeout(0.2)
        env = {**os.environ, **SHORT, **extra_env, "NOTIFY_SOCKET": str(sock_path)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--watch", str(drop), "--state-dir", str(state)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.messages: list[str] = []

    def receive_until(self, wanted: str, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                self.messages.extend(self.sock.recv(4096).decode().split("\n"))
            if any(m.startswith(wanted) for m in self.messages):
                return self.messages
            if self.proc.poll() is not None and wanted != "STOPPING":
                break
        raise AssertionError(f"no {wanted!r} from the agent; got {self.messages}; output: {self.output()}")

    def output(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stdout.read() if self.proc.stdout else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


#: Starts the agent with extra environment variables.
StartAgent = Callable[..., Agent]


@pytest.fixture
def agent(drop: Path, tmp_path: Path) -> Iterator[StartAgent]:
    started: list[Agent] = []

    def start(**env: str) -> Agent:
        a = Agent(drop, tmp_path / "state", tmp_path / f"notify-{len(started)}.sock", env)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


def wait_until(condition: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_ready_watchdog_status_and_clean_stop(agent: StartAgent, drop: Path) -> None:
    a = agent(WATCHDOG_USEC="400000")
    messages = a.receive_until("READY=1")
    assert any(m.startswith("STATUS=watching 1 folder") for m in messages)
    a.messages.clear()
    t0 = time.monotonic()
    a.receive_until("WATCHDOG=1")
    a.messages.clear()
    a.receive_until("WATCHDOG=1")
    assert time.monotonic() - t0 < 1.5, "pings at half of WATCHDOG_USEC (0.2 s)"
    write(drop / "run-1" / "a.csv", "1\n")
    wait_until(lambda: Path(f"{drop}/run-1/a.csv.fair.json").exists())
    a.proc.send_signal(signal.SIGTERM)
    a.receive_until("STOPPING=1")
    assert a.proc.wait(timeout=20) == 0
    out = a.output()
    assert '"event": "stopped; 0 batch(es) left for the next start"' in out


def test_sigint_stops_cleanly_too(agent: StartAgent) -> None:
    a = agent()
    a.receive_until("READY=1")
    a.proc.send_signal(signal.SIGINT)
    assert a.proc.wait(timeout=20) == 0


def test_second_signal_forces_exit_and_the_batch_is_redone(
    agent: StartAgent, drop: Path, tmp_path: Path
) -> None:
    a = agent(FAIR_AGENT_SHUTDOWN_GRACE_S="60")
    a.receive_until("READY=1")
    time.sleep(0.3)  # the start-up reconciliation has run
    # Hold the ledger's write lock, so the batch stops at its commit (its sidecar already written).
    blocker = sqlite3.connect(tmp_path / "state" / "ledger.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        write(drop / "run-1" / "a.csv", "1\n")
        wait_until(lambda: Path(f"{drop}/run-1/a.csv.fair.json").exists())
        a.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert a.proc.poll() is None, "the first signal waits for the batch in flight"
        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(timeout=10) == 4
        assert time.monotonic() - t0 < 5
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with opened_db(tmp_path / "state" / "ledger.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM files").fetchone() == (0,), "no ledger row for work not done"
    sidecar_before = Path(f"{drop}/run-1/a.csv.fair.json").read_bytes()
    # The next start redoes the batch: same sidecar bytes, one ledger row.
    b = agent()
    b.receive_until("READY=1")
    wait_until(
        lambda: (
            sqlite3.connect(tmp_path / "state" / "ledger.sqlite3")
            .execute("SELECT count(*) FROM files")
            .fetchone()
            == (1,)
        )
    )
    assert Path(f"{drop}/run-1/a.csv.fair.json").read_bytes() == sidecar_before
    b.proc.send_signal(signal.SIGTERM)
    assert b.proc.wait(timeout=20) == 0


def test_sighup_as_soon_as_the_lock_names_the_service_does_not_kill_it(
    agent: StartAgent, tmp_path: Path
) -> None:
    a = agent()
    lock = tmp_path / "state" / "agent.lock"
    wait_until(lambda: lock.exists() and lock.read_text().strip() != "", timeout=30)
    a.proc.send_signal(signal.SIGHUP)  # what `fair-agent replay` does to the holder of the lock
    a.receive_until("READY=1")
    time.sleep(0.3)
    assert a.proc.poll() is None, "SIGHUP must ask for a reconciliation, never end the service"
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(timeout=20) == 0
