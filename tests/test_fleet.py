"""The fleet against real servers: agents announce over NATS JetStream, hubs keep a PostgreSQL
catalogue, receipts come back. Agents and hubs run as real processes (``fair-agent run``,
``scan``, ``ship``, ``hub``) unless a test needs to look inside; faults are real kill -9s.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from agent.hub.config import HubSettings
from agent.hub.service import Hub
from agent.ship.announcer import PUBLISH_TIMEOUT_S
from agent.ship.bus import FIRST_CONNECT_S
from tests.conftest import REPO, agent_cli, opened_db, write
from tests.natsserver import NatsServer, agent_permissions
from tests.pgserver import PostgresServer
from tests.s3server import S3Server, free_loopback_ports

AGENTS = ("pc-1", "pc-2", "pc-3")


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[NatsServer]:
    """The session's NATS with this test's agents as users; no stream before or after the test."""
    nats_server.set_users({name: agent_permissions(name) for name in AGENTS})
    await nats_server.delete_streams()
    yield nats_server
    if nats_server.running:
        await nats_server.delete_streams()
    nats_server.set_users({})


def secret_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def agent_config(
    tmp_path: Path,
    name: str,
    bus: NatsServer,
    *,
    as_user: str | None = None,
    store: tuple[S3Server, str] | None = None,
    receipt_timeout_s: float = 600,
) -> tuple[Path, Path]:
    """(config file, drop folder) of one agent; ``as_user``: connect with another agent's account."""
    home = tmp_path / name
    drop = home / "drop"
    drop.mkdir(parents=True)
    user, password = bus.credentials(as_user or name)
    creds = secret_file(home / "nats.creds", f'user = "{user}"\npassword = "{password}"\n')
    lines = [
        f'agent_name = "{name}"',
        f'state_dir = "{home / "state"}"',
        "[completion]",
        "quiet_period_s = 0.3",
        "stability_look_s = 0.1",
        "[[roots]]",
        f'path = "{drop}"',
        'name = "drop"',
        "[bus]",
        f'url = "{bus.url}"',
        f'credentials_file = "{creds}"',
        f"receipt_timeout_s = {receipt_timeout_s}",
        "retry_max_s = 1",
        # Four tests wait for an agent to give up on the bus: short, but several tries long.
        "give_up_after_s = 2",
    ]
    if store is not None:
        server, bucket = store
        keys = f"aws_access_key_id = {server.access_key}\naws_secret_access_key = {server.secret_key}\n"
        s3 = secret_file(home / "s3.credentials", "[default]\n" + keys)
        lines += [
            "[store]",
            f'endpoint = "{server.endpoint_url}"',
            f'bucket = "{bucket}"',
            f'credentials_file = "{s3}"',
            "retry_max_s = 1",
        ]
    path = home / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, drop


def hub_settings(tmp_path: Path, bus: NatsServer, pg: PostgresServer, dsn: str, **extra: Any) -> HubSettings:
    user, password = bus.credentials("hub")
    return HubSettings(
        bus_url=bus.url,
        bus_credentials_file=secret_file(
            tmp_path / "hub.creds", f'user = "{user}"\npassword = "{password}"\n'
        ),
        catalogue_dsn=dsn,
        catalogue_password_file=secret_file(tmp_path / "pg.password", pg.password + "\n"),
        **extra,
    )


def hub_toml(tmp_path: Path, settings: HubSettings) -> Path:
    lines = ["[hub]"] + [
        f"{key} = {json.dumps(str(value) if isinstance(value, Path) else value)}"
        for key, value in settings.model_dump(exclude_defaults=True).items()
    ]
    path = tmp_path / "hub.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@asynccontextmanager
async def running_hub(settings: HubSettings) -> AsyncIterator[Hub]:
    hub = Hub(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(hub.run(stop))
    ready = asyncio.create_task(hub.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield hub
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextmanager
def hub_process(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "hub", "--config", str(config), "--json-logs"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


async def catalogue_rows(pg: PostgresServer, dsn: str, sql: str = "SELECT count(*) FROM files") -> Any:
    db = await asyncpg.connect(dsn, password=pg.password)
    try:
        return await db.fetchval(sql)
    finally:
        await db.close()


async def until(condition: Any, timeout: float = 60, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def ledger(config: Path, sql: str) -> list[tuple[Any, ...]]:
    state = config.parent / "state" / "ledger.sqlite3"
    with opened_db(f"file:{state}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


def sample_session(drop: Path, experiment: str, files: int = 3) -> None:
    session = drop / f"{experiment}_alice"
    for n in range(files):
        write(session / f"reading-{n}.csv", f"time,value\n0,{n}\n1,{n + 1}\n")


async def test_three_agents_one_hub_every_file_once_and_receipts_back(
    tmp_path: Path,
    bus: NatsServer,
    pg_server: PostgresServer,
    pg_database: str,
    s3_server: S3Server,
    s3_bucket: str,
) -> None:
    configs = {
        "pc-1": agent_config(tmp_path, "pc-1", bus, store=(s3_server, s3_bucket)),
        "pc-2": agent_config(tmp_path, "pc-2", bus, store=(s3_server, s3_bucket)),
        "pc-3": agent_config(tmp_path, "pc-3", bus),  # no [store]: the catalogue only
    }
    for n, (_, drop) in enumerate(configs.values()):
        sample_session(drop, f"EXP-00012{n}")
    settings = hub_settings(tmp_path, bus, pg_server, pg_database)
    agents = [
        subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(config), "--json-logs"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for config, _ in configs.values()
    ]
    try:
        async with running_hub(settings):

            async def all_catalogued() -> bool:
                return bool(await catalogue_rows(pg_server, pg_database) == 9)

            await until(all_catalogued, what="9 files in the catalogue")

            def receipted(config: Path) -> bool:
                rows = ledger(config, "SELECT count(*), count(receipt_at) FROM events")
                return bool(rows[0][0]) and rows[0][0] == rows[0][1]

            async def stored_and_receipted() -> bool:
                stored = await catalogue_rows(
                    pg_server, pg_database, "SELECT count(*) FROM files WHERE storage_uri IS NOT NULL"
                )
                return bool(stored == 6 and all(receipted(c) for c, _ in configs.values()))

            await until(stored_and_receipted, what="receipts at every agent")
    finally:
        for process in agents:
            process.send_signal(signal.SIGTERM)
        for process in agents:
            process.wait(30)
    # Exactly once: one row per file version the agents hold, none twice.
    counts = [
        ledger(c, "SELECT count(*) FROM files WHERE status = 'current'")[0][0] for c, _ in configs.values()
    ]
    assert counts == [3, 3, 3]
    assert (
        await catalogue_rows(pg_server, pg_database, "SELECT count(DISTINCT (agent, path)) FROM files") == 9
    )

    hub = hub_toml(tmp_path, settings)
    found = agent_cli("catalogue", "search", "--experiment", "EXP-000121", "--json", "--config", str(hub))
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)
    assert {(r["agent"], r["session"]) for r in results} == {("pc-2", "EXP-000121_alice")}
    assert all(r["storage_uri"].startswith(f"s3://{s3_bucket}/sha256/") for r in results)
    text = agent_cli("catalogue", "search", "reading", "--agent", "pc-3", "--json", "--config", str(hub))
    assert {r["path"] for r in json.loads(text.stdout)} == {
        f"EXP-000122_alice/reading-{n}.csv" for n in range(3)
    }

    # Safe to delete: stored, verified and catalogued; never without a store.
    stored_pc, stored_drop = configs["pc-1"]
    shown = json.loads(
        agent_cli(
            "inspect",
            str(stored_drop / "EXP-000120_alice" / "reading-0.csv"),
            "--json",
            "--config",
            str(stored_pc),
        ).stdout
    )
    assert shown["safeToDelete"] is True, shown
    bare_pc, bare_drop = configs["pc-3"]
    shown = json.loads(
        agent_cli(
            "inspect",
            str(bare_drop / "EXP-000122_alice" / "reading-0.csv"),
            "--json",
            "--config",
            str(bare_pc),
        ).stdout
    )
    assert shown["safeToDelete"] is False and "no [store]" in shown["notSafeBecause"]
    status = json.loads(agent_cli("status", "--json", "--config", str(stored_pc)).stdout)
    assert status["bus"]["files"] == {
        "pendingAnnouncement": 0,
        "awaitingReceipt": 0,
        "catalogued": 3,
        "safeToDelete": 3,
    }
    assert status["bus"]["events"]["pendingAnnouncement"] == 0


async def test_hub_and_nats_killed_mid_burst_lose_and_double_nothing(
    tmp_path: Path, bus: NatsServer, pg_server: PostgresServer, pg_database: str
) -> None:
    config, drop = agent_config(tmp_path, "pc-1", bus, receipt_timeout_s=2)
    for n in range(600):
        write(drop / f"run-{n % 30:02d}" / f"frame-{n:04d}.bin", os.urandom(64) + str(n).encode())
    settings = hub_settings(tmp_path, bus, pg_server, pg_database, batch_size=20, duplicate_window_s=1)
    hub = hub_toml(tmp_path, settings)
    # The stream first (a hub makes it), then the burst while the hub is killed and restarted.
    async with running_hub(settings):
        pass
    with hub_process(hub) as first:
        scanning = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "scan", str(drop), "--config", str(config)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        async def some() -> bool:
            return bool(await catalogue_rows(pg_server, pg_database) > 0)

        await until(some, what="the first rows")
        first.kill()
        first.wait()
        assert scanning.wait(120) in (0, 75)
    bus.kill()
    bus.start()
    with hub_process(hub):
        # What was published is in the stream; what was not (or not receipted) goes again.
        again = agent_cli("ship", "--config", str(config), "--json-logs")
        assert again.returncode == 0, again.stderr[-3000:]

        async def everything() -> bool:
            return bool(await catalogue_rows(pg_server, pg_database) == 600)

        await until(everything, what="all 600 files")
    assert await catalogue_rows(pg_server, pg_database, "SELECT count(DISTINCT path) FROM files") == 600
    assert ledger(config, "SELECT count(*) FROM files") == [(600,)]


async def test_hub_down_while_an_agent_ingests_2000_files(
    tmp_path: Path, bus: NatsServer, pg_server: PostgresServer, pg_database: str
) -> None:
    config, drop = agent_config(tmp_path, "pc-2", bus, receipt_timeout_s=1)
    for n in range(2000):
        write(drop / f"run-{n % 40:02d}" / f"f-{n:04d}.dat", f"{n}\n")
    done = agent_cli("scan", str(drop), "--config", str(config), "--json-logs", timeout=300)
    # No hub has made the stream yet: ingest completes, the events wait in the ledger.
    assert done.returncode == 75, done.stderr[-2000:]
    assert "start the hub" in done.stderr
    assert ledger(config, "SELECT count(*) FROM events WHERE published_at IS NULL")[0][0] >= 40
    settings = hub_settings(tmp_path, bus, pg_server, pg_database, duplicate_window_s=0.5)
    async with running_hub(settings):
        # In a thread: the hub runs on this event loop.
        shipped = await asyncio.to_thread(
            agent_cli, "ship", "--config", str(config), "--json-logs", timeout=300
        )
        assert shipped.returncode == 0, shipped.stderr[-2000:]

        async def all_in() -> bool:
            return bool(await catalogue_rows(pg_server, pg_database) == 2000)

        await until(all_in, what="2000 files")
        # Receipts that came after that ship had gone: the next one publishes those events again
        # (same ids), the hub finds them catalogued already and receipts them.
        await asyncio.sleep(1.5)
        again = await asyncio.to_thread(
            agent_cli, "ship", "--config", str(config), "--json-logs", timeout=300
        )
        assert again.returncode == 0, again.stderr[-2000:]
    assert ledger(config, "SELECT count(*) FROM events WHERE receipt_at IS NULL") == [(0,)]
    assert await catalogue_rows(pg_server, pg_database) == 2000


async def test_two_hubs_share_one_consumer_with_exact_counts(
    tmp_path: Path, bus: NatsServer, pg_server: PostgresServer, pg_database: str
) -> None:
    config, drop = agent_config(tmp_path, "pc-3", bus)
    for n in range(600):
        write(drop / f"run-{n % 60:03d}" / f"f-{n:04d}.dat", f"{n}\n")
    settings = hub_settings(tmp_path, bus, pg_server, pg_database, batch_size=10)
    async with running_hub(settings):
        pass  # the stream and the consumer
    assert agent_cli("scan", str(drop), "--config", str(config), timeout=300).returncode in (0, 75)
    async with running_hub(settings) as one, running_hub(settings) as two:

        async def all_in() -> bool:
            return bool(await catalogue_rows(pg_server, pg_database) == 600)

        await until(all_in, what="600 files")
    assert one.stats.files > 0 and two.stats.files > 0
    assert one.stats.files + two.stats.files == 600
    assert await catalogue_rows(pg_server, pg_database, "SELECT count(*) FROM events") == 60


async def test_an_agent_cannot_publish_under_another_agents_subject(
    tmp_path: Path, bus: NatsServer, pg_server: PostgresServer, pg_database: str
) -> None:
    settings = hub_settings(tmp_path, bus, pg_server, pg_database)
    async with running_hub(settings):
        pass
    # pc-2's account, configured to speak as pc-1.
    config, drop = agent_config(tmp_path, "pc-1", bus, as_user="pc-2")
    write(drop / "run" / "a.txt", "hello")
    started = time.monotonic()
    done = agent_cli("scan", str(drop), "--config", str(config), "--json-logs")
    assert done.returncode == 75
    assert "the bus refuses this agent fair.v1.pc-1." in done.stderr, done.stderr[-2000:]
    assert "permissions violation for publish" in done.stderr.lower()
    # The server refuses at once: no try waits for an acknowledgement that cannot come.
    assert time.monotonic() - started < PUBLISH_TIMEOUT_S
    assert ledger(config, "SELECT count(*) FROM events WHERE published_at IS NULL") == [(1,)]
    assert await catalogue_rows(pg_server, pg_database) == 0


async def test_a_full_stream_refuses_new_events_and_the_agent_keeps_them(
    tmp_path: Path, bus: NatsServer, pg_server: PostgresServer, pg_database: str
) -> None:
    settings = hub_settings(tmp_path, bus, pg_server, pg_database, stream_max_msgs=2)
    async with running_hub(settings):
        pass  # the stream, limited to two events waiting; no hub runs from here on
    config, drop = agent_config(tmp_path, "pc-1", bus)
    for n in range(4):
        write(drop / f"run-{n}" / "a.txt", f"{n}")
    done = await asyncio.to_thread(agent_cli, "scan", str(drop), "--config", str(config), "--json-logs")
    assert done.returncode == 75, done.stderr[-2000:]
    assert "full" in done.stderr
    assert ledger(config, "SELECT count(*) FROM events WHERE published_at IS NULL") == [(2,)]
    # A hub drains the stream (acknowledged events leave it); the agent's next try gets in.
    async with running_hub(settings):

        async def two() -> bool:
            return bool(await catalogue_rows(pg_server, pg_database) == 2)

        await until(two, what="the first two events")
        again = await asyncio.to_thread(agent_cli, "ship", "--config", str(config), "--json-logs")
        assert again.returncode == 0, again.stderr[-2000:]

        async def four() -> bool:
            return bool(await catalogue_rows(pg_server, pg_database) == 4)

        await until(four, what="all four")


async def test_a_version_committed_after_a_newer_one_is_not_current(
    pg_server: PostgresServer, pg_database: str
) -> None:
    from agent.core.eventmodels import BatchEvent, FileEntry
    from agent.hub.catalogue import Catalogue
    from agent.hub.search import Filters

    def event(version: int) -> BatchEvent:
        entry = FileEntry(
            path="s/a.csv",
            version=version,
            sha256=f"{version:064x}",
            size=1,
            format="text/csv",
            datasetType="generic",
        )
        return BatchEvent(
            id=f"pc-1:b{version}",
            agent="pc-1",
            root="drop",
            session="s",
            batchId=f"b{version}",
            part=1,
            parts=1,
            committedAt="2026-11-30T12:00:00+00:00",
            files=[entry],
        )

    catalogue = await Catalogue.connect(pg_database, password=pg_server.password)
    try:
        await catalogue.migrate()
        await catalogue.write([event(2)])
        await catalogue.write([event(1)])  # late: another hub, a redelivery
        found = await catalogue.search(Filters(agent="pc-1"))
    finally:
        await catalogue.close()
    assert [(r["path"], r["version"]) for r in found] == [("s/a.csv", 2)]


def test_the_hub_exits_75_when_the_catalogue_cannot_be_reached(tmp_path: Path) -> None:
    port = free_loopback_ports(1)[0]
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\nbus_url = "nats://127.0.0.1:{port}"\ncatalogue_dsn = "postgresql://fair@127.0.0.1:{port}/fair"\n'
    )
    done = agent_cli("hub", "--config", str(config))
    assert done.returncode == 75, done.stderr
    assert "cannot connect to the catalogue" in done.stderr
    config.write_text(
        f'[hub]\nbus_url = "nats://127.0.0.1:{port}"\n'
        f'catalogue_dsn = "postgresql://fair:secret@127.0.0.1:{port}/fair"\n'
    )
    refused = agent_cli("hub", "--config", str(config))
    assert refused.returncode == 3 and "holds a password" in refused.stderr and "secret" not in refused.stderr


def test_a_bus_that_is_down_does_not_hold_a_scan(tmp_path: Path, bus: NatsServer) -> None:
    config, drop = agent_config(tmp_path, "pc-1", bus)
    closed = free_loopback_ports(1)[0]
    config.write_text(config.read_text().replace(bus.url, f"nats://127.0.0.1:{closed}"))
    write(drop / "run" / "a.txt", "hello")
    started = time.monotonic()
    done = agent_cli("scan", str(drop), "--config", str(config), "--json-logs")
    assert done.returncode == 75, done.stderr[-2000:]
    assert "cannot connect to the bus" in done.stderr
    # It gives up after give_up_after_s (2 s), not after the first connection's own limit.
    assert time.monotonic() - started < FIRST_CONNECT_S
    assert ledger(config, "SELECT count(*) FROM events WHERE published_at IS NULL") == [(1,)]
