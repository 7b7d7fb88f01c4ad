"""A real PostgreSQL for the tests: a throw-away PostgreSQL 15 cluster from Debian's packages, never a mock.

Invariants:
- The cluster is the server object's own: made by initdb in its directory on first start, never the
  Debian package's cluster (port 5432, /var/run/postgresql), whatever that one is doing.
- The server listens on 127.0.0.1 only, on a port the kernel picked, and on a unix socket inside its
  directory. Every connection, TCP or socket, authenticates with a password (scram-sha-256) as the
  superuser `fair`; `dsn` carries no password.
- PostgreSQL refuses to run as root: under root the cluster belongs to, and the server runs as, the
  unprivileged system user `fair-agent-pg` (made with useradd when missing), so the directory must be
  reachable by that user (`tempfile.gettempdir()` is; pytest's private tmp_path is not).
- The data directory and the port belong to the server object, not to one process: `stop()` or
  `kill()` followed by `start()` brings back the same databases on the same port (after a kill, through
  PostgreSQL's own crash recovery).
- Durability is traded for speed (fsync off): data survives the server's death, not the machine's.

Registered as a pytest plugin by `tests/conftest.py`; the fixtures are `pg_server` (one per session,
started on first use) and `pg_database` (a fresh database per test, its DSN). Tests using them are
marked `postgres`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.s3server import free_loopback_ports

from .serverkit import ServerLog, die_with_parent, report_server_log, startup_times

__all__ = ["PostgresServer", "PostgresServerError", "postgres_bindir"]

SERVICE_USER = "fair-agent-pg"
SUPERUSER = "fair"
_DEBIAN_BINDIR = Path("/usr/lib/postgresql/15/bin")
_START_TIMEOUT_S = 60.0  # crash recovery after a kill included
_STOP_TIMEOUT_S = 30.0
# A database name the tests may ask for: no quoting needed anywhere.
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# For speed, at the cost of durability nobody needs from a throw-away cluster:
_SETTINGS = {
    "fsync": "off",  # never wait for the disk: only an OS crash could lose data
    "full_page_writes": "off",  # less WAL after each checkpoint (torn pages need an OS crash too)
    # synchronous_commit stays on: a commit then costs a write() (no fsync), and a committed row
    # survives kill -9. With it off, a kill right after 200 one-row commits lost the last 44.
    "wal_level": "minimal",  # the least WAL; no replication
    "max_wal_senders": "0",  # which wal_level=minimal requires
    "jit": "off",  # compiling short test queries with LLVM costs more than it saves
    # Deterministic for the tests, whatever the machine's environment says.
    "timezone": "UTC",
    "log_timezone": "UTC",
}


class PostgresServerError(RuntimeError):
    """The PostgreSQL server could not be made, did not come up, or went away; with its log's tail."""


def postgres_bindir() -> Path:
    """Where PostgreSQL 15's server programs are: Debian's directory, or what `pg_config` says."""
    if (_DEBIAN_BINDIR / "initdb").is_file():
        return _DEBIAN_BINDIR
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(found.stdout.strip())
        if found.returncode == 0 and (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise PostgresServerError("no PostgreSQL server programs: install Debian's postgresql-15 (see .ci/run)")


def _service_account() -> pwd.struct_passwd | None:
    """The account the server runs as when the tests run as root (made if missing); None otherwise."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVICE_USER)
    made = subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "fair-agent test PostgreSQL",
            SERVICE_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # 9: another test process made it meanwhile.
    if made.returncode not in (0, 9):
        raise PostgresServerError(f"useradd {SERVICE_USER} failed: {made.stderr.strip()}")
    return pwd.getpwnam(SERVICE_USER)


def _reachable_by(account: pwd.struct_passwd, directory: Path) -> Path | None:
    """The first directory above `directory` that `account` may not enter, or None if all are open."""
    for folder in reversed(directory.resolve().parents):
        mode = folder.stat()
        if mode.st_uid == account.pw_uid:
            allowed = stat.S_IXUSR
        elif mode.st_gid == account.pw_gid:
            allowed = stat.S_IXGRP
        else:
            allowed = stat.S_IXOTH
        if not mode.st_mode & allowed:
            return folder
    return None


class PostgresServer(ServerLog):
    """One PostgreSQL 15 cluster on loopback, restartable on the same port and data."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data_dir = directory / "data"
        self.log_path = directory / "postgres.log"
        self.password = secrets.token_hex(16)
        (self.port,) = free_loopback_ports(1)
        self.initdb_seconds: float | None = None
        self.startup_seconds: list[float] = []
        self._bindir = postgres_bindir()
        self._account = _service_account()
        self._process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        if self._account is not None:
            closed = _reachable_by(self._account, directory)
            if closed is not None:
                raise PostgresServerError(
                    f"{SERVICE_USER} cannot reach {directory}: {closed} is closed to it; "
                    "make the cluster under a directory every user may enter, such as "
                    f"{tempfile.gettempdir()}"
                )
            os.chown(directory, self._account.pw_uid, self._account.pw_gid)
        directory.chmod(0o700)

    @property
    def dsn(self) -> str:
        """The `postgres` database's DSN, without the password (pass `password=` to the driver)."""
        return self.database_dsn("postgres")

    def database_dsn(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def dsn_with_password(self, database: str = "postgres") -> str:
        """A DSN with the password inside, for tools that take nothing else. Keep it out of logs."""
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def socket_dir(self) -> Path:
        return self.directory

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The postmaster's PID (the backends are its children, in its process group)."""
        return self._process.pid if self.running and self._process is not None else None

    def create_database(self, name: str) -> str:
        """Create the database `name` (it must not exist yet) and return its DSN, without the password."""
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(f"a test database's name must match {_DATABASE_NAME.pattern}, not {name!r}")
        made = subprocess.run(
            [
                str(self._bindir / "createdb"),
                "--host=127.0.0.1",
                f"--port={self.port}",
                f"--username={SUPERUSER}",
                "--no-password",
                name,
            ],
            env={**self._environment(), "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if made.returncode != 0:
            raise PostgresServerError(f"createdb {name} failed: {made.stderr.strip()}")
        return self.database_dsn(name)

    def start(self) -> None:
        """Start the server (no-op when running), after initdb on first use; return once it accepts."""
        if self.running:
            return
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        began = time.monotonic()
        options = {
            **_SETTINGS,
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
        }
        with self.log_path.open("ab") as log:
            log.write(f"\n--- postgres start, port {self.port}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [
                    str(self._bindir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    *(f"--{name}={value}" for name, value in options.items()),
                ],
                cwd=self.directory,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group, so that kill() takes the backends down with the postmaster.
                start_new_session=True,
                **self._as_service_user(),
            )
        try:
            self._wait_until_ready(began + _START_TIMEOUT_S)
        except BaseException:
            self.kill()
            raise
        self.startup_seconds.append(time.monotonic() - began)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are cut, a checkpoint is written), or kill() when that hangs."""
        process = self._process
        if process is None or process.poll() is not None:
            self._process = None
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
        self._process = None

    def kill(self) -> None:
        """kill -9 of the postmaster and its backends, a crash: the next start runs crash recovery."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def _initdb(self) -> None:
        began = time.monotonic()
        password_file = self.directory / "initdb.password"
        password_file.write_text(self.password)
        password_file.chmod(0o600)
        if self._account is not None:
            os.chown(password_file, self._account.pw_uid, self._account.pw_gid)
        try:
            made = subprocess.run(
                [
                    str(self._bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    f"--username={SUPERUSER}",
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    # The cluster is thrown away: no need to fsync what initdb writes.
                    "--no-sync",
                ],
                cwd=self.directory,
                env=self._environment(),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                **self._as_service_user(),
            )
        finally:
            password_file.unlink()
        with self.log_path.open("a") as log:
            log.write(made.stdout + made.stderr)
        if made.returncode != 0:
            raise PostgresServerError(f"initdb failed; its output ends:\n{self.log_tail()}")
        self.initdb_seconds = time.monotonic() - began

    def _as_service_user(self) -> dict[str, Any]:
        # The postmaster dies with the test process even if pytest is killed -9, and its backends
        # follow it. subprocess switches user before it calls preexec_fn (a change of user clears
        # the parent-death signal), so the signal survives.
        on_parent_death = die_with_parent if sys.platform == "linux" else None
        if self._account is None:
            return {"preexec_fn": on_parent_death}
        return {
            "user": self._account.pw_uid,
            "group": self._account.pw_gid,
            "extra_groups": [],
            "preexec_fn": on_parent_death,
        }

    def _environment(self) -> dict[str, str]:
        # libpq's PG* variables (PGHOST, PGDATABASE, PGPASSWORD...) would point the tools elsewhere;
        # LC_* and LANG are left out so the server's messages are the same on every machine.
        inherited = {
            name: value for name, value in os.environ.items() if not re.match(r"(PG|LC_|LANG)", name)
        }
        return {**inherited, "LANG": "C.UTF-8"}

    def _wait_until_ready(self, deadline: float) -> None:
        # pg_ctl's own test: the postmaster.pid file's last line says "ready" once connections are
        # accepted (after crash recovery, if any).
        pid_file = self.data_dir / "postmaster.pid"
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise PostgresServerError(
                    f"postgres exited during start-up; its log ends:\n{self.log_tail()}"
                )
            with contextlib.suppress(FileNotFoundError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[0] == str(self._process.pid) and lines[7].strip() == "ready":
                    return
            time.sleep(0.01)
        waited = f"postgres did not accept connections within {_START_TIMEOUT_S:.0f} s"
        raise PostgresServerError(f"{waited}; its log ends:\n{self.log_tail()}")


_SERVER_KEY = pytest.StashKey[PostgresServer]()
_LOG_OFFSET_KEY = pytest.StashKey[int]()
_FIXTURES = ("pg_server", "pg_database")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: uses the real PostgreSQL server (deselect with -m 'not postgres')"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if set(_FIXTURES) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """The session's PostgreSQL, started on first use, stopped by PID and removed at the end of the session.

    Its directory is in the system's temporary directory rather than pytest's, which is closed to the
    service user when the tests run as root; a failed test's report carries the server's log.
    """
    directory = Path(tempfile.mkdtemp(prefix="fair-agent-pg-"))
    try:
        server = PostgresServer(directory)
        request.config.stash[_SERVER_KEY] = server
        try:
            server.start()
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database named after the test; its DSN, without the password (`pg_server.password`)."""
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:50]
    return pg_server.create_database(f"t_{stem}_{uuid.uuid4().hex[:8]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # A failed test that used the server shows what the server logged while it ran.
    report = yield
    if not set(_FIXTURES) & set(getattr(item, "fixturenames", ())):
        return report
    report_server_log(
        item, call, report, item.config.stash.get(_SERVER_KEY, None), _LOG_OFFSET_KEY, "postgres log"
    )
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    server = config.stash.get(_SERVER_KEY, None)
    if server is not None and server.startup_seconds:
        took = startup_times(server.startup_seconds)
        initdb = f"initdb {server.initdb_seconds:.2f} s, " if server.initdb_seconds is not None else ""
        terminalreporter.write_line(
            f"PostgreSQL server: {initdb}ready after {took} s (127.0.0.1:{server.port})"
        )
