"""Change notifications from inotify, one watch per real folder of a root, never through a symlink.

A recursive watcher that walks a root with symlinks followed (watchfiles, notify) turns a link to
/usr inside a drop folder into thousands of watches, and a link to a large tree into every watch
of the machine, so that other programs' inotify fails. This one adds a watch per folder it finds
with scandir (links are not followed) and with IN_DONTFOLLOW | IN_ONLYDIR, counts its watches
against a budget shared by all roots (a share of fs.inotify.max_user_watches), and raises
WatchLimitExceeded rather than go past it: the service then polls that root.

Folders created later get their watch when their creation is reported, and what was written into
them before that is reported too (it is listed once the watch is in place). A lost event
(IN_Q_OVERFLOW) raises WatchOverflow: only a reconciliation can tell what changed.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import struct
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from ..core.naming import IgnoreRules

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONTFOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

FOLDER_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONTFOLLOW
    | IN_EXCL_UNLINK
)
_EVENT = struct.Struct("iIII")
MAX_USER_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")

_libc = ctypes.CDLL(None, use_errno=True)


class WatchLimitExceeded(Exception):
    """The root needs more inotify watches than its share allows."""


class WatchOverflow(Exception):
    """The kernel's event queue overflowed: changes were lost."""


class WatchBudget:
    """The inotify watches all roots may hold together; roots take and give back from threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    @classmethod
    def share_of_system(cls, share: float) -> WatchBudget:
        try:
            system = int(MAX_USER_WATCHES.read_text().strip())
        except (OSError, ValueError):
            system = 8192  # the kernel's default on small machines
        return cls(max(1, int(system * share)))

    def take(self, root: Path) -> None:
        with self._lock:
            if self.used >= self.limit:
                raise WatchLimitExceeded(
                    f"{root} needs more than the {self.limit} inotify watches the agent allows itself "
                    "(its share of fs.inotify.max_user_watches)"
                )
            self.used += 1

    def give_back(self, count: int) -> None:
        with self._lock:
            self.used -= count


class TreeWatcher:
    """The inotify watches of one root; blocking methods, called from one thread at a time."""

    def __init__(self, root: Path, ignore: IgnoreRules, budget: WatchBudget) -> None:
        self.root = root
        self._ignore = ignore
        self._budget = budget
        self._prefix = os.fsencode(root)
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        #: watch descriptor -> folder below the root ("" for the root itself)
        self._folders: dict[int, str] = {}

    @property
    def watches(self) -> int:
        return len(self._folders)

    def start(self) -> None:
        """Watch the root and every real folder below it."""
        self._add_tree("")

    def close(self) -> None:
        self._budget.give_back(len(self._folders))
        self._folders.clear()
        os.close(self.fd)

    def read(self) -> list[str] | None:
        """What changed since the last read: paths below the root (files and folders); None when
        no event was waiting."""
        try:
            data = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return None
        changed: list[str] = []
        offset = 0
        while offset < len(data):
            wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
            raw_name = data[offset + _EVENT.size : offset + _EVENT.size + size].rstrip(b"\0")
            offset += _EVENT.size + size
            if mask & IN_Q_OVERFLOW:
                raise WatchOverflow("the kernel's inotify queue overflowed; changes were lost")
            folder = self._folders.get(wd)
            if folder is None:
                continue
            if mask & IN_IGNORED:  # the folder is gone, or its watch was removed
                del self._folders[wd]
                self._budget.give_back(1)
                if not folder:
                    raise WatchOverflow(f"the watched folder {self.root} itself went away")
                continue
            if not raw_name:
                continue  # an event of the folder itself (deleted, moved): its parent reports it
            relpath = _join(folder, os.fsdecode(raw_name))
            if self._ignore.ignores_path(relpath):
                continue
            changed.append(relpath)
            if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                # Files may have landed in it before its watch existed: report them as well.
                changed += self._add_tree(relpath)
            elif mask & IN_ISDIR and mask & IN_MOVED_FROM:
                # Moved away, it would go on reporting under its old name: unwatched. Moved within
                # the root, it is watched again under its new name (IN_MOVED_TO).
                self._remove_tree(relpath)
        return changed

    def _remove_tree(self, top: str) -> None:
        for wd, folder in list(self._folders.items()):
            if folder == top or folder.startswith(top + "/"):
                _libc.inotify_rm_watch(self.fd, wd)  # its IN_IGNORED event gives the watch back

    def _add_tree(self, top: str) -> list[str]:
        """Watch ``top`` and the real folders below it; the files found there."""
        files: list[str] = []
        stack = [top]
        while stack:
            folder = stack.pop()
            if not self._add(folder):
                continue
            try:
                entries = list(os.scandir(self.root / folder if folder else self.root))
            except OSError:
                continue  # unreadable or gone: reconciliation reports what it can
            for entry in entries:
                relpath = _join(folder, entry.name)
                if self._ignore.ignores_path(relpath):
                    continue
                try:
                    is_folder = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                (stack if is_folder else files).append(relpath)
        return files

    def _add(self, folder: str) -> bool:
        self._budget.take(self.root)
        path = os.path.join(self._prefix, os.fsencode(folder)) if folder else self._prefix
        wd = _libc.inotify_add_watch(self.fd, path, FOLDER_MASK)
        if wd < 0 or wd in self._folders:
            self._budget.give_back(1)
        if wd < 0:
            code = ctypes.get_errno()
            if code == errno.ENOSPC:
                raise WatchLimitExceeded(f"the system has no inotify watch left for {self.root}")
            return False  # gone, not a folder (a link: IN_DONTFOLLOW | IN_ONLYDIR), or denied
        self._folders[wd] = folder
        return True


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


async def inotify_paths(
    root: Path,
    ignore: IgnoreRules,
    *,
    budget: WatchBudget,
    stop: asyncio.Event,
    settle_s: float = 0.02,
) -> AsyncIterator[list[str]]:
    """Yield lists of changed paths (relative to ``root``) until ``stop`` is set.

    Changes are gathered for ``settle_s`` after the first of them, so that a burst of writes is one
    list; the quiet period, not the watcher, decides when a session is complete. The service dates
    a list's changes when it receives it, so the gathering delays every seal by up to ``settle_s``:
    it is kept short (a file's create, writes and close come microseconds apart).
    """
    watcher = TreeWatcher(root, ignore, budget)
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    try:
        await asyncio.to_thread(watcher.start)
        loop.add_reader(watcher.fd, readable.set)
        try:
            while not stop.is_set():
                waiter = asyncio.ensure_future(readable.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if stop.is_set():
                    return
                await asyncio.sleep(settle_s)
                readable.clear()
                changed = await asyncio.to_thread(_drain, watcher)
                if changed:
                    yield sorted(set(changed))
        finally:
            loop.remove_reader(watcher.fd)
    finally:
        watcher.close()


def _drain(watcher: TreeWatcher) -> list[str]:
    # Until the queue is empty: the agent's own writes (filtered out) make most of the events, and
    # a queue left to fill overflows (IN_Q_OVERFLOW), which costs a reconciliation.
    changed: list[str] = []
    while (batch := watcher.read()) is not None:
        changed += batch
    return changed
