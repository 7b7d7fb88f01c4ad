"""Kill -9 at random moments: the real agent as a subprocess, restarted, invariants checked each round.

Used by tests/test_chaos.py (20 rounds) and bench/soak_chaos.py (hundreds). Seeded: a failing
round can be replayed with the same seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .conftest import opened_db

REPO = Path(__file__).resolve().parents[1]

AGENT_ENV = {
    "FAIR_AGENT_COMPLETION__QUIET_PERIOD_S": "0.2",
    "FAIR_AGENT_COMPLETION__STABILITY_LOOK_S": "0.05",
    "FAIR_AGENT_RECONCILE_INTERVAL_S": "1",
    "FAIR_AGENT_RETRY__BASE_DELAY_S": "0.05",
    "FAIR_AGENT_RETRY__MAX_DELAY_S": "0.2",
}


@dataclass
class ChaosReport:
    rounds: int = 0
    kills: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Chaos:
    def __init__(self, workdir: Path, *, seed: int, sessions: int = 30, files_per_session: int = 10) -> None:
        self.rng = random.Random(seed)
        self.drop = workdir / "drop"
        self.state = workdir / "state"
        self.drop.mkdir(parents=True)
        self.log = (workdir / "agent.log").open("a")
        # Every file to drop, in a shuffled order, so sessions fill up across rounds.
        self.pending = [
            self.drop / f"session-{s:03d}" / f"reading-{i:03d}.bin"
            for s in range(sessions)
            for i in range(files_per_session)
        ]
        self.rng.shuffle(self.pending)
        self.dropped: list[Path] = []
        #: What each dropped file holds (none is changed after), so that no round's check hashes
        #: the 20 MB files again: that was a quarter of the chaos test's time.
        self.digests: dict[Path, str] = {}
        self.report = ChaosReport(files=len(self.pending))

    # -- driving the agent ------------------------------------------------------------------------

    def start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.cli",
                "run",
                "--watch",
                str(self.drop),
                "--state-dir",
                str(self.state),
            ],
            cwd=REPO,
            env={**os.environ, **AGENT_ENV},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def drop_files(self, count: int) -> None:
        for path in self.pending[:count]:
            path.parent.mkdir(exist_ok=True)
            # Mostly small, sometimes large: a large file widens the window between a batch's
            # sidecars reaching the disk and its ledger commit, where a kill matters most.
            size = self.rng.choice([0, 10, 1000, 100_000, 100_000, 20_000_000])
            data = os.urandom(size)
            path.write_bytes(data)
            self.digests[path] = hashlib.sha256(data).hexdigest()
            self.dropped.append(path)
        del self.pending[:count]

    def round(self, per_round: int) -> None:
        """Drop files while down, start, drop more while up, then SIGKILL at a random moment."""
        self.drop_files(per_round // 2)
        agent = self.start()
        time.sleep(self.rng.uniform(0.0, 0.4))
        self.drop_files(per_round - per_round // 2)
        time.sleep(self.rng.uniform(0.0, 1.2))
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        self.report.rounds += 1
        self.report.kills += 1
        self.check(final=False)

    def settle(self, timeout: float = 120.0) -> None:
        """The last run: let the agent finish everything, then stop it cleanly."""
        self.drop_files(len(self.pending))
        agent = self.start()
        deadline = time.monotonic() + timeout
        try:
            while self.ingested_count() < len(self.dropped):
                if time.monotonic() > deadline or agent.poll() is not None:
                    self.report.problems.append("not every dropped file was ingested in the final run")
                    with opened_db(self.state / "ledger.sqlite3", timeout=30) as db:
                        self.report.problems += [
                            f"dead letter {r[0]}: {r[1]}"
                            for r in db.execute("SELECT relpath, message FROM dead_letters LIMIT 5")
                        ]
                    break
                time.sleep(0.2)
            time.sleep(0.5)  # let crates of late batches land
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=60)
        self.check(final=True)

    # -- invariants -----------------------------------------------------------------------------

    def rows(self) -> list[tuple[str, int, str, str, str]]:
        if not (self.state / "ledger.sqlite3").exists():
            return []
        with opened_db(self.state / "ledger.sqlite3", timeout=30) as db:
            return db.execute("SELECT relpath, version, sha256, status, batch_id FROM files").fetchall()

    def ingested_count(self) -> int:
        return len({r[0] for r in self.rows()})

    def check(self, *, final: bool) -> None:
        problems = self.report.problems
        tag = "final" if final else f"round {self.report.rounds}"
        rows = self.rows()
        seen: dict[str, int] = {}
        for relpath, version, sha, status, _ in rows:
            seen[relpath] = seen.get(relpath, 0) + 1
            path = self.drop / relpath
            if sha != self.digests.get(path):
                problems.append(f"{tag}: ledger sha256 of {relpath} is not the file's")
            sidecar = Path(f"{path}.fair.json")
            if not sidecar.exists():
                problems.append(f"{tag}: {relpath} is in the ledger but has no sidecar")
            if status != "current" or version != 1:
                problems.append(f"{tag}: {relpath} has version {version} ({status}); it never changed")
        problems += [f"{tag}: {p} ingested {n} times" for p, n in seen.items() if n > 1]
        for sidecar in self.drop.rglob("*.fair.json"):
            try:
                meta = json.loads(sidecar.read_text(encoding="utf-8"))
            except ValueError:
                problems.append(f"{tag}: torn sidecar {sidecar.name}")
                continue
            data = Path(str(sidecar)[: -len(".fair.json")])
            if meta["sha256"] != self.digests.get(data):
                problems.append(f"{tag}: sidecar of {data.name} has a sha256 the file never had")
        orphans = 0
        if rows:
            with opened_db(self.state / "ledger.sqlite3", timeout=30) as db:
                orphans = db.execute(
                    "SELECT count(*) FROM files WHERE batch_id NOT IN (SELECT batch_id FROM batches)"
                ).fetchone()[0]
        if orphans:
            problems.append(f"{tag}: {orphans} file rows without their batch")
        if not final:
            return
        if self.pending or len(seen) != len(self.dropped):
            problems.append(f"final: {len(seen)} of {len(self.dropped)} files ingested")
        if list(self.drop.rglob("*.fair-tmp")):
            problems.append("final: temp files left behind")
        problems += [f"final: {p.name} changed on disk" for p, d in self.digests.items() if sha256(p) != d]
        for crate_path in self.drop.glob("*/ro-crate-metadata.json"):
            crate = json.loads(crate_path.read_text(encoding="utf-8"))
            parts = {p["@id"] for p in next(n for n in crate["@graph"] if n["@id"] == "./")["hasPart"]}
            on_disk = {p.name for p in crate_path.parent.iterdir() if p.suffix == ".bin"}
            if parts != on_disk:
                problems.append(
                    f"final: crate of {crate_path.parent.name} lists {len(parts)} of {len(on_disk)}"
                )
