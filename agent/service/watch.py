"""How each root is watched: by events (inotify, see inotify.py) on local folders, by polling (see
polling.py) on network shares, where change notifications from other machines never arrive.

Neither follows a symlink. Names the agent writes itself, and ignored names, are filtered out
before they reach the tracker, so the agent's own outputs never trigger a batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from ..core.batch import Root
from ..core.config import AgentConfig, CompletionPolicy, RootSettings
from ..core.errors import RootUnavailableError
from ..core.naming import IgnoreRules
from ..fs.fsinfo import filesystem_type, is_network_filesystem
from ..ledger import Ledger
from .inotify import WatchBudget, inotify_paths
from .polling import poll_paths

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


@dataclass(frozen=True, slots=True)
class WatchedRoot:
    """A watch root as the service watches it: its settings, ledger record, mode and policy."""

    settings: RootSettings
    root: Root
    mode: Mode
    policy: CompletionPolicy


#: Produces lists of changed paths (relative to the root) until the event is set.
EventSource = Callable[[WatchedRoot, asyncio.Event], AsyncIterator[list[str]]]


def filesystem_events(ignore: IgnoreRules, *, poll_interval_ms: int, budget: WatchBudget) -> EventSource:
    """The service's event source: inotify on each root watched by events, looks on each polled one."""

    def source(watched: WatchedRoot, stop: asyncio.Event) -> AsyncIterator[list[str]]:
        if watched.mode == "polling":
            return poll_paths(watched.root.path, ignore, interval_s=poll_interval_ms / 1000, stop=stop)
        return inotify_paths(watched.root.path, ignore, budget=budget, stop=stop)

    return source


async def register_roots(config: AgentConfig, ledger: Ledger) -> dict[int, WatchedRoot]:
    """Every configured root, registered in the ledger, with its mode and completion policy.

    Raises RootUnavailableError for a root that is not there (yet): a share not mounted.
    """
    roots = {}
    for settings in config.roots:
        path = settings.path.expanduser()
        if not await asyncio.to_thread(path.is_dir):
            raise RootUnavailableError(f"watch root {path} is not a folder (not mounted yet?)")
        root = await ledger.ensure_root(path, settings.root_name)
        mode, why = await asyncio.to_thread(root_mode, settings)
        log.info(f"watching {root.name!r} by {mode} because {why}", extra={"root": root.name})
        roots[root.id] = WatchedRoot(settings, root, mode, config.completion_for(settings))
    return roots
