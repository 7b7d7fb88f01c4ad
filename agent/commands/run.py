"""``fair-agent run``: the service, until a signal. Signal handlers only set events; the service
does the rest (stop intake, give batches in flight their grace period, exit)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from ..core.config import AgentConfig
from ..core.errors import ConfigError, RootUnavailableError, StateLockedError
from ..fs.statelock import StateLock
from ..ledger import Ledger
from ..service.children import LogSettings
from ..service.daemon import Service
from ..service.notify import Notifier
from .common import Command, Exit, add_common

#: After a second signal, whatever still runs after this long is cut short.
FORCED_EXIT_AFTER_S = 5.0

log = logging.getLogger("fair_agent.cli")


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--watch",
        type=Path,
        action="append",
        default=[],
        metavar="FOLDER",
        help="also watch FOLDER (repeatable)",
    )
    add_common(cmd)


def run(args: argparse.Namespace, config: AgentConfig) -> int:
    logs = LogSettings(args.log_level, True if args.json_logs else None, on_stdout=True)
    return asyncio.run(serve(with_roots(config, args.watch), logs))


def with_roots(config: AgentConfig, folders: Sequence[Path]) -> AgentConfig:
    """The configuration with extra watch roots from the command line (validated again)."""
    if not folders:
        return config
    data = config.model_dump()
    data["roots"] = [*data["roots"], *({"path": folder} for folder in folders)]
    try:
        return AgentConfig.model_validate(data)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


async def serve(config: AgentConfig, logs: LogSettings = LogSettings()) -> int:
    """The service until SIGTERM or SIGINT (a second one forces the exit); SIGHUP reconciles now."""
    loop = asyncio.get_running_loop()
    stop, force = asyncio.Event(), asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info(f"{sig.name} received: shutting down")
            stop.set()
            return
        log.warning(f"second {sig.name}: forcing exit")
        force.set()
        # A safety net: whatever still runs after a few seconds is cut short.
        loop.call_later(FORCED_EXIT_AFTER_S, os._exit, Exit.FORCED)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    # SIGHUP asks for a reconciliation now (fair-agent replay sends it). Installed before the lock
    # names this process, so an early SIGHUP can never kill it; one before the service exists is
    # moot, the start-up reconciliation comes anyway.
    services: list[Service] = []

    def on_hangup() -> None:
        for service in services:
            service.reconcile_now()

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    notifier = Notifier.from_env()
    try:
        with StateLock(config.state_dir, "run"):
            async with Ledger.open(config.ledger_path) as ledger:
                service = Service(config, ledger, notifier=notifier, log_settings=logs)
                services.append(service)
                await service.run(stop, force)
    finally:
        notifier.close()
    return Exit.FORCED if force.is_set() else Exit.OK


COMMAND = Command(
    description="Watch every configured root (inotify, or polling on network shares), wait until "
    "each session is complete (quiet period, stable sizes and mtimes, marker file if asked for), "
    "and ingest it. Reconciles at start-up and on a timer so nothing is missed. Logs JSON lines "
    "on stdout. SIGTERM or SIGINT stops it gracefully; a second signal forces the exit. Speaks "
    "systemd's notify protocol (READY, WATCHDOG, STATUS, STOPPING) when $NOTIFY_SOCKET is set.",
    examples=(
        "fair-agent run --config /etc/fair-agent/agent.toml",
        "fair-agent run --watch /data/plate-reader --state-dir /var/lib/fair-agent",
    ),
    add_arguments=add_arguments,
    run=run,
    logs_to_stdout=True,
    temporary_errors=(RootUnavailableError, StateLockedError),
)
