"""Change detection by looking: for network shares, where other machines' writes raise no event,
and for roots with more folders than the inotify budget allows.

Every interval the root is listed again (scandir, links never followed: a link to a large tree
costs nothing) and each file's size, mtime and inode compared with the last look. Memory is one
small tuple per file of the root.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path

from ..core.naming import IgnoreRules

#: Files modified this long before the first look are reported by it (see poll_paths).
STARTUP_GRACE_NS = 10_000_000_000
#: relpath -> (size, mtime_ns, inode); a symlink or other non-file counts by its own lstat.
Snapshot = dict[str, tuple[int, int, int]]


def snapshot(root: Path, ignore: IgnoreRules) -> Snapshot:
    """Every entry below the root that is not a folder, as seen now. Blocking."""
    seen: Snapshot = {}
    stack = [""]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(root / folder if folder else root))
        except OSError:
            continue
        for entry in entries:
            relpath = f"{folder}/{entry.name}" if folder else entry.name
            if ignore.ignores_path(relpath):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(relpath)
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            seen[relpath] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return seen


async def poll_paths(
    root: Path, ignore: IgnoreRules, *, interval_s: float, stop: asyncio.Event
) -> AsyncIterator[list[str]]:
    """Yield lists of paths (relative to ``root``) added, changed or removed, until ``stop`` is set.

    The first snapshot is the baseline, but files modified in the seconds before it are reported
    too: the service's start-up reconciliation runs beside this first look, and a file written
    between the two would otherwise wait for the next reconciliation (ten minutes).
    """
    started_ns = time.time_ns()
    previous = await asyncio.to_thread(snapshot, root, ignore)
    recent = sorted(
        p for p, (_, mtime_ns, _) in previous.items() if mtime_ns >= started_ns - STARTUP_GRACE_NS
    )
    if recent:
        yield recent
    while not stop.is_set():
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
        if stop.is_set():
            return
        current = await asyncio.to_thread(snapshot, root, ignore)
        changed = [p for p in current.keys() | previous.keys() if current.get(p) != previous.get(p)]
        previous = current
        if changed:
            yield sorted(changed)
