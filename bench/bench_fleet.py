"""The fleet against real servers: agents announce over NATS JetStream, one hub keeps the PostgreSQL
catalogue and sends receipts back; beside raw JetStream on the same server in the same run.

Scenarios (data under --dir, removed afterwards unless --keep):

  fleet    --agents (10) `fair-agent run` services, each with its own state dir, drop folder and
           NATS user (allowed its own subjects only, tests/natsserver.agent_permissions), over
           --files (1,000) files of 1 KiB (random bytes no extractor claims) in --sessions (20)
           session folders each, and one `fair-agent hub` process with the default settings (only
           the test servers' addresses and credentials, and a metrics port to read its counters).
           Services, not scans: a service announces each batch as soon as it is committed (the
           commit wakes its announcer), as a fleet does; `scan` publishes only once its whole tree
           is ingested, so its commit-to-receipt time would measure the scan. The services start
           on empty drop folders; once every one has said its announcer is connected (its first
           status message), the session folders, made beforehand beside them, are renamed into
           the drop folders all at once, as finished exports appear: a burst of 10,000 files, with
           no interpreter start-up inside the measured window. Sessions complete after the quiet
           period (0.3 s, the tests' timings).
           A fleet's agents run on PCs of their own; here they share 2 cores with the hub,
           PostgreSQL and NATS, so they run at --nice (10): the hub's side gets a core when it needs
           one, as on its own server, and the agents take everything else (--nice 0: as equals).
           Measured: catalogue throughput, file records over the time from the last look at the
           catalogue that found none to the first that found all (polled every 50 ms; the span of
           the transactions' catalogued_at is printed too, as are the agents' own commit span,
           the time for 99% of the rows, and the files announced more than 10 s after their commit);
           per file, the time from its ledger commit (files.sidecar_written_at) to the hub's
           receipt at its agent (events.receipt_at of the event announcing it), split at the
           JetStream ack (events.published_at); CPU seconds per process group over the
           throughput's window (agents with their extractor workers, hub, PostgreSQL, NATS, this
           benchmark, anything else on the machine: another user's work shows there).
           Targets: >= 2,000 file records/s, p95 <= 2 s.
           Ceiling, in the same run: the very events the agents published (taken by a plain
           subscriber beside the stream, which is a work queue and forgets what the hub acked),
           put into a stream of their own configured as the hub's, by nats-py with acked publishes
           (one publisher awaiting each ack, as an announcer does; then one per agent at once), and
           taken by a pull consumer fetching 500 and acking each, as the hub does. Then the hub's
           capacity: the same events in a fresh stream and a fresh catalogue, and the hub started
           on the full stream, as after an outage of the hub (target >= 2,000 as well).
  offline  a week offline: one agent with --events (100,000) events queued in its ledger, made by a
           real `fair-agent scan` of as many tiny files, each a session of its own (a loose file in
           the drop folder), with the bus pointing at a server on which no hub has made the stream:
           every batch is committed with its event, the publish is refused, and the scan exits 75
           with the events pending. About 400 events/s on this 2-core machine, 4 minutes for
           100,000: an event is a committed batch, so no batch_max_files setting makes them faster,
           and the ledger's own API was not needed. Then the hub starts and `fair-agent ship`
           publishes the backlog. Measured: the drain rate (events acked by JetStream per second,
           from the command's start to the last ack), the receipts it had before it exited, the
           time until the catalogue held every file, and the peak RSS of the ship process (run
           through a small waiting Python, as benchkit.peak_rss_mb does, with VmRSS sampled
           meanwhile). Target: peak RSS <= 150 MB. Ceiling, before the hub starts: up to 20,000
           of the queued payloads, published and consumed raw as in the fleet's ceiling (16
           publishers at once for the second figure).

    python bench/bench_fleet.py
    python bench/bench_fleet.py fleet --agents 3 --files 200
    python bench/bench_fleet.py offline --events 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchkit import REPO, Scenario, run_scenarios

sys.path.insert(0, str(REPO))

from tests.natsserver import NatsServer, agent_permissions
from tests.pgserver import PostgresServer
from tests.s3server import free_loopback_ports
from tests.test_fleet import agent_config, hub_settings, hub_toml

#: What every file of the fleet holds: random bytes no extractor claims.
FILE_BYTES = 1024
#: offline: events of the backlog published raw for the ceiling, and the publishers at once.
RAW_SAMPLE = 20_000
#: fleet: a file announced this long after its commit is reported apart (the announcer missed it).
LATE_S = 10.0
RAW_PUBLISHERS = 16


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=10, help="fleet: agent processes")
    parser.add_argument("--files", type=int, default=1000, help="fleet: files per agent")
    parser.add_argument("--sessions", type=int, default=20, help="fleet: session folders per agent")
    parser.add_argument(
        "--nice",
        type=int,
        default=10,
        help="fleet: the agents' niceness (0: they compete with the hub's processes as equals)",
    )
    parser.add_argument("--events", type=int, default=100_000, help="offline: events queued")
    scenarios: dict[str, Scenario] = {"fleet": bench_fleet, "offline": bench_offline}
    return run_scenarios(parser, scenarios)


class _Servers:
    """One NATS and one PostgreSQL for the whole run; each scenario gets its own database and users."""

    nats: NatsServer | None = None
    pg: PostgresServer | None = None
    pg_dir: Path | None = None

    @classmethod
    def get(cls, args: argparse.Namespace) -> tuple[NatsServer, PostgresServer]:
        if cls.nats is None:
            cls.nats = NatsServer(args.dir / "nats")
            cls.nats.start()
        if cls.pg is None:
            # Not under --dir: run as root, the server runs as a service user that must reach it.
            cls.pg_dir = Path(tempfile.mkdtemp(prefix="fair-bench-pg-"))
            cls.pg = PostgresServer(cls.pg_dir)
            cls.pg.start()
        return cls.nats, cls.pg

    @classmethod
    def stop(cls) -> None:
        if cls.nats is not None:
            cls.nats.stop()
            cls.nats = None
        if cls.pg is not None:
            cls.pg.stop()
            cls.pg = None
        if cls.pg_dir is not None:
            shutil.rmtree(cls.pg_dir, ignore_errors=True)
            cls.pg_dir = None


# -- the fleet ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    msg_id: str
    payload: bytes
    files: int


def bench_fleet(args: argparse.Namespace) -> list[tuple[str, bool]]:
    nats, pg = _Servers.get(args)
    names = [f"pc-{n:02d}" for n in range(1, args.agents + 1)]
    nats.set_users({name: agent_permissions(name) for name in names})
    asyncio.run(nats.delete_streams())
    home = _fresh(args.dir / "fleet")
    agents = [agent_config(home, name, nats) for name in names]
    # Made beside the drop folders, on the same filesystem: each session appears by a rename.
    for _, drop in agents:
        for n in range(args.files):
            path = drop.parent / "staging" / f"run-{n % args.sessions:02d}" / f"frame-{n:05d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(FILE_BYTES))
    total = args.agents * args.files
    dsn = pg.create_database(f"fleet_{uuid.uuid4().hex[:8]}")
    (metrics_port,) = free_loopback_ports(1)
    hub_config = hub_toml(home, hub_settings(home, nats, pg, dsn, metrics_port=metrics_port))

    with _process(["hub", "--config", str(hub_config), "--json-logs"], home / "hub.log") as hub:
        _wait_for_line(home / "hub.log", "hub ready", hub)
        commands = [["run", "--config", str(config), "--json-logs"] for config, _ in agents]
        logs = [config.parent / "run.log" for config, _ in agents]
        with _Tap(nats) as tap, _processes(commands, logs, args.nice) as running:
            # Every announcer connected and through its first pass (it then says so).
            _wait(lambda: tap.heard_from >= set(names), 120, "every agent's first status")
            groups = {
                "agents": [process.pid for process in running],
                "hub": [hub.pid],
                "PostgreSQL": [pg.pid or 0],
                "NATS": [nats.pid or 0],
                "this benchmark": [os.getpid()],
            }
            cpu = [_cpu_seconds(groups)]
            started = time.perf_counter()
            for _, drop in agents:
                for session in sorted((drop.parent / "staging").iterdir()):
                    session.rename(drop / session.name)
            polled = asyncio.run(
                _poll_rows(
                    pg, dsn, total, within_s=300, on_first_row=lambda: cpu.append(_cpu_seconds(groups))
                )
            )
            cpu.append(_cpu_seconds(groups))
            _wait(lambda: all(_all_receipted(config) for config, _ in agents), 120, "every receipt")
            hub_stats = _hub_metrics(metrics_port)
    all_in = polled[-1][0] - started
    span = asyncio.run(
        _fetchrow(
            pg, dsn, "SELECT count(*), extract(epoch FROM max(catalogued_at) - min(catalogued_at)) FROM files"
        )
    )
    rows = [row for config, _ in agents for row in _file_times(config)]
    commits = sorted(row[0] for row in rows)
    ingest_s = (commits[-1] - commits[0]).total_seconds()
    to_receipt = sorted((receipt - commit).total_seconds() for commit, _, receipt in rows)
    to_ack = sorted((published - commit).total_seconds() for commit, published, _ in rows)
    ack_to_receipt = sorted((receipt - published).total_seconds() for _, published, receipt in rows)
    # From the last look that found no row: the first transaction's time counts too.
    first = max((t for t, count in polled if not count), default=started)
    live_rate = total / (polled[-1][0] - first)
    most = next(t for t, count in polled if count >= 0.99 * total)
    late = [seconds for seconds in to_ack if seconds > LATE_S]
    span_rate = span[0] / max(float(span[1] or 0), 1e-9)

    messages = tap.messages()
    sizes = sorted(len(m.payload) for m in messages)
    ceiling = asyncio.run(_raw_jetstream(nats, messages, args.agents))
    drained, drain_stats = _hub_on_backlog(home / "backlog", nats, pg, messages, total)

    print(f"\nfleet: {args.agents} agents x {args.files} files of {FILE_BYTES} B in {args.sessions} sessions")
    print(
        f"  events published               {len(messages):8}  ({total / len(messages):.0f} files each, "
        f"payload median {sizes[len(sizes) // 2] / 1024:.1f} KiB)"
    )
    print(f"  agents' commits span           {ingest_s:8.2f} s  ({total / ingest_s:7.0f} files/s ingested)")
    print(
        f"  catalogued_at, first to last   {float(span[1] or 0):8.2f} s  ({span_rate:7.0f} file records/s, "
        "transactions' start times)"
    )
    print(
        f"  rows polled, none to all       {polled[-1][0] - first:8.2f} s  ({live_rate:7.0f} file records/s; "
        f"all in {all_in:.1f} s after the drop)"
    )
    most_rate = 0.99 * total / (most - first)
    print(f"  99% of the rows in             {most - first:8.2f} s  ({most_rate:7.0f} file records/s)")
    if late:
        print(
            f"  files announced late           {len(late):8}  (more than {LATE_S:.0f} s from commit to "
            f"JetStream ack, up to {max(late):.1f} s)"
        )
    print(
        f"  the hub: {hub_stats['batches']:.0f} transactions, {hub_stats['commit_s']:.2f} s in them, "
        f"{hub_stats['cpu_s']:.1f} s CPU"
    )
    print(f"  CPU over those {polled[-1][0] - first:.2f} s on {os.cpu_count()} cores:")
    print("    " + _cpu_used(cpu[-2], cpu[-1]))
    print("  commit to receipt, per file    " + _percentiles(to_receipt))
    print("    commit to JetStream ack      " + _percentiles(to_ack))
    print("    ack to receipt               " + _percentiles(ack_to_receipt))
    print("\n  ceiling, raw JetStream (nats-py) with the same payloads on the same server:")
    for label, seconds in ceiling:
        print(f"    {label:38} {len(messages) / seconds:8.0f} msgs/s  {total / seconds:8.0f} files/s")
    print(
        f"  the hub alone on a full stream  {drained:8.0f} file records/s  "
        f"({drain_stats['batches']:.0f} transactions, {drain_stats['commit_s']:.2f} s in them)"
    )
    p95 = _quantile(to_receipt, 0.95)
    return [
        (
            f"fleet: catalogue at {live_rate:.0f} file records/s with {args.agents} agents (>= 2,000)",
            live_rate >= 2000,
        ),
        (
            f"fleet: the hub alone at {drained:.0f} file records/s on a full stream (>= 2,000)",
            drained >= 2000,
        ),
        (f"fleet: p95 commit to receipt {p95:.2f} s (<= 2 s)", p95 <= 2.0),
    ]


def _hub_on_backlog(
    home: Path, nats: NatsServer, pg: PostgresServer, messages: list[Message], total: int
) -> tuple[float, dict[str, float]]:
    """The hub started on a stream that already holds every event: file records per second from
    its readiness to the last row, and its own figures."""
    home.mkdir(parents=True)
    asyncio.run(nats.delete_streams())
    dsn = pg.create_database(f"backlog_{uuid.uuid4().hex[:8]}")
    (metrics_port,) = free_loopback_ports(1)
    config = hub_toml(home, hub_settings(home, nats, pg, dsn, metrics_port=metrics_port))
    # A first start makes the stream and its consumer; the events go in while no hub runs.
    with _process(["hub", "--config", str(config)], home / "hub-0.log") as hub:
        _wait_for_line(home / "hub-0.log", "hub ready", hub)
    asyncio.run(_publish(nats, messages))
    with _process(["hub", "--config", str(config)], home / "hub.log") as hub:
        ready = _wait_for_line(home / "hub.log", "hub ready", hub)
        polled = asyncio.run(_poll_rows(pg, dsn, total, within_s=300))
        stats = _hub_metrics(metrics_port)
    return total / (polled[-1][0] - ready), stats


# -- the week offline -----------------------------------------------------------------------------


def bench_offline(args: argparse.Namespace) -> list[tuple[str, bool]]:
    nats, pg = _Servers.get(args)
    name = "pc-offline"
    nats.set_users({name: agent_permissions(name)})
    asyncio.run(nats.delete_streams())
    home = _fresh(args.dir / "offline")
    config, drop = agent_config(home, name, nats)
    for n in range(args.events):
        (drop / f"reading-{n:06d}.bin").write_bytes(os.urandom(56) + n.to_bytes(8, "little"))

    started = time.perf_counter()
    with _process(["scan", str(drop), "--config", str(config), "--json-logs"], home / "scan.log") as scan:
        scan.wait()
    scan_s = time.perf_counter() - started
    pending = _ledger(config, "SELECT count(*) FROM events WHERE published_at IS NULL")[0][0]
    if scan.returncode != 75 or pending != args.events:
        raise RuntimeError(
            f"the scan left {pending} events (exit {scan.returncode}); see {home / 'scan.log'}"
        )
    payload, made_first, made_last = _ledger(
        config, "SELECT avg(length(payload)), min(created_at), max(created_at) FROM events"
    )[0]
    made_s = (datetime.fromisoformat(made_last) - datetime.fromisoformat(made_first)).total_seconds()
    state_mb = sum(p.stat().st_size for p in (config.parent / "state").glob("ledger.sqlite3*")) / 1e6

    # The ceiling: some of the very payloads, published by nats-py to a stream of their own.
    sample = [
        Message(subject, msg_id, payload, 1)
        for subject, msg_id, payload in _ledger(
            config, f"SELECT subject, msg_id, payload FROM events ORDER BY id LIMIT {RAW_SAMPLE}"
        )
    ]
    ceiling = asyncio.run(_raw_jetstream(nats, sample, RAW_PUBLISHERS))

    dsn = pg.create_database(f"offline_{uuid.uuid4().hex[:8]}")
    hub_config = hub_toml(home, hub_settings(home, nats, pg, dsn))
    with _process(["hub", "--config", str(hub_config)], home / "hub.log") as hub:
        _wait_for_line(home / "hub.log", "hub ready", hub)
        began_unix, began = time.time(), time.perf_counter()
        ship = _Measured(["ship", "--config", str(config), "--json-logs"], home / "ship.log")
        rss = _sample_rss(ship)
        code, peak = ship.result()
        ship_s = time.perf_counter() - began
        if code != 0:
            raise RuntimeError(f"`fair-agent ship` exited {code}; see {home / 'ship.log'}")
        receipted_at_exit = _ledger(config, "SELECT count(receipt_at) FROM events")[0][0]
        polled = asyncio.run(_poll_rows(pg, dsn, args.events, within_s=600))
        catalogued_s = polled[-1][0] - began
    first, last = _ledger(config, "SELECT min(published_at), max(published_at) FROM events")[0]
    publish_s = datetime.fromisoformat(last).timestamp() - began_unix
    rate = args.events / publish_s

    print(f"\noffline: {args.events} events queued by a scan of as many one-file sessions")
    print(
        f"  the scan (bus up, no stream)   {scan_s:8.1f} s  (commits over {made_s:.1f} s: "
        f"{args.events / made_s:.0f} events/s queued; then its tries of the bus)"
    )
    print(
        f"  queued                         {pending:8}  events of {payload:.0f} B, ledger {state_mb:.0f} MB"
    )
    print(
        f"  `fair-agent ship`              {ship_s:8.1f} s  (last JetStream ack after {publish_s:.1f} s, "
        f"first page after {datetime.fromisoformat(first).timestamp() - began_unix:.1f} s)"
    )
    print(f"  drain rate                     {rate:8.0f} events/s")
    print(f"  receipted before ship exited   {receipted_at_exit:8}  of {args.events}")
    print(f"  all in the catalogue after     {catalogued_s:8.1f} s")
    print(f"  ship's peak RSS                {peak:8.0f} MB  (sampled: {_rss_profile(rss)})")
    print(f"\n  ceiling, raw JetStream (nats-py) with {len(sample)} of the same payloads on the same server:")
    for label, seconds in ceiling:
        print(f"    {label:38} {len(sample) / seconds:8.0f} events/s")
    return [
        (f"offline: ship's peak RSS {peak:.0f} MB draining {args.events} events (<= 150 MB)", peak <= 150)
    ]


class _Measured:
    """A command run through a small Python that waits for it and reports its peak RSS, as
    benchkit.peak_rss_mb does: Linux carries the high-water mark of the memory a child execs from
    into the child's, and this benchmark's own interpreter is larger than the agent's."""

    _WRAPPER = (
        "import resource, subprocess, sys; "
        "p = subprocess.Popen(sys.argv[2:], stdout=open(sys.argv[1], 'ab'), stderr=subprocess.STDOUT); "
        "print(p.pid, flush=True); p.wait(); "
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)"
    )

    def __init__(self, arguments: list[str], log: Path) -> None:
        self._wrapper = subprocess.Popen(
            [sys.executable, "-c", self._WRAPPER, str(log), sys.executable, "-m", "agent.cli", *arguments],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._wrapper.stdout is not None
        self.pid = int(self._wrapper.stdout.readline())

    @property
    def running(self) -> bool:
        return self._wrapper.poll() is None

    def result(self) -> tuple[int, float]:
        """(exit status, peak RSS in MB) once it ended."""
        out, _ = self._wrapper.communicate()
        code, max_rss_kib = out.split()
        return int(code), int(max_rss_kib) / 1024


def _sample_rss(measured: _Measured, every_s: float = 0.1) -> list[tuple[float, float, float]]:
    """(seconds, RSS, the process's own high-water mark VmHWM; both in MB) while it runs."""
    samples = []
    started = time.perf_counter()
    status = Path(f"/proc/{measured.pid}/status")
    while measured.running:
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            rss, hwm = (int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))
        except (OSError, KeyError, ValueError):
            pass
        else:
            if rss >= 1:  # not the instant between fork and exec
                samples.append((time.perf_counter() - started, rss, hwm))
        time.sleep(every_s)
    return samples


def _rss_profile(samples: list[tuple[float, float, float]]) -> str:
    if not samples:
        return "no samples"
    picks = [samples[int(i * (len(samples) - 1) / 4)] for i in range(5)]
    profile = ", ".join(f"{rss:.0f} MB at {t:.1f} s" for t, rss, _ in picks)
    return f"{profile}; its own VmHWM {samples[-1][2]:.0f} MB"


# -- raw JetStream --------------------------------------------------------------------------------


class _Tap:
    """A plain subscriber beside the stream, in a thread of its own: every event the agents
    publish, as they publish it (the stream is a work queue: what the hub acked is gone from it),
    and which agents sent a status message (after each pass of their announcer)."""

    def __init__(self, server: NatsServer) -> None:
        self.server = server
        self.heard_from: set[str] = set()
        self._seen: dict[str, Message] = {}
        self._subscribed = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._listen(),), daemon=True)

    def __enter__(self) -> _Tap:
        self._thread.start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the tap did not subscribe")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def messages(self) -> list[Message]:
        """Each event once (a republished one has the same id), in the order first seen."""
        return list(self._seen.values())

    async def _listen(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        client = await self.server.connect_admin()
        try:
            await client.subscribe("fair.v1.*.batch", cb=self._take)
            await client.subscribe("fair.v1.*.status", cb=self._status)
            await client.flush()
            self._subscribed.set()
            await self._stop.wait()
        finally:
            await client.close()

    async def _status(self, message: Any) -> None:
        self.heard_from.add(message.subject.split(".")[2])

    async def _take(self, message: Any) -> None:
        document = json.loads(message.data)
        self._seen.setdefault(
            document["id"],
            Message(message.subject, document["id"], message.data, len(document.get("files", []))),
        )


async def _publish(server: NatsServer, messages: list[Message], prefix: str = "") -> None:
    """One after the other, each ack awaited, with its message id: as an announcer publishes."""
    client = await server.connect_admin()
    try:
        js = client.jetstream()
        for m in messages:
            await js.publish(prefix + m.subject, m.payload, timeout=10, headers={"Nats-Msg-Id": m.msg_id})
    finally:
        await client.close()


async def _raw_jetstream(
    server: NatsServer, messages: list[Message], publishers: int
) -> list[tuple[str, float]]:
    """Seconds for acked publishes (one publisher, then ``publishers`` at once) and for a pull
    consumer's fetch and ack of the same messages, in a stream of their own."""
    from nats.js.api import AckPolicy, ConsumerConfig, DiscardPolicy, RetentionPolicy, StreamConfig

    client = await server.connect_admin()
    try:
        js = client.jetstream()
        # As the hub makes its stream: a work queue that refuses when full, with deduplication.
        await js.add_stream(
            StreamConfig(
                name="BENCH",
                subjects=["bench.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                discard=DiscardPolicy.NEW,
                duplicate_window=120,
            )
        )
        started = time.perf_counter()
        await _publish(server, messages, "bench.")
        one = time.perf_counter() - started
        await js.purge_stream("BENCH")
        shards = [
            [Message(m.subject, f"again-{m.msg_id}", m.payload, m.files) for m in messages[n::publishers]]
            for n in range(publishers)
        ]
        started = time.perf_counter()
        await asyncio.gather(*(_publish(server, shard, "bench.") for shard in shards))
        many = time.perf_counter() - started
        subscription = await js.pull_subscribe(
            "bench.>",
            durable="bench",
            stream="BENCH",
            config=ConsumerConfig(
                durable_name="bench", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=10_000
            ),
        )
        started = time.perf_counter()
        taken = 0
        while taken < len(messages):
            batch = await subscription.fetch(500, timeout=5)
            for message in batch:
                await message.ack()
            taken += len(batch)
        await client.flush()
        consume = time.perf_counter() - started
        await js.delete_stream("BENCH")
        return [
            ("acked publish, one publisher", one),
            (f"acked publish, {publishers} publishers at once", many),
            ("pull consumer, fetch 500 and ack each", consume),
        ]
    finally:
        await client.close()


# -- the catalogue --------------------------------------------------------------------------------


async def _connect(pg: PostgresServer, dsn: str) -> Any:
    import asyncpg

    return await asyncpg.connect(dsn, password=pg.password)


async def _fetchrow(pg: PostgresServer, dsn: str, sql: str) -> Any:
    db = await _connect(pg, dsn)
    try:
        return await db.fetchrow(sql)
    finally:
        await db.close()


async def _poll_rows(
    pg: PostgresServer,
    dsn: str,
    expected: int,
    *,
    within_s: float,
    every_s: float = 0.05,
    on_first_row: Callable[[], None] | None = None,
) -> list[tuple[float, int]]:
    """(perf_counter, files in the catalogue) every ``every_s`` until ``expected`` are in."""
    db = await _connect(pg, dsn)
    try:
        samples: list[tuple[float, int]] = []
        deadline = time.perf_counter() + within_s
        while not samples or samples[-1][1] < expected:
            count = await db.fetchval("SELECT count(*) FROM files")
            if count and on_first_row is not None and not any(n for _, n in samples):
                on_first_row()
            samples.append((time.perf_counter(), count))
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the catalogue holds {count} files of {expected} after {within_s:.0f} s")
            await asyncio.sleep(every_s)
        return samples
    finally:
        await db.close()


def _hub_metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return {
        "batches": values.get("fair_hub_batches_total", 0.0),
        "commit_s": values.get("fair_hub_commit_seconds_total", 0.0),
        "cpu_s": values.get("process_cpu_seconds_total", 0.0),
    }


def _cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user and system) so far of each group of processes with their descendants,
    of every other process ("other"), and of the whole machine ("busy", "idle", from /proc/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, used = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        # After the name: state, ppid, ... utime (12th), stime, cutime, cstime (reaped children).
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = sum(int(f) for f in fields[11:15]) / tick
    owner = {pid: name for name, pids in groups.items() for pid in pids}
    totals = dict.fromkeys([*groups, "other"], 0.0)
    for pid, seconds in used.items():
        ancestor = pid
        while ancestor not in owner and ancestor in parents and ancestor > 1:
            ancestor = parents[ancestor]
        totals[owner.get(ancestor, "other")] += seconds
    cpu = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal
    totals["idle"] = (cpu[3] + cpu[4]) / tick
    totals["busy"] = (sum(cpu[:8]) - cpu[3] - cpu[4]) / tick
    return totals


def _cpu_used(before: dict[str, float], after: dict[str, float]) -> str:
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    named = sum(seconds for name, seconds in spent.items() if name not in ("other", "busy", "idle"))
    # Processes that started and ended inside the window leave no trace but in the machine's total.
    spent["other"] = max(spent["other"], spent["busy"] - named)
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in spent.items() if name != "busy")


# -- the agents' ledgers --------------------------------------------------------------------------


def _ledger(config: Path, sql: str) -> list[tuple[Any, ...]]:
    path = config.parent / "state" / "ledger.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


def _all_receipted(config: Path) -> bool:
    made, receipted = _ledger(config, "SELECT count(*), count(receipt_at) FROM events")[0]
    return bool(made) and made == receipted


def _file_times(config: Path) -> list[tuple[datetime, datetime, datetime]]:
    """(committed, published, receipted) of every file version the agent announced."""
    rows = _ledger(
        config,
        "SELECT f.sidecar_written_at, e.published_at, e.receipt_at FROM files f "
        "JOIN announced_files a ON a.root_id = f.root_id AND a.relpath = f.relpath "
        "AND a.version = f.version AND a.kind = 'batch' JOIN events e ON e.id = a.event_id",
    )
    return [tuple(datetime.fromisoformat(value) for value in row) for row in rows]  # type: ignore[misc]


# -- processes and waiting ------------------------------------------------------------------------


def _start(arguments: list[str], log: Path, nice: int = 0) -> subprocess.Popen[bytes]:
    # nice(1) execs the command: the PID is the agent's.
    niced = ["nice", "-n", str(nice)] if nice else []
    with log.open("ab") as out:
        return subprocess.Popen(
            [*niced, sys.executable, "-m", "agent.cli", *arguments],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _process(arguments: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = _start(arguments, log)
    try:
        yield process
    finally:
        _stop(process)


@contextmanager
def _processes(
    commands: list[list[str]], logs: list[Path], nice: int = 0
) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        for arguments, log in zip(commands, logs, strict=True):
            started.append(_start(arguments, log, nice))
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            _stop(process)


def _wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    """perf_counter when ``text`` appeared in the log."""
    deadline = time.perf_counter() + timeout
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None or time.perf_counter() > deadline:
            raise RuntimeError(f"no {text!r} in {log}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.01)
    return time.perf_counter()


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


# -- figures --------------------------------------------------------------------------------------


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _percentiles(ordered: list[float]) -> str:
    return "  ".join(
        f"{name} {_quantile(ordered, q):6.2f} s" for name, q in (("p50", 0.5), ("p95", 0.95))
    ) + (f"  max {ordered[-1]:6.2f} s")


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        _Servers.stop()
