"""``fair-agent hub --config hub.toml``: the facility's catalogue, fed by the agents' events."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from ..hub.config import HubConfig, load_hub_config
from ..hub.service import CentreUnavailableError, Hub
from .common import Command, Exit, add_logging

log = logging.getLogger("fair_agent.hub")


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--config", type=Path, metavar="FILE", help="the hub's TOML file ([hub])")
    add_logging(cmd)


def run(args: argparse.Namespace, config: HubConfig) -> int:
    return asyncio.run(_serve(config))


async def _serve(config: HubConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hub = Hub(config.hub)
    metrics = None
    if config.hub.metrics_port:
        from ..hub.metrics import serve_metrics

        metrics = serve_metrics(hub, config.hub.metrics_address, config.hub.metrics_port)
    try:
        await hub.run(stop)
    finally:
        if metrics is not None:
            metrics.close()
    log.info("hub stopped", extra={"files": hub.stats.files})
    return Exit.OK


COMMAND = Command(
    description="Run the hub: take the agents' events from NATS JetStream (a durable consumer, "
    "shared by every hub process), write them to the PostgreSQL catalogue in one transaction per "
    "batch, acknowledge, and send each agent its receipts. SIGTERM or SIGINT stops it after the "
    "batch in hand. Logs go to stdout. Exit status: 0 after a signal, 3 on a configuration error, "
    "75 when the bus or the catalogue cannot be reached (systemd tries again).",
    examples=("fair-agent hub --config /etc/fair-agent/hub.toml",),
    add_arguments=add_arguments,
    run=run,
    logs_to_stdout=True,
    config_loader=lambda args: load_hub_config(args.config),
    # The bus or the catalogue not reachable yet (a power cut, the hub up first): systemd retries.
    temporary_errors=(CentreUnavailableError,),
)
