"""Turning filesystem changes into the paths that changed, with watchfiles.

Inotify for local folders; polling for network shares, where change notifications from other
machines never arrive. Names the agent writes itself, and ignored names, are filtered out before
they reach the tracker, so the agent's own outputs never trigger a batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from watchfiles import Change, awatch

from ..core.batch import Root
from ..core.config import CompletionPolicy, RootSettings
from ..core.naming import IgnoreRules
from ..fs.fsinfo import filesystem_type, is_network_filesystem

log = logging.getLogger("fair_agent.watch")

Mode = Literal["events", "polling"]


def choose_mode(settings: RootSettings, fs_type: str) -> tuple[Mode, str]:
    """The watch mode for a root, and why, for the log."""
    if settings.mode != "auto":
        return settings.mode, "set in the configuration"
    if is_network_filesystem(fs_type):
        return "polling", f"it is on a {fs_type} filesystem, where change notifications do not arrive"
    return "events", f"it is on a local {fs_type} filesystem"


def root_mode(settings: RootSettings) -> tuple[Mode, str]:
    return choose_mode(settings, filesystem_type(settings.path))


async def watch_paths(
    root: Path, ignore: IgnoreRules, *, mode: Mode, poll_interval_ms: int, stop: asyncio.Event
) -> AsyncIterator[list[str]]:
    """Yield lists of changed paths (relative to ``root``) until ``stop`` is set."""
    prefix = str(root).rstrip("/") + "/"

    def wanted(change: Change, path: str) -> bool:
        return not (path.startswith(prefix) and ignore.ignores_path(path[len(prefix) :]))

    async for changes in awatch(
        root,
        watch_filter=wanted,
        stop_event=stop,
        force_polling=mode == "polling",
        poll_delay_ms=poll_interval_ms,
        # watchfiles holds changes back while more keep coming, up to ``debounce`` ms; under a
        # steady trickle of drops its default (1.6 s) would add to every session's wait. The quiet
        # period, not the watcher, decides when a session is complete, so deliver promptly.
        debounce=200,
        step=20,
        ignore_permission_denied=True,
    ):
        relpaths = [path[len(prefix) :] for _, path in changes if path.startswith(prefix)]
        if relpaths:
            yield relpaths


@dataclass(frozen=True, slots=True)
class WatchedRoot:
    """A watch root as the service watches it: its settings, ledger record, mode and policy."""

    settings: RootSettings
    root: Root
    mode: Mode
    policy: CompletionPolicy


#: Produces lists of changed paths (relative to the root) until the event is set.
EventSource = Callable[[WatchedRoot, asyncio.Event], AsyncIterator[list[str]]]


def watchfiles_events(ignore: IgnoreRules, poll_interval_ms: int) -> EventSource:
    """The service's event source: watchfiles on each root, in the root's mode."""

    def source(watched: WatchedRoot, stop: asyncio.Event) -> AsyncIterator[list[str]]:
        return watch_paths(
            watched.root.path, ignore, mode=watched.mode, poll_interval_ms=poll_interval_ms, stop=stop
        )

    return source
