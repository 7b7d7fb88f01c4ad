"""What the real test servers (S3, NATS, PostgreSQL) share: dying with the test process, their log,
and the log's tail in the report of a failed test that used them."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

LOG_TAIL_LINES = 60
# Linux's prctl(PR_SET_PDEATHSIG): the server dies with the test process even if pytest is killed -9.
# (Strictly with the thread that started it, so call start() from the main thread.)
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A subprocess's preexec_fn: SIGKILL when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def stop_gracefully(process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if the server has not ended within ``timeout_s``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def startup_times(seconds: list[float]) -> str:
    """A server's start-up times for the terminal summary: ``0.80, 0.58``."""
    return ", ".join(f"{s:.2f}" for s in seconds)


class ServerLog:
    """The server's log file, read from an offset (what it wrote during one test)."""

    log_path: Path

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_text(self, since: int = 0) -> str:
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def log_tail(self, since: int = 0, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text(since).splitlines()[-lines:])


def report_server_log(
    item: pytest.Item,
    call: pytest.CallInfo[None],
    report: Any,
    server: ServerLog | None,
    offset_key: pytest.StashKey[int],
    title: str,
) -> None:
    """From a makereport hook: note the log's size at setup; on failure, add what it grew by."""
    if server is None:
        return
    if call.when == "setup":
        item.stash[offset_key] = server.log_size()
    elif report.failed:
        since = item.stash.get(offset_key, 0)
        with contextlib.suppress(OSError):
            report.sections.append((title, f"{server.log_path}\n{server.log_tail(since)}"))
