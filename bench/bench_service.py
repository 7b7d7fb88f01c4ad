"""Benchmarks for the live service (`fair-agent run` as a subprocess), each beside its baseline.

Scenarios (data generated under --dir, default bench/.data, removed afterwards unless --keep):

  latency  200 drops of a small file, each into its own session: time from the last write to the
           sidecar on disk. Baseline: the quiet period, the wait the design imposes. Target: p95 at
           most quiet period + 500 ms.
  burst    50,000 small files in 500 sessions written as fast as possible into the watched folder:
           all ingested, peak RSS of the service at most 300 MB, files/s reported beside a one-shot
           `fair-agent scan` of the same tree.
  restart  the service restarted over 100,000 already-ingested files: the start-up reconciliation
           done in at most 20 s with zero bytes hashed, beside a `find -type f` of the same tree.

    python bench/bench_service.py                    # all scenarios
    python bench/bench_service.py burst --files 5000 --sessions 50
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from benchkit import run_scenarios  # noqa: E402  (bench/ is the script folder, on sys.path)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quiet", type=float, default=1.0, help="quiet period for the latency run, seconds")
    parser.add_argument("--drops", type=int, default=200)
    parser.add_argument("--files", type=int, default=50_000, help="files in the burst")
    parser.add_argument("--sessions", type=int, default=500, help="sessions in the burst")
    parser.add_argument("--restart-files", type=int, default=100_000)
    return run_scenarios(parser, {"latency": bench_latency, "burst": bench_burst, "restart": bench_restart})


class Service:
    """`fair-agent run` in a subprocess; its JSON log lines are collected as they come."""

    def __init__(self, drop: Path, state: Path, **settings: str) -> None:
        env = {**os.environ, **{f"FAIR_AGENT_{k.upper()}": v for k, v in settings.items()}}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--watch", str(drop), "--state-dir", str(state)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.events: list[dict[str, object]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def wait_for_event(self, prefix: str, timeout: float = 600) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if str(event["event"]).startswith(prefix):
                    return event
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"the service never logged {prefix!r}")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self._reader.join(timeout=5)


def ledger_files(state: Path) -> int:
    try:
        with sqlite3.connect(state / "ledger.sqlite3", timeout=30) as db:
            return int(db.execute("SELECT count(*) FROM files").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


# --- latency -----------------------------------------------------------------------------------


def bench_latency(args: argparse.Namespace) -> list[tuple[str, bool]]:
    root = args.dir / "latency"
    shutil.rmtree(root, ignore_errors=True)
    (root / "drop").mkdir(parents=True)
    service = Service(
        root / "drop",
        root / "state",
        completion__quiet_period_s=str(args.quiet),
        completion__stability_look_s="0.25",
    )
    latencies: list[float] = []
    try:
        service.wait_for_event("watching 1 folder")
        pending: dict[Path, float] = {}
        for i in range(args.drops):
            target = root / "drop" / f"session-{i:04d}" / "reading.csv"
            target.parent.mkdir()
            with target.open("w") as f:
                f.write("t,value\n")
                f.flush()
                f.write(f"{i},{i * 0.5}\n")
            pending[Path(f"{target}.fair.json")] = time.monotonic()  # the last write
            time.sleep(0.05)  # 20 drops a second, so many sessions are in their quiet period at once
            _collect(pending, latencies)
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            _collect(pending, latencies)
            time.sleep(0.002)
    finally:
        service.stop()
    latencies.sort()
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))]
    print(
        f"\nLatency, last write -> sidecar on disk, {len(latencies)} drops, quiet period {args.quiet:.1f} s"
    )
    print(f"  baseline: the quiet period          {args.quiet * 1000:7.0f} ms")
    print(
        f"  p50                                 {p50 * 1000:7.0f} ms  (+{(p50 - args.quiet) * 1000:.0f} ms)"
    )
    print(
        f"  p95                                 {p95 * 1000:7.0f} ms  (+{(p95 - args.quiet) * 1000:.0f} ms)"
    )
    print(f"  max                                 {latencies[-1] * 1000:7.0f} ms")
    ok = len(latencies) == args.drops and p95 <= args.quiet + 0.5
    return [
        (
            f"latency p95 {p95 * 1000:.0f} ms <= quiet period + 500 ms ({(args.quiet + 0.5) * 1000:.0f} ms), "
            f"{len(latencies)}/{args.drops} drops ingested",
            ok,
        )
    ]


def _collect(pending: dict[Path, float], latencies: list[float]) -> None:
    now = time.monotonic()
    for sidecar, written in list(pending.items()):
        if sidecar.exists():
            latencies.append(now - written)
            del pending[sidecar]


# --- burst -------------------------------------------------------------------------------------


def write_tree(root: Path, files: int, sessions: int) -> None:
    per = files // sessions
    for s in range(sessions):
        folder = root / f"session-{s:04d}"
        folder.mkdir(parents=True)
        for i in range(per):
            (folder / f"well-{i:04d}.csv").write_bytes(b"%d,%d\n" % (s, i) * 100)


def bench_burst(args: argparse.Namespace) -> list[tuple[str, bool]]:
    root = args.dir / "burst"
    shutil.rmtree(root, ignore_errors=True)
    (root / "drop").mkdir(parents=True)
    service = Service(
        root / "drop",
        root / "state",
        completion__quiet_period_s="2",
        completion__stability_look_s="0.5",
    )
    n = (args.files // args.sessions) * args.sessions
    try:
        service.wait_for_event("watching 1 folder")
        start = time.monotonic()
        write_tree(root / "drop", args.files, args.sessions)
        written = time.monotonic()
        while ledger_files(root / "state") < n:
            if service.proc.poll() is not None or time.monotonic() - start > 1800:
                raise RuntimeError("burst not ingested")
            time.sleep(0.2)
        done = time.monotonic()
        rss = service.peak_rss_mb()
    finally:
        service.stop()
    # Reference: the same tree as a backlog, one-shot, with a new ledger and no sidecars yet.
    for p in (root / "drop").rglob("*"):
        if p.name.endswith(".fair.json") or p.name == "ro-crate-metadata.json":
            p.unlink()
    t0 = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "scan",
            str(root / "drop"),
            "--state-dir",
            str(root / "scan-state"),
        ],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    scan_s = time.monotonic() - t0
    rate = n / (done - start)
    print(f"\nBurst: {n} files in {args.sessions} sessions written in {written - start:.1f} s")
    print(f"  fair-agent scan of the same tree (reference)   {n / scan_s:7.0f} files/s")
    print(
        f"  service, first write to last commit            {rate:7.0f} files/s  ({done - start:.1f} s, "
        f"includes a 2 s quiet period)"
    )
    print(f"  peak RSS of the service                        {rss:7.1f} MB")
    return [
        (f"burst: all {n} files ingested, {rate:.0f} files/s", True),
        (f"burst: peak RSS {rss:.0f} MB <= 300 MB", rss <= 300),
    ]


# --- restart -----------------------------------------------------------------------------------


def bench_restart(args: argparse.Namespace) -> list[tuple[str, bool]]:
    root = args.dir / "restart"
    shutil.rmtree(root, ignore_errors=True)
    sessions = max(1, args.restart_files // 100)
    write_tree(root / "drop", args.restart_files, sessions)
    subprocess.run(
        [sys.executable, "-m", "agent.cli", "scan", str(root / "drop"), "--state-dir", str(root / "state")],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    n = ledger_files(root / "state")
    t0 = time.monotonic()
    subprocess.run(["find", str(root / "drop"), "-type", "f"], check=True, stdout=subprocess.DEVNULL)
    find_s = time.monotonic() - t0
    service = Service(root / "drop", root / "state")
    try:
        event = service.wait_for_event("reconciliation done")
        seconds = float(str(event["event"]).split(" in ")[1].split(" s")[0])
        found = int(str(event["event"]).split("; ")[1].split(" ")[0])
        rss = service.peak_rss_mb()
    finally:
        service.stop()
    stopped = next(e for e in service.events if str(e["event"]).startswith("stopped"))
    hashed = int(stopped.get("bytes", 0))  # type: ignore[arg-type]
    print(f"\nRestart over {n} ingested files ({n * 2} files with sidecars) in {sessions} sessions")
    print(f"  find -type f over the tree (reference)      {find_s:6.2f} s")
    print(
        f"  start-up reconciliation                     {seconds:6.2f} s, {found} session(s) to redo, "
        f"{hashed} bytes hashed, peak RSS {rss:.0f} MB"
    )
    return [
        (
            f"restart: reconciliation of {n} files in {seconds:.1f} s <= 20 s with {hashed} bytes hashed",
            seconds <= 20 and hashed == 0 and found == 0,
        )
    ]


if __name__ == "__main__":
    sys.exit(main())
