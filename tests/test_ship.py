"""Shipping to object storage, against the real SeaweedFS server: what the issue says must hold.

Every test drives the real CLI (or the real shipper) against a fresh bucket; objects are read back
and hashed. Faults are real: kill -9 of the agent or of the server, a server that is not running,
a file rewritten after ingest, a checksum the server must refuse.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from agent.core.config import AgentConfig, load_config
from agent.core.naming import CRATE_NAME, is_own_path
from agent.ledger import Ledger
from agent.ship.credentials import load_credentials
from agent.ship.errors import ObjectRejectedError
from agent.ship.objectstore import FileRange, ObjectStore, b64
from agent.ship.shipper import Shipper
from tests.conftest import REPO, agent_cli, copy_corpus, opened_db, sha256_of, write
from tests.s3server import S3Server, free_loopback_ports

MiB = 1 << 20


def store_config(
    tmp_path: Path, server: S3Server, bucket: str, *, endpoint: str | None = None, **store: Any
) -> Path:
    """A config file for the CLI with a [store] on the test server, credentials in a 0600 file."""
    credentials = tmp_path / "s3.credentials"
    credentials.write_text(
        f"[default]\naws_access_key_id = {server.access_key}\naws_secret_access_key = {server.secret_key}\n"
    )
    credentials.chmod(0o600)
    settings = {
        "endpoint": endpoint or server.endpoint_url,
        "bucket": bucket,
        "credentials_file": str(credentials),
        "retry_max_s": 1.0,
        "give_up_after_s": 3.0,
        **store,
    }
    lines = ['agent_name = "pc-1"', f'state_dir = "{tmp_path / "state"}"', "[store]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def objects(server: S3Server, bucket: str, prefix: str = "") -> dict[str, int]:
    client = server.client()
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return found


def read_object(server: S3Server, bucket: str, key: str) -> bytes:
    return server.client().get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


def ledger_rows(config_path: Path, sql: str) -> list[tuple[Any, ...]]:
    state = load_config(config_path, env={}).ledger_path
    with opened_db(f"file:{state}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


def ship_logs(stderr: str) -> dict[str, Any]:
    """The JSON log line that sums up a shipping."""
    for line in stderr.splitlines():
        if line.startswith("{") and '"parts_sent"' in line:
            return json.loads(line)  # type: ignore[no-any-return]
    raise AssertionError(f"no shipping summary in:\n{stderr[-2000:]}")


def test_corpus_and_a_multipart_file_read_back_with_the_ledgers_hashes(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    drop = copy_corpus(tmp_path / "drop")
    big = write(drop / "big-run" / "frames.raw", os.urandom(300 * MiB))
    cfg = store_config(tmp_path, s3_server, s3_bucket)
    done = agent_cli("scan", str(drop), "--config", str(cfg), "--json-logs", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = ship_logs(done.stderr)
    assert summary["parts_sent"] > 1  # the 300 MiB file went in parts

    stored = objects(s3_server, s3_bucket, "sha256/")
    files = ledger_rows(cfg, "SELECT relpath, sha256, size FROM files WHERE status = 'current'")
    on_disk = {p.relative_to(drop).as_posix() for p in drop.rglob("*") if p.is_file()}
    assert {r for r, _, _ in files} == {r for r in on_disk if not is_own_path(r)}
    for relpath, sha256, size in files:
        assert stored[f"sha256/{sha256}"] == size, relpath
    assert stored[f"sha256/{sha256_of(big)}"] == 300 * MiB
    for _, sha256, _ in files[:: max(1, len(files) // 12)]:
        assert hashlib.sha256(read_object(s3_server, s3_bucket, f"sha256/{sha256}")).hexdigest() == sha256
    assert ledger_rows(cfg, "SELECT count(*) FROM shipments WHERE state != 'stored'") == [(0,)]

    # A crate in the bucket lists exactly its session's files, each findable by its sha256.
    sessions = ledger_rows(cfg, "SELECT DISTINCT session FROM files WHERE status = 'current'")
    checked = 0
    for (session,) in sessions:
        key = f"sessions/pc-1/drop/{session}/{CRATE_NAME}"
        if not (drop / session / CRATE_NAME).is_file():
            continue
        crate = json.loads(read_object(s3_server, s3_bucket, key))
        assert crate == json.loads((drop / session / CRATE_NAME).read_text())
        listed = {unquote(e["@id"]): e for e in crate["@graph"] if "File" in _types(e)}
        ours = {r for r, _, _ in files if r.startswith(session + "/")}
        assert {f"{session}/{i}" for i in listed} == ours
        for entity in listed.values():
            assert f"sha256/{entity['sha256']}" in stored
        checked += 1
    assert checked >= 2


def _types(entity: dict[str, Any]) -> list[str]:
    kind = entity.get("@type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def test_two_sessions_with_the_same_bytes_make_one_object(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    drop = tmp_path / "drop"
    same = os.urandom(200_000)
    write(drop / "run-a" / "trace.bin", same)
    write(drop / "run-b" / "trace.bin", same)
    cfg = store_config(tmp_path, s3_server, s3_bucket)
    done = agent_cli("scan", str(drop), "--config", str(cfg), "--json-logs")
    assert done.returncode == 0, done.stderr[-3000:]
    data = [k for k in objects(s3_server, s3_bucket) if k.startswith("sha256/")]
    assert data == [f"sha256/{hashlib.sha256(same).hexdigest()}"]
    assert ship_logs(done.stderr)["already_stored"] == 1
    docs = objects(s3_server, s3_bucket, "sessions/")
    assert "sessions/pc-1/drop/run-a/trace.bin.fair.json" in docs
    assert "sessions/pc-1/drop/run-b/trace.bin.fair.json" in docs


def test_derived_tables_are_stored_and_the_sessions_documents_follow(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    drop = tmp_path / "drop"
    for session in ("EXP-000123_alice", "EXP-000124_bob"):
        shutil.copytree(REPO / "sample_data" / session, drop / session)
    cfg = store_config(tmp_path, s3_server, s3_bucket)
    done = agent_cli("scan", str(drop), "--config", str(cfg), "--rules", "rules", "--json-logs", timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    for session in ("EXP-000123_alice", "EXP-000124_bob"):
        table = drop / session / "OD600_kinetics.csv.tidy.parquet"
        key = f"sha256/{sha256_of(table)}"
        assert read_object(s3_server, s3_bucket, key) == table.read_bytes()
        crate = json.loads(read_object(s3_server, s3_bucket, f"sessions/pc-1/drop/{session}/{CRATE_NAME}"))
        listed = {e["@id"]: e for e in crate["@graph"]}
        assert listed[table.name]["sha256"] == sha256_of(table)
    assert ledger_rows(cfg, "SELECT count(*) FROM shipments WHERE state != 'stored'") == [(0,)]

    # Tables made before the store was set are not queued: the session's documents go all the same.
    later = tmp_path / "later"
    shutil.copytree(REPO / "sample_data" / "EXP-000123_alice", later / "EXP-000123_alice")
    state = tmp_path / "later-state"
    assert agent_cli("scan", str(later), "--rules", "rules", "--state-dir", str(state)).returncode == 0
    done = agent_cli(
        "scan", str(later), "--config", str(cfg), "--rules", "rules", "--state-dir", str(state), timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"sessions/pc-1/later/EXP-000123_alice/{CRATE_NAME}" in objects(s3_server, s3_bucket, "sessions/")


def test_kill_9_of_the_agent_mid_upload_resends_at_most_the_parts_in_flight(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    drop = tmp_path / "drop"
    big = write(drop / "run" / "stack.raw", os.urandom(160 * MiB))
    # Ingest without a store reachable, so the upload starts in a process we control.
    offline = store_config(
        tmp_path, s3_server, s3_bucket, endpoint=f"http://127.0.0.1:{free_loopback_ports(1)[0]}"
    )
    assert agent_cli("scan", str(drop), "--config", str(offline)).returncode == 75
    cfg = store_config(tmp_path, s3_server, s3_bucket, part_size_mib=5, concurrency=2)
    total_parts = 32

    shipping = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "ship", "--config", str(cfg), "--json-logs"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while ledger_rows(cfg, "SELECT count(*) FROM shipment_parts")[0][0] < 6:
        assert shipping.poll() is None and time.monotonic() < deadline, "the upload ended before the kill"
        time.sleep(0.02)
    shipping.send_signal(signal.SIGKILL)
    shipping.wait()
    recorded = ledger_rows(cfg, "SELECT count(*) FROM shipment_parts")[0][0]
    assert 6 <= recorded < total_parts

    done = agent_cli("ship", "--config", str(cfg), "--json-logs")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = ship_logs(done.stderr)
    assert summary["parts_resumed"] == recorded
    assert summary["parts_sent"] == total_parts - recorded
    assert hashlib.sha256(read_object(s3_server, s3_bucket, f"sha256/{sha256_of(big)}")).hexdigest() == (
        sha256_of(big)
    )
    assert s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert ledger_rows(cfg, "SELECT count(*) FROM shipment_parts") == [(0,)]


def test_kill_9_of_the_server_mid_upload_heals_without_anyone(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    drop = tmp_path / "drop"
    big = write(drop / "run" / "stack.raw", os.urandom(120 * MiB))
    offline = store_config(
        tmp_path,
        s3_server,
        s3_bucket,
        endpoint=f"http://127.0.0.1:{free_loopback_ports(1)[0]}",
        give_up_after_s=0,
    )
    assert agent_cli("scan", str(drop), "--config", str(offline)).returncode == 75
    cfg = store_config(tmp_path, s3_server, s3_bucket, part_size_mib=5, concurrency=2, retry_max_s=0.5)
    shipping = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "ship", "--wait", "--config", str(cfg), "--json-logs"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while ledger_rows(cfg, "SELECT count(*) FROM shipment_parts")[0][0] < 3:
            assert shipping.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        s3_server.kill()
        time.sleep(1.5)
        s3_server.start()
        _, stderr = shipping.communicate(timeout=120)
    finally:
        if shipping.poll() is None:
            shipping.kill()
    assert shipping.returncode == 0, stderr[-3000:]
    assert "store unavailable" in stderr
    assert hashlib.sha256(read_object(s3_server, s3_bucket, f"sha256/{sha256_of(big)}")).hexdigest() == (
        sha256_of(big)
    )


def test_store_down_from_the_start_ingest_goes_on_and_the_backlog_drains_later(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    drop = tmp_path / "drop"
    write(drop / "run-1" / "a.csv", "x,y\n1,2\n")
    write(drop / "run-2" / "b.bin", os.urandom(5000))
    cfg = store_config(tmp_path, s3_server, s3_bucket, give_up_after_s=1.0)
    s3_server.stop()
    try:
        done = agent_cli("scan", str(drop), "--config", str(cfg), "--json-logs")
        assert done.returncode == 75, done.stderr[-3000:]
        assert "still to ship" in done.stdout
        assert (drop / "run-1" / "a.csv.fair.json").is_file()  # ingested locally all the same
        status = json.loads(agent_cli("status", "--json", "--config", str(cfg)).stdout)
        store = status["store"]
        assert store["backlog"]["files"] == 2 and store["backlog"]["bytes"] == 5000 + 8
        assert store["backlog"]["sessions"] == 2
        assert "unreachable" in store["lastError"]
        assert store["backlog"]["oldestAgeSeconds"] >= 0
    finally:
        s3_server.start()
    done = agent_cli("ship", "--config", str(cfg), "--json-logs")
    assert done.returncode == 0, done.stderr[-3000:]
    status = json.loads(agent_cli("status", "--json", "--config", str(cfg)).stdout)
    assert status["store"]["backlog"]["files"] == 0
    assert status["store"]["stored"]["files"] == 2
    assert status["store"]["lastError"] is None
    inspected = json.loads(
        agent_cli("inspect", str(drop / "run-2" / "b.bin"), "--json", "--config", str(cfg)).stdout
    )
    stored = inspected["history"][0]["stored"]
    assert stored["state"] == "stored"
    assert stored["uri"] == f"s3://{s3_bucket}/sha256/{sha256_of(drop / 'run-2' / 'b.bin')}"
    assert stored["verifiedAt"]


def test_a_file_rewritten_after_ingest_is_never_stored_under_its_old_hash(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    drop = tmp_path / "drop"
    small = write(drop / "run" / "small.bin", os.urandom(4096))
    large = write(drop / "run" / "large.bin", os.urandom(12 * MiB))
    old = {small: sha256_of(small), large: sha256_of(large)}
    offline = store_config(
        tmp_path,
        s3_server,
        s3_bucket,
        endpoint=f"http://127.0.0.1:{free_loopback_ports(1)[0]}",
        give_up_after_s=0,
    )
    assert agent_cli("scan", str(drop), "--config", str(offline)).returncode == 75
    for path in old:  # same size, same mtime: only the bytes differ
        st = path.stat()
        path.write_bytes(os.urandom(st.st_size))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    cfg = store_config(tmp_path, s3_server, s3_bucket, part_size_mib=5)
    done = agent_cli("ship", "--config", str(cfg), "--json-logs")
    # The session's crate names the old bytes: it waits until the files are ingested again.
    assert done.returncode == 75, done.stderr[-3000:]
    assert "changed after it was ingested" in done.stderr
    stored = objects(s3_server, s3_bucket)
    assert not any(f"sha256/{h}" in stored for h in old.values())
    assert not any(k.startswith("sessions/") for k in stored)
    assert ledger_rows(cfg, "SELECT relpath, state FROM shipments ORDER BY relpath") == [
        ("run/large.bin", "changed"),
        ("run/small.bin", "changed"),
    ]
    assert s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    # The next scan sees them changed (their quick check was voided) and ships the new bytes.
    again = agent_cli("scan", str(drop), "--config", str(cfg), "--json-logs")
    assert again.returncode == 0, again.stderr[-3000:]
    stored = objects(s3_server, s3_bucket)
    assert {f"sha256/{sha256_of(p)}" for p in old} <= set(stored)
    assert f"sessions/pc-1/drop/run/{CRATE_NAME}" in stored


async def test_the_server_refuses_a_wrong_checksum_and_the_agent_sends_again(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    config = load_config(store_config(tmp_path, s3_server, s3_bucket), env={})
    assert config.store is not None
    store = ObjectStore(config.store, load_credentials(config.store))
    wrong = b64(hashlib.sha256(b"other bytes").digest())
    with pytest.raises(ObjectRejectedError, match="BadDigest"):
        store.put("sha256/x", b"these bytes", wrong, {})
    assert "sha256/x" not in objects(s3_server, s3_bucket)

    # The agent's own upload, its first PUT corrupted on the way: refused, deferred, sent again.
    drop = tmp_path / "drop"
    data = write(drop / "run" / "data.bin", os.urandom(10_000))
    sent: list[str] = []

    class Garbling(ObjectStore):
        def put(
            self,
            key: str,
            body: bytes | FileRange,
            checksum: str,
            metadata: Mapping[str, str],
            content_type: str = "application/octet-stream",
        ) -> str | None:
            if key.startswith("sha256/") and not sent and isinstance(body, bytes):
                sent.append(key)
                body = body[:-1] + bytes([body[-1] ^ 1])
            return super().put(key, body, checksum, metadata, content_type)

    from tests.conftest import run_scan

    await run_scan(drop, config)
    async with Ledger.open(config.ledger_path) as ledger:
        shipper = Shipper(config, ledger)
        shipper.store = shipper._uploader.store = Garbling(config.store, load_credentials(config.store))
        try:
            await shipper.cycle()
            first = rows_of(config, "SELECT attempts, last_error, state FROM shipments")
            assert first[0][0] == 1 and "refused" in first[0][1] and first[0][2] == "pending"
            shipper._deferred.until.clear()
            await shipper.cycle()
        finally:
            shipper.close()
    assert sent == [f"sha256/{sha256_of(data)}"]
    assert read_object(s3_server, s3_bucket, sent[0]) == data.read_bytes()


def rows_of(config: AgentConfig, sql: str) -> list[tuple[Any, ...]]:
    with opened_db(f"file:{config.ledger_path}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


def test_credentials_readable_by_others_are_refused_and_the_secret_is_never_written(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    drop = tmp_path / "drop"
    write(drop / "run" / "a.txt", "hello")
    cfg = store_config(tmp_path, s3_server, s3_bucket)
    (tmp_path / "s3.credentials").chmod(0o644)
    refused = agent_cli("scan", str(drop), "--config", str(cfg))
    assert refused.returncode == 3
    assert "readable or writable by every user" in refused.stderr and "chmod o-rw" in refused.stderr
    (tmp_path / "s3.credentials").chmod(0o640)
    done = agent_cli("scan", str(drop), "--config", str(cfg), "--json-logs", "--log-level", "debug")
    assert done.returncode == 0, done.stderr[-3000:]
    secret = s3_server.secret_key
    assert secret not in done.stdout + done.stderr
    for path in [*drop.rglob("*"), *(tmp_path / "state").rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_credentials_from_systemd_and_from_the_environment(tmp_path: Path) -> None:
    from agent.core.config import StoreSettings
    from agent.core.errors import ConfigError

    settings = StoreSettings(endpoint="http://127.0.0.1:9", bucket="lab-data")
    folder = tmp_path / "creds"
    folder.mkdir()
    (folder / "s3.credentials").write_text("aws_access_key_id = AK\naws_secret_access_key = SK\n")
    (folder / "s3.credentials").chmod(0o400)  # as systemd hands it over
    found = load_credentials(settings, {"CREDENTIALS_DIRECTORY": str(folder), "AWS_ACCESS_KEY_ID": "no"})
    assert (found.access_key_id, found.secret_access_key) == ("AK", "SK")
    assert "SK" not in repr(found)
    env = load_credentials(settings, {"AWS_ACCESS_KEY_ID": "A2", "AWS_SECRET_ACCESS_KEY": "S2"})
    assert (env.access_key_id, env.secret_access_key) == ("A2", "S2")
    with pytest.raises(ConfigError, match="no credentials"):
        load_credentials(settings, {})


async def test_the_service_ships_what_it_ingests(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str, config: AgentConfig
) -> None:
    from agent.service.daemon import Service
    from tests.conftest import live_config, wait_for

    drop = tmp_path / "drop"
    drop.mkdir()
    stored = load_config(store_config(tmp_path, s3_server, s3_bucket), env={}).store
    live = live_config(config, drop).model_copy(update={"store": stored, "agent_name": "pc-1"})
    async with Ledger.open(live.ledger_path) as ledger, Service(live, ledger).running() as service:
        data = write(drop / "run-7" / "trace.csv", "t,v\n0,1\n1,2\n")
        key = f"sha256/{sha256_of(data)}"
        crate = f"sessions/pc-1/drop/run-7/{CRATE_NAME}"

        def arrived() -> bool:
            return {key, crate} <= set(objects(s3_server, s3_bucket))

        await wait_for(arrived, timeout=30, interval=0.2)
        assert service.shipper is not None and service.shipper.stats.files == 1
        snapshot = service.snapshot()
        assert snapshot.store is not None and snapshot.store.store_error is None
