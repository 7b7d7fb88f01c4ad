"""Serving the web application with uvicorn inside the hub's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn

from ...core.errors import ConfigError

log = logging.getLogger("fair_agent.hub.web")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The hub owns SIGTERM and SIGINT; the web server stops when the hub tells it.
        yield


class WebServer:
    def __init__(self, app: Any, address: str, port: int) -> None:
        config = uvicorn.Config(
            app,
            host=address,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="web")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise ConfigError("the web server stopped as it started")
            await asyncio.sleep(0.02)
        log.info(f"catalogue web page at {self.url}")

    @property
    def port(self) -> int:
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = self._server.config.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/"

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
