"""Shared fixtures: real folders in tmp_path, a real SQLite ledger, the real validator."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.core.config import AgentConfig, RetrySettings
from agent.core.naming import CRATE_NAME, error_name, sidecar_name
from agent.ledger import Ledger
from agent.service.scan import ScanReport, scan

pytest_plugins = ["tests.s3server", "tests.natsserver", "tests.pgserver"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
VALIDATE_CRATE = SHARED / "tools" / "validate-crate"

# The suite starts the agent's processes hundreds of times (CLI runs, extraction workers, a shared
# scan's children, the chaos rounds). Where the environment forbids bytecode, as CI's does, each
# compiled the package's ~150 modules again: 0.25 s a start on the test machine. They may write it
# (into __pycache__, which git ignores), as an installed agent's would be.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sha256sum(path: Path) -> str:
    """coreutils' answer, as an outside witness."""
    out = subprocess.run(["sha256sum", "--", str(path)], capture_output=True, check=True, text=True).stdout
    return out.split()[0]


def validate_crate(folder: Path, level: str = "REQUIRED") -> subprocess.CompletedProcess[str]:
    """Run the community RO-Crate validator (offline) on a crate folder, at REQUIRED or RECOMMENDED."""
    return validate_crates([folder], level)[0]


def validate_crates(
    folders: Sequence[Path], level: str = "REQUIRED"
) -> list[subprocess.CompletedProcess[str]]:
    """validate_crate on several crates at once: the validator takes about 5 s a crate, on one core."""
    if not VALIDATE_CRATE.exists():
        pytest.skip(f"validate-crate not found at {VALIDATE_CRATE}")
    commands = [
        [sys.executable, str(VALIDATE_CRATE), str(folder), "-p", "ro-crate-1.2", "-l", level]
        for folder in folders
    ]
    running = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    try:
        results = []
        for command, process in zip(commands, running, strict=True):
            out, err = process.communicate(timeout=300)
            results.append(subprocess.CompletedProcess(command, process.returncode, out, err))
        return results
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    # Tiny retry delays: retries are exercised for real, without slowing the suite.
    return AgentConfig(
        state_dir=tmp_path / "state",
        retry=RetrySettings(attempts=3, base_delay_s=0.01, max_delay_s=0.05),
    )


@pytest.fixture
async def ledger(config: AgentConfig) -> AsyncIterator[Ledger]:
    async with Ledger.open(config.ledger_path) as led:
        yield led


async def run_scan(path: Path, config: AgentConfig, **kwargs: object) -> ScanReport:
    """One scan with its own ledger connection, as the CLI does it."""
    async with Ledger.open(config.ledger_path) as led:
        return await scan(path, config, led, **kwargs)  # type: ignore[arg-type]


def read_json(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(value, dict), path
    return value


@contextlib.contextmanager
def opened_db(database: str | Path, **options: Any) -> Iterator[sqlite3.Connection]:
    """``with opened_db(database) as db``, committed (rolled back on an error), and the
    connection closed after it: sqlite3's own with-block leaves it to the garbage collector, which
    may close it in the middle of another test (one once did, during a count of open descriptors)."""
    with contextlib.closing(sqlite3.connect(database, **options)) as db, db:
        yield db


def read_sidecar(path: Path) -> dict[str, Any]:
    """The ``<file>.fair.json`` of a data file, parsed."""
    return read_json(Path(sidecar_name(str(path))))


def read_error_file(path: Path) -> dict[str, Any]:
    """The ``.fair.error.json`` beside a data file or a session folder, parsed."""
    return read_json(Path(error_name(str(path))))


def read_crate(folder: Path) -> dict[str, Any]:
    """A session folder's ``ro-crate-metadata.json``, parsed."""
    return read_json(folder / CRATE_NAME)


def dead_letters(config: AgentConfig) -> list[tuple[str, str, str]]:
    """(path, category, error class) of every dead letter in the ledger."""
    with opened_db(config.ledger_path) as db:
        return db.execute(
            "SELECT relpath, category, error_class FROM dead_letters ORDER BY relpath"
        ).fetchall()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def copy_corpus(dest: Path) -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    for part in ("eln", "instruments"):
        shutil.copytree(CORPUS / part, dest / part)
    for folder, _, files in os.walk(dest):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(Path(folder) / name, 0o644)
    return dest


def without_dac_override(cmd: list[str]) -> list[str]:
    """``cmd`` run without the capabilities that let root read and write any file (under root;
    anyone else has none): file modes then bind it as they bind an ordinary service user."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: cannot drop DAC override")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *cmd]


def agent_cli(
    *args: str, env: dict[str, str] | None = None, drop_dac: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real ``fair-agent`` entry point in a subprocess.

    ``drop_dac`` removes the capabilities that let root read any file, so that a file with mode
    000 is as unreadable to the agent as it would be to an ordinary service user.
    """
    cmd = [sys.executable, "-m", "agent.cli", *args]
    if drop_dac:
        cmd = without_dac_override(cmd)
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=REPO)


async def wait_for(condition: Callable[[], bool], timeout: float = 20.0, interval: float = 0.02) -> None:
    """Wait for a condition with a deadline, instead of sleeping for a fixed time."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def live_config(config: AgentConfig, *roots: Path, **completion: object) -> AgentConfig:
    """The test config watching ``roots`` with short timings."""
    policy = {"quiet_period_s": 0.4, "stability_look_s": 0.1, **completion}
    return AgentConfig.model_validate(
        {
            **config.model_dump(),
            "roots": [{"path": r} for r in roots],
            "completion": policy,
            "reconcile_interval_s": 3600,
            "shutdown_grace_s": 5,
        }
    )


@contextlib.contextmanager
def appending(path: Path, *, pause: float = 0.0005, for_s: float | None = None) -> Iterator[None]:
    """A writer thread that keeps appending to ``path`` (for ``for_s`` seconds, or until the block ends)."""
    stop = threading.Event()

    def write() -> None:
        deadline = None if for_s is None else time.monotonic() + for_s
        with path.open("ab") as f:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                f.write(b"x")
                f.flush()
                time.sleep(pause)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()
