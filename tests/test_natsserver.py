"""What the fleet's event bus relies on, established against the real nats-server (2.15.1) and nats-py.

Agents publish their events to JetStream under `fair.v1.<token>.>` with a `Nats-Msg-Id`, each with
credentials that allow nothing else; the hub reads them. Each test pins one behaviour of the server;
if an upgrade changes it, the test says which.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig

from tests.conftest import wait_for
from tests.natsserver import ADMIN_USER, HUB_USER, NatsServer, agent_permissions


def token() -> str:
    """A fresh agent token, so that tests sharing the session's server never share subjects."""
    return f"t{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def connected(
    server: NatsServer, user: str, errors: list[Exception] | None = None
) -> AsyncIterator[Client]:
    """A connection as `user`; an agent's uses its own inbox prefix. Asynchronous errors go to `errors`.

    No reconnection: a test must see what the server did to the connection.
    """

    async def record(error: Exception) -> None:
        if errors is not None:
            errors.append(error)

    options: dict[str, Any] = {}
    if user not in {HUB_USER, ADMIN_USER}:
        options["inbox_prefix"] = f"_INBOX_{user}"
    name, password = server.credentials(user)
    client = await nats.connect(
        server.url, user=name, password=password, allow_reconnect=False, error_cb=record, **options
    )
    try:
        yield client
    finally:
        await client.close()


async def ignore(error: Exception) -> None:
    """An error callback for connections that are expected to fail (nats-py logs errors otherwise)."""


async def add_stream(server: NatsServer, *tokens: str) -> str:
    """A fresh file stream holding the events of the agents `tokens`, made by the admin; its name."""
    name = f"EVENTS_{uuid.uuid4().hex[:12]}"
    async with connected(server, ADMIN_USER) as admin:
        subjects = [f"fair.v1.{agent}.>" for agent in tokens]
        await admin.jetstream().add_stream(StreamConfig(name=name, subjects=subjects))
    return name


async def stream_messages(server: NatsServer, stream: str) -> int:
    async with connected(server, ADMIN_USER) as admin:
        info = await admin.jetstream().stream_info(stream)
    return info.state.messages


async def test_only_loopback_only_with_credentials(nats_server: NatsServer) -> None:
    varz = nats_server.varz()
    assert (varz["host"], varz["http_host"]) == ("127.0.0.1", "127.0.0.1")
    assert varz["auth_required"] is True
    # nats-py raises its generic Error here, not its AuthorizationError.
    for credentials in ({}, {"user": ADMIN_USER, "password": "wrong"}):
        with pytest.raises(nats.errors.Error, match="'Authorization Violation'"):
            await nats.connect(nats_server.url, allow_reconnect=False, error_cb=ignore, **credentials)
    # The limit the server announces, which nats-py enforces before sending: 1 MiB.
    async with connected(nats_server, ADMIN_USER) as admin:
        assert admin.max_payload == varz["max_payload"] == nats_server.max_payload == 1024 * 1024
        with pytest.raises(nats.errors.MaxPayloadError):
            await admin.publish("fair.v1.too-big", b"x" * (nats_server.max_payload + 1))


async def test_a_repeated_msg_id_is_acknowledged_as_a_duplicate_and_stored_once(
    nats_server: NatsServer,
) -> None:
    agent = token()
    nats_server.set_users({agent: agent_permissions(agent)})
    stream = await add_stream(nats_server, agent)
    async with connected(nats_server, agent) as client:
        js = client.jetstream()
        first = await js.publish(f"fair.v1.{agent}.ingested", b"{}", headers={"Nats-Msg-Id": "event-1"})
        again = await js.publish(f"fair.v1.{agent}.ingested", b"{}", headers={"Nats-Msg-Id": "event-1"})
        other = await js.publish(f"fair.v1.{agent}.ingested", b"{}", headers={"Nats-Msg-Id": "event-2"})
    assert (first.stream, first.seq, first.duplicate) == (stream, 1, None)
    assert (again.seq, again.duplicate) == (1, True)
    assert (other.seq, other.duplicate) == (2, None)
    assert await stream_messages(nats_server, stream) == 2


async def test_an_agent_cannot_publish_or_subscribe_as_another_agent(nats_server: NatsServer) -> None:
    agent, other = token(), token()
    nats_server.set_users({agent: agent_permissions(agent), other: agent_permissions(other)})
    stream = await add_stream(nats_server, agent, other)
    errors: list[Exception] = []
    async with connected(nats_server, agent, errors) as client:
        js = client.jetstream()
        assert (await js.publish(f"fair.v1.{agent}.ingested", b"mine")).seq == 1
        # The server drops the message and says so on the connection (-ERR), which stays open: nats-py
        # hands that to the error callback, and the JetStream publish sees no acknowledgement at all.
        with pytest.raises(nats.errors.TimeoutError):
            await js.publish(f"fair.v1.{other}.ingested", b"forged", timeout=0.5)
        await client.subscribe(f"fair.v1.receipt.{other}")
        # Not flush(): nats-py 2.16 writes its PING straight to the socket, ahead of a SUB still in its
        # buffer, so the PONG can come back before the -ERR for the SUB.
        await wait_for(lambda: len(errors) == 2, timeout=5)
        assert client.is_connected
    assert [str(error) for error in errors] == [
        f'nats: permissions violation for publish to "fair.v1.{other}.ingested"',
        f'nats: permissions violation for subscription to "fair.v1.receipt.{other}"',
    ]
    assert all(type(error) is nats.errors.Error for error in errors)
    assert await stream_messages(nats_server, stream) == 1


async def test_permission_changes_apply_on_reload_without_restart(nats_server: NatsServer) -> None:
    agent = token()
    nats_server.set_users({agent: agent_permissions(agent)})
    stream = await add_stream(nats_server, agent)
    user, password = nats_server.credentials(agent)
    pid = nats_server.pid
    errors: list[Exception] = []
    async with connected(nats_server, agent, errors) as client:
        js = client.jetstream()
        await js.publish(f"fair.v1.{agent}.ingested", b"before")
        # Revoked: the open connection loses the right at once. (Not with `"allow": []`: an empty
        # allow list is no list, and allows everything.)
        nats_server.set_users({agent: {**agent_permissions(agent), "publish": {"deny": [">"]}}})
        with pytest.raises(nats.errors.TimeoutError):
            await js.publish(f"fair.v1.{agent}.ingested", b"revoked", timeout=0.5)
        assert client.is_connected
        # Removed: the server drops the connection without a word, and refuses the next one.
        nats_server.set_users({})
        await wait_for(lambda: client.is_closed, timeout=5)
    assert nats_server.pid == pid
    assert [type(error) for error in errors] == [nats.errors.Error, nats.errors.UnexpectedEOF]
    assert "permissions violation for publish" in str(errors[0])
    with pytest.raises(nats.errors.Error, match="'Authorization Violation'"):
        await nats.connect(
            nats_server.url, user=user, password=password, allow_reconnect=False, error_cb=ignore
        )
    assert await stream_messages(nats_server, stream) == 1


async def test_stop_then_start_keeps_the_streams(nats_server: NatsServer) -> None:
    stream = await add_stream(nats_server, agent := token())
    async with connected(nats_server, HUB_USER) as hub:
        await hub.jetstream().publish(f"fair.v1.{agent}.ingested", b"kept")
    url, pid = nats_server.url, nats_server.pid
    nats_server.stop()
    assert not nats_server.running
    nats_server.start()
    assert nats_server.url == url and nats_server.pid != pid
    async with connected(nats_server, HUB_USER) as hub:
        message = await hub.jetstream().get_msg(stream, 1)
    assert message.data == b"kept"


async def test_kill_9_then_start_keeps_acknowledged_messages(nats_server: NatsServer) -> None:
    stream = await add_stream(nats_server, agent := token())
    async with connected(nats_server, HUB_USER) as hub:
        js = hub.jetstream()
        for number in range(50):
            await js.publish(f"fair.v1.{agent}.ingested", str(number).encode())
    # No fsync (sync_interval is 2 min) is needed for this: the acknowledged writes reached the kernel.
    nats_server.kill()
    nats_server.start()
    async with connected(nats_server, HUB_USER) as hub:
        js = hub.jetstream()
        assert (await js.stream_info(stream)).state.messages == 50
        assert (await js.get_msg(stream, 50)).data == b"49"
        assert (await js.publish(f"fair.v1.{agent}.ingested", b"after")).seq == 51


async def test_the_servers_jetstream_storage_can_be_capped(tmp_path: Path) -> None:
    server = NatsServer(tmp_path, max_file_store=64 * 1024, max_memory_store=32 * 1024)
    server.start()
    try:
        config = server.jsz()["config"]
        assert (config["max_storage"], config["max_memory"]) == (64 * 1024, 32 * 1024)
        async with connected(server, HUB_USER) as hub:
            js = hub.jetstream()
            # A stream that reserves more than the server has is refused when it is made...
            with pytest.raises(nats.js.errors.ServerError) as refused:
                await js.add_stream(StreamConfig(name="BIG", subjects=["big.>"], max_bytes=128 * 1024))
            assert refused.value.err_code == 10047  # insufficient storage resources available
            # ... and one without its own limit is refused a message once the server's store is full.
            await js.add_stream(StreamConfig(name="OPEN", subjects=["open.>"]))
            with pytest.raises(nats.js.errors.ServiceUnavailableError) as full:
                for _ in range(100):
                    await js.publish("open.event", b"x" * 1000)
            assert full.value.err_code == 10023  # insufficient resources
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.monitor_url}/healthz", timeout=1)
