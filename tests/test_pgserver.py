"""What the hub's catalogue relies on, established against the real PostgreSQL 15 (Debian's) and asyncpg.

The hub connects with a DSN and a password kept apart; every test gets its own database; a restart, or
a kill -9, of the server loses no committed row. Each test pins one behaviour of the server.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import REPO
from tests.pgserver import SERVICE_USER, PostgresServer


def listening_sockets(pid: int) -> tuple[set[tuple[str, int]], set[str]]:
    """The TCP (address, port) pairs and unix socket paths process `pid` listens on, as the kernel says."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    tcp = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                # Each 32-bit word of the address is in the machine's (little-endian) byte order.
                raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
                tcp.add((str(ipaddress.ip_address(raw)), int(port, 16)))
    unix = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and fields[6] in inodes and fields[3] == "00010000":  # __SO_ACCEPTCON
            unix.add(fields[7])
    return tcp, unix


def process_exists(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped by its new parent, is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


async def test_connects_only_with_the_password(pg_server: PostgresServer, pg_database: str) -> None:
    assert pg_server.password not in pg_database
    assert pg_server.password not in pg_server.dsn
    connection = await asyncpg.connect(pg_database, password=pg_server.password)
    try:
        user, database = await connection.fetchrow("SELECT current_user, current_database()")
        assert (user, database) == ("fair", pg_database.rsplit("/", 1)[1])
        assert int(await connection.fetchval("SHOW server_version_num")) // 10000 == 15
        assert await connection.fetchval("SHOW password_encryption") == "scram-sha-256"
    finally:
        await connection.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(pg_database, password="wrong")
    connection = await asyncpg.connect(pg_server.dsn_with_password())
    await connection.close()


@pytest.mark.parametrize("turn", ["first", "second"])
async def test_each_test_gets_a_fresh_database(
    pg_server: PostgresServer, pg_database: str, turn: str
) -> None:
    connection = await asyncpg.connect(pg_database, password=pg_server.password)
    try:
        assert await connection.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        # Would fail on the second turn if the two turns shared a database.
        await connection.execute("CREATE TABLE events (id bigint PRIMARY KEY)")
    finally:
        await connection.close()


async def test_stop_or_kill_9_then_start_keeps_committed_rows(
    pg_server: PostgresServer, pg_database: str
) -> None:
    async def insert_and_count(*ids: int) -> int:
        connection = await asyncpg.connect(pg_database, password=pg_server.password)
        try:
            await connection.execute("CREATE TABLE IF NOT EXISTS events (id bigint PRIMARY KEY)")
            for row in ids:  # one commit each, as the hub's acknowledgements will be
                await connection.execute("INSERT INTO events VALUES ($1)", row)
            count: int = await connection.fetchval("SELECT count(*) FROM events")
            return count
        finally:
            await connection.close()

    port = pg_server.port
    assert await insert_and_count(*range(100)) == 100
    pg_server.stop()
    pg_server.start()
    assert await insert_and_count(*range(100, 200)) == 200
    pid = pg_server.pid
    assert pid is not None
    pg_server.kill()  # the postmaster and its backends, the moment the last commit returned
    assert not process_exists(pid)
    pg_server.start()  # crash recovery replays the WAL
    assert pg_server.port == port
    assert await insert_and_count() == 200
    assert "database system was not properly shut down" in pg_server.log_text()


def test_listens_only_on_loopback_and_in_its_directory(pg_server: PostgresServer) -> None:
    assert pg_server.pid is not None
    tcp, unix = listening_sockets(pg_server.pid)
    assert tcp == {("127.0.0.1", pg_server.port)}
    assert unix == {str(pg_server.directory / f".s.PGSQL.{pg_server.port}")}
    status = Path(f"/proc/{pg_server.pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert uid != 0  # PostgreSQL refuses root; under root it runs as SERVICE_USER
    if os.geteuid() == 0:
        assert Path(pg_server.directory).owner() == SERVICE_USER


def test_the_server_dies_with_the_process_that_started_it() -> None:
    directory = Path(tempfile.mkdtemp(prefix="fair-agent-pg-"))
    script = (
        "import sys, time; from pathlib import Path; from tests.pgserver import PostgresServer; "
        "server = PostgresServer(Path(sys.argv[1])); server.start(); print(server.pid, flush=True); "
        "time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(directory)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        postmaster = int(parent.stdout.readline())
        assert process_exists(postmaster)
        parent.send_signal(signal.SIGKILL)  # nothing of the parent's runs: no stop(), no atexit
        parent.wait()
        deadline = time.monotonic() + 10
        while process_exists(postmaster):
            assert time.monotonic() < deadline, "the postmaster outlived the process that started it"
            time.sleep(0.02)
    finally:
        parent.kill()
        parent.wait()
        shutil.rmtree(directory, ignore_errors=True)
