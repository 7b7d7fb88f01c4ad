"""Which watch root (of those the ledger knows) a path lies in, and its path below that root."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ..core.batch import Root
from ..core.errors import ConfigError
from ..core.naming import data_name
from ..ledger import Ledger


async def locate(ledger: Ledger, path: Path) -> tuple[Root, str]:
    """(root, relative POSIX path; "" for the root itself). Raises ConfigError outside every root.

    A sidecar or error file stands for the data file it describes.
    """
    path = path.with_name(data_name(path.name)) if path.name else path
    # "..", "." and doubled slashes go; symlinks stay (a link inside a root is the link's path, as
    # the agent saw it), and the fully resolved path is tried second.
    target = Path(await asyncio.to_thread(lambda: os.path.normpath(path.expanduser().absolute())))
    candidates = [target, await asyncio.to_thread(target.resolve)]
    for root in await ledger.roots():
        for candidate in candidates:
            if candidate == root.path:
                return root, ""
            if root.path in candidate.parents:
                return root, candidate.relative_to(root.path).as_posix()
    raise ConfigError(f"{path} is not inside any folder the ledger knows (see fair-agent status)")
