"""Which watch root (of those the ledger knows) a path lies in, and its path below that root."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .batch import Root
from .errors import ConfigError
from .ledger import Ledger


async def locate(ledger: Ledger, path: Path) -> tuple[Root, str]:
    """(root, relative POSIX path; "" for the root itself). Raises ConfigError outside every root."""
    target = await asyncio.to_thread(lambda: path.expanduser().absolute())
    # Not resolved: a symlink inside a root is the link's path, as the agent saw it.
    candidates = [target, await asyncio.to_thread(target.resolve)]
    for root in await ledger.roots():
        for candidate in candidates:
            if candidate == root.path:
                return root, ""
            if root.path in candidate.parents:
                return root, candidate.relative_to(root.path).as_posix()
    raise ConfigError(f"{path} is not inside any folder the ledger knows (see fair-agent status)")
