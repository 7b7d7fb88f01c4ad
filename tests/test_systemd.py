"""The unit under a real systemd: booted as PID 1 of a private PID namespace in a Debian root.

No container engine: debootstrap builds a minimal bookworm with systemd (cached between runs),
systemd/install.sh installs the agent from wheels built from this checkout, and systemd boots
with ``unshare --pid --fork --mount-proc --mount chroot``. Everything is driven through
``nsenter ... systemctl``; every process started is ended by PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import REPO, opened_db, read_sidecar
from .s3server import S3Server

PACKAGES = "systemd,systemd-sysv,dbus,python3,python3-venv,acl"
CACHE = Path(os.environ.get("FAIR_AGENT_TEST_CACHE", Path.home() / ".cache" / "fair-agent-tests"))
ROOTFS = CACHE / "bookworm-systemd-acl"
WATCHDOG_S = 3
MAX_EXPOSURE = 2.0
#: A burst big enough to start a helper process (offload.FILES_PER_PROCESS files wait for a worker).
BURST_SESSIONS, BURST_FILES = 60, 100
#: From the helper's start to the stop: time to get ready and take batches, not to finish the burst.
HELPER_AT_WORK_S = 1.0


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot and namespaces)"
    for tool in ("debootstrap", "unshare", "nsenter", "chroot"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install debootstrap util-linux)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def run(*cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


def debian_root() -> Path:
    """A minimal Debian with systemd and Python, built once and kept (about a minute)."""
    if (ROOTFS / ".complete").exists():
        return ROOTFS
    building = ROOTFS.with_name(ROOTFS.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(building)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if result.returncode != 0:
        pytest.fail(f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    (building / ".complete").touch()
    building.rename(ROOTFS)
    return ROOTFS


def dependency_wheels() -> Path:
    """The wheels of the agent's dependencies (with the transform extra), fetched once for each
    pyproject.toml and Python and kept: resolving and fetching them was 15 s of every run. The
    agent's own wheel is not among them; each run builds it from the checkout."""
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + sys.version.encode()).hexdigest()[:16]
    folder = CACHE / f"wheels-{key}"
    if (folder / ".complete").exists():
        return folder
    for stale in CACHE.glob("wheels-*"):  # of a pyproject.toml of the past, or a build cut short
        shutil.rmtree(stale)
    building = folder.with_name(folder.name + ".building")
    building.parent.mkdir(parents=True, exist_ok=True)
    build_wheels(building, f"{REPO}[transform]")
    for own in building.glob("fair_agent-*.whl"):
        own.unlink()
    (building / ".complete").touch()
    building.rename(folder)
    return folder


def build_wheels(folder: Path, requirement: str, *, no_deps: bool = False) -> None:
    options = ["--no-deps"] if no_deps else []
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", *options, "--wheel-dir", str(folder), requirement],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]


class Machine:
    """systemd as PID 1 of a new PID and mount namespace, chrooted into ``root``."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self._log = log.open("w")
        # The root must be a mount point for systemd to build the service's mount namespace:
        # bind it onto itself (with the /proc that unshare mounted) inside the new namespace.
        boot = 'mount --rbind "$0" "$0" && exec chroot "$0" /lib/systemd/systemd --system'
        self.unshare = subprocess.Popen(
            [
                "unshare",
                "--pid",
                "--fork",
                f"--mount-proc={root}/proc",
                "--mount",
                "sh",
                "-c",
                boot,
                str(root),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self._init_pid()
        self._wait_for_manager()

    def _init_pid(self) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children")
            if children.exists() and children.read_text().split():
                return int(children.read_text().split()[0])
            time.sleep(0.05)
        raise AssertionError("systemd did not start")

    def _wait_for_manager(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = self.ctl("is-system-running", check=False).stdout.strip()
            if state in ("starting", "running", "degraded"):
                return
            time.sleep(0.2)
        raise AssertionError(f"systemd's manager did not come up: {state!r}")

    def sh(self, *cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("nsenter", "-t", str(self.pid), "-p", "-m", "-r", "-w", *cmd, timeout=timeout, check=check)

    def ctl(self, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return self.sh("systemctl", "--no-pager", *args, check=check, timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.ctl("show", unit, *(f"-p{p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self) -> str:
        return self.sh("journalctl", "-u", "fair-agent", "--no-pager", "-o", "cat", check=False).stdout[
            -6000:
        ]

    def end(self) -> None:
        """Power off; whatever is left is killed by PID."""
        try:
            self.ctl("poweroff", check=False, timeout=20)
            self.unshare.wait(timeout=30)
        except (subprocess.TimeoutExpired, OSError):
            pass
        for pid in (self.pid, self.unshare.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.unshare.wait(timeout=30)
        self._log.close()


@pytest.fixture
def machine(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> Iterator[Machine]:
    root = tmp_path / "root"
    # A fresh copy of the cached root for each run: nothing leaks from one run into the next.
    run("cp", "-a", str(debian_root()), str(root), timeout=600)
    wheels = root / "opt" / "wheels"
    shutil.copytree(dependency_wheels(), wheels, ignore=shutil.ignore_patterns(".complete"))
    build_wheels(wheels, str(REPO), no_deps=True)
    source = root / "opt" / "src"
    for part in ("systemd", "rules"):
        shutil.copytree(REPO / part, source / part)
    installed = run(
        "chroot",
        str(root),
        "sh",
        "/opt/src/systemd/install.sh",
        "--watch",
        "/srv/drop",
        "--wheels",
        "/opt/wheels",
        "--no-start",
        timeout=600,
    )
    assert "fair-agent installed" in installed.stdout, installed.stdout + installed.stderr
    dropin = root / "etc" / "systemd" / "system" / "fair-agent.service.d" / "watch.conf"
    assert 'ReadWritePaths="/srv/drop"' in dropin.read_text()
    # The facility's object store joins the configuration, its credentials a root-only file.
    config = root / "etc" / "fair-agent" / "agent.toml"
    config.write_text(
        config.read_text() + f'\n[store]\nendpoint = "{s3_server.endpoint_url}"\nbucket = "{s3_bucket}"\n'
    )
    keys = f"aws_access_key_id = {s3_server.access_key}\naws_secret_access_key = {s3_server.secret_key}\n"
    (root / "etc" / "fair-agent" / "s3.credentials").write_text("[default]\n" + keys)
    # Run again (an upgrade): agent.toml is kept, and the drop-ins are made from it again.
    again = run(
        "chroot", str(root), "sh", "/opt/src/systemd/install.sh", "--wheels", "/opt/wheels", "--no-start"
    )
    assert 'ReadWritePaths="/srv/drop"' in dropin.read_text(), again.stdout
    store_dropin = (dropin.parent / "store.conf").read_text()
    assert "IPAddressAllow=127.0.0.1" in store_dropin
    assert "LoadCredential=s3.credentials:/etc/fair-agent/s3.credentials" in store_dropin
    assert (root / "etc" / "fair-agent" / "s3.credentials").stat().st_mode & 0o777 == 0o600
    # A folder the configuration does not watch is refused, not half-installed.
    other = run(
        "chroot",
        str(root),
        "sh",
        "/opt/src/systemd/install.sh",
        "--watch",
        "/srv/xrd",
        "--wheels",
        "/opt/wheels",
        "--no-start",
        check=False,
    )
    assert other.returncode == 1 and "add a [[roots]] table" in other.stderr
    # Test timings: a short quiet period, a short watchdog.
    config.write_text(re.sub(r"(?m)^quiet_period_s = 30", "quiet_period_s = 1", config.read_text()))
    dropin = root / "etc" / "systemd" / "system" / "fair-agent.service.d" / "test.conf"
    dropin.write_text(f"[Service]\nWatchdogSec={WATCHDOG_S}\n")
    booted = Machine(root, tmp_path / "systemd.log")
    try:
        yield booted
    finally:
        booted.end()


def full_journal(machine: Machine) -> str:
    """The unit's journal from its first line, the service's and systemd's about it."""
    return machine.sh("journalctl", "-u", "fair-agent", "--no-pager", "-o", "cat").stdout


def wait_until(machine: Machine, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the unit's journal:\n{machine.journal()}")
        time.sleep(0.2)


def test_the_unit_runs_sandboxed_under_a_real_systemd(
    machine: Machine, s3_server: S3Server, s3_bucket: str
) -> None:
    # Type=notify: start returns once the agent said READY=1.
    started = machine.ctl("start", "fair-agent.service", check=False)
    assert started.returncode == 0, started.stderr + machine.journal()
    state = machine.show(
        "fair-agent.service", "ActiveState", "SubState", "MainPID", "NRestarts", "WatchdogUSec", "User"
    )
    assert state["ActiveState"] == "active" and state["SubState"] == "running", state
    assert state["User"] == "fair-agent" and state["WatchdogUSec"] == f"{WATCHDOG_S}s"
    main_pid = state["MainPID"]

    # An instrument drops a session; the sandboxed service writes sidecars and a crate beside it,
    # validated and enriched by the shipped rules.
    drop = machine.root / "srv" / "drop"
    session = drop / "EXP-000123_alice"
    session.mkdir()
    for sample in sorted((REPO / "sample_data" / "EXP-000123_alice").iterdir()):
        shutil.copy(sample, session / sample.name)
    wait_until(machine, lambda: (session / "ro-crate-metadata.json").exists(), "the session's crate")
    for sample in (REPO / "sample_data" / "EXP-000123_alice").iterdir():
        assert (session / f"{sample.name}.fair.json").exists()
    sidecar = read_sidecar(session / "OD600_kinetics.csv")
    assert sidecar["validation"]["status"] == "valid" and sidecar["instrument"]["serialNumber"] == "PMN-20419"
    assert (machine.root / "var" / "lib" / "fair-agent" / "ledger.sqlite3").exists()
    # ...and ships it to the object store, credentials handed over by systemd (LoadCredential=).
    key = f"sha256/{sidecar['sha256']}"

    def shipped() -> bool:
        return bool(s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix=key).get("KeyCount"))

    wait_until(machine, shipped, "the file in the object store")

    # The watchdog keeps it alive well past WatchdogSec: same process, no restart.
    time.sleep(WATCHDOG_S * 2.5)
    later = machine.show("fair-agent.service", "ActiveState", "MainPID", "NRestarts")
    assert later == {"ActiveState": "active", "MainPID": main_pid, "NRestarts": "0"}, later
    status = machine.show("fair-agent.service", "StatusText")["StatusText"]
    assert "3 file(s) ingested" in status, status

    # The sandbox: nothing outside the state directory and the watched folder may be written.
    journal = full_journal(machine)
    assert "Permission denied" not in journal and "Read-only file system" not in journal, journal
    security = machine.sh("systemd-analyze", "security", "--no-pager", "fair-agent.service").stdout
    rated = re.search(r"Overall exposure level for fair-agent\.service: ([\d.]+)", security)
    assert rated is not None, security
    exposure = float(rated.group(1))
    assert exposure <= MAX_EXPOSURE, security

    # A stuck event loop is what the watchdog is for: stop the process, systemd restarts it.
    machine.ctl("kill", "--signal=SIGSTOP", "fair-agent.service")

    def restarts() -> str:
        return machine.show("fair-agent.service", "NRestarts")["NRestarts"]

    def active() -> str:
        return machine.show("fair-agent.service", "ActiveState")["ActiveState"]

    wait_until(machine, lambda: restarts() == "1", "a watchdog restart", timeout=WATCHDOG_S * 6)
    wait_until(machine, lambda: active() == "active", "active again")
    assert "Watchdog timeout" in machine.sh("journalctl", "-u", "fair-agent", "--no-pager").stdout

    # A burst starts a helper process; stopped in the middle of it, the service ends its helper
    # itself (KillMode=mixed), which finishes the batches it holds within the grace period.
    sessions = [drop / f"burst-{s:02d}" for s in range(BURST_SESSIONS)]
    burst = [session / f"well-{i:03d}.csv" for session in sessions for i in range(BURST_FILES)]
    for n, path in enumerate(burst):
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"time,od\n{n},0.{n:05d}\n{n + 1},0.5\n")
    wait_until(machine, lambda: "starting a helper process" in full_journal(machine), "a helper process")
    time.sleep(HELPER_AT_WORK_S)

    # A clean stop: SIGTERM, a graceful exit with status 0.
    before_stop = len(full_journal(machine))
    stopped = machine.ctl("stop", "fair-agent.service", check=False)
    assert stopped.returncode == 0, stopped.stderr
    final = machine.show("fair-agent.service", "ActiveState", "Result", "ExecMainStatus")
    assert final == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, final
    stopping = full_journal(machine)[before_stop:]
    # Neither a helper signalled by systemd (its batches lost) nor a process left for SIGKILL.
    assert "a helper process ended" not in stopping and "Killing process" not in stopping, stopping[-6000:]

    # Started again, it ingests what the stop left, each file once.
    assert machine.ctl("start", "fair-agent.service", check=False).returncode == 0, machine.journal()
    wait_until(
        machine,
        lambda: all(Path(f"{f}.fair.json").exists() for f in burst),
        "the burst's sidecars",
        timeout=120,
    )
    assert machine.ctl("stop", "fair-agent.service", check=False).returncode == 0
    ledger = machine.root / "var" / "lib" / "fair-agent" / "ledger.sqlite3"
    with opened_db(ledger) as db:
        rows = db.execute("SELECT relpath, count(*), max(version) FROM files GROUP BY relpath").fetchall()
    ingested = {relpath: (count, version) for relpath, count, version in rows}
    assert all(ingested[f"{f.parent.name}/{f.name}"] == (1, 1) for f in burst), "a file ingested twice"
