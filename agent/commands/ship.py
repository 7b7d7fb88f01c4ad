"""``fair-agent ship``: drain the outbox to the object store once (for a PC not running the service)."""

from __future__ import annotations

import argparse
import asyncio

from rich.console import Console

from ..core.config import AgentConfig
from ..core.errors import ConfigError
from ..fs.statelock import StateLock
from ..ledger import Ledger
from .common import Command, Exit, add_common
from .shipping import deliver, delivery_table


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--wait",
        action="store_true",
        help="keep trying while the store is unreachable, until everything is shipped (Ctrl-C stops)",
    )
    add_common(cmd)


def run(args: argparse.Namespace, config: AgentConfig) -> int:
    if config.store is None and config.bus is None:
        raise ConfigError("nothing to ship to: the configuration has neither [store] nor [bus]")
    return asyncio.run(_ship(args, config))


async def _ship(args: argparse.Namespace, config: AgentConfig) -> int:
    with StateLock(config.state_dir, "ship"):
        async with Ledger.open(config.ledger_path) as ledger:
            delivery = await deliver(config, ledger, Console(stderr=True), wait=args.wait)
    Console().print(delivery_table(delivery))
    return Exit.OK if delivery.complete else Exit.TEMPFAIL


COMMAND = Command(
    description="Ship every ingested file not yet in the object store ([store] in the configuration), "
    "then the documents of each session, and publish the events the hub was not told yet ([bus]); "
    "then exit. The service does this by itself; this is for a PC that runs only scans. Exit "
    "status: 0 when nothing is left to ship or publish, 75 when the store or the bus stayed "
    "unreachable (the backlog is kept and counted), 3 on a configuration error or a state directory "
    "in use.",
    examples=(
        "fair-agent ship --config /etc/fair-agent/agent.toml",
        "fair-agent ship --wait --config /etc/fair-agent/agent.toml",
    ),
    add_arguments=add_arguments,
    run=run,
)
