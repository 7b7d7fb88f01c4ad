"""Listing a watch root, grouped into sessions. Blocking, but for ``list_sessions`` and
``SessionLister``, which list a session on the event loop's thread while that is quick, else in a
worker thread.

Why on the loop: a listing stats every file, and each stat releases the GIL. From a thread, while
the loop runs another batch's Python, every release is a hand-off (the thread waits for the loop's
switch interval to get the GIL back): a burst of small sessions cost the service a tenth more CPU
listed from threads than here. So a session is listed on the loop's thread where metadata is
page-cache work (fsinfo.is_loop_safe), only on the root's own device, and for at most
ON_LOOP_SECONDS; a listing that takes longer (a large session, a cold disk), would read a crate
over ON_LOOP_BYTES to tell whether it is the agent's, or reaches another device (a share mounted
below the root: never even stat'ed there, a stat may wait for its server) is given up and taken
again in a thread, and for THREADED_FOR_S the session's next listings go to a thread at once.

Never follows a symlink, never opens anything but a regular file (a FIFO would block on open), and
never reports the agent's own outputs or ignored names as data.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat as stat_mod
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..core.batch import FileStat, Skip, kind_of
from ..core.errors import AgentError, FileUnreadableError
from ..core.naming import CRATE_NAME, SESSION_DOCUMENTS, IgnoreRules, is_temp_file, unit_of
from ..fs.fsinfo import filesystem_type, is_loop_safe, mount_points_below, read_mountinfo
from ..fs.outputs import ON_LOOP_BYTES, TooLargeHere, own_document

_Listed = TypeVar("_Listed")

#: The longest one listing holds the event loop's thread before it is left to a worker thread.
ON_LOOP_SECONDS = 0.02
#: How long a session whose listing was left to a thread is listed in threads at once: each of its
#: next looks would spend ON_LOOP_SECONDS of the loop's time first, to no end. Then it is tried on
#: the loop again (it may have shrunk, or the disk was only cold).
THREADED_FOR_S = 600.0
#: Sessions remembered so, at most: the one remembered longest ago is forgotten first.
THREADED_MOST = 4096


@dataclass(slots=True)
class SessionListing:
    session: str
    is_folder: bool
    files: list[FileStat] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    problems: list[tuple[str, AgentError]] = field(default_factory=list)
    #: Something named ``ro-crate-metadata.json`` is in the session folder: the agent's own crate,
    #: or someone else's file (which is data, ingested like any file, and never overwritten).
    has_crate: bool = False
    #: The same for ``ro-crate-preview.html``.
    has_preview: bool = False
    #: Folders below the session holding a crate (or a preview) of the agent's: the crates of
    #: deeper sessions when rules group sessions below the first folder level.
    own_crates: set[str] = field(default_factory=set)
    own_previews: set[str] = field(default_factory=set)
    #: Temp files of the agent (relative paths); at start-up they are orphans of a crash.
    temp_files: list[str] = field(default_factory=list)


@dataclass(slots=True)
class TopLevel:
    """What lies directly in the watch root."""

    folders: list[str] = field(default_factory=list)
    loose: list[SessionListing] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)


def list_top_level(root: Path, ignore: IgnoreRules) -> TopLevel:
    top = TopLevel()
    root_real = os.path.realpath(root)
    for name, outcome in _scan(root, "", root_real, ignore):
        if outcome == TEMP:
            top.temp_files.append(name)
        elif outcome == "dir":
            top.folders.append(name)
        elif outcome is not None:
            listing = SessionListing(session=name, is_folder=False)
            _record(listing, outcome)
            top.loose.append(listing)
    return top


@dataclass(frozen=True, slots=True)
class LoopListing:
    """Where the loop's thread may list a root: on its ``device``, never at the ``mounts`` below
    it (relative paths)."""

    device: int
    mounts: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class LoopBudget:
    """Where a listing on the loop's thread stops (raising LeftToThread): past ``deadline``
    (time.monotonic), or where ``place`` does not let it go."""

    deadline: float
    place: LoopListing

    def check(self, relpath: str) -> None:
        """Before ``relpath`` (below the root) is stat'ed or listed."""
        if relpath in self.place.mounts:
            raise LeftToThread(f"{relpath} is a mount point")
        if time.monotonic() > self.deadline:
            raise LeftToThread(f"the listing took over {ON_LOOP_SECONDS} s")


class LeftToThread(Exception):
    """A listing on the loop's thread went over its LoopBudget: take it again in a thread."""


def list_session(
    root: Path, folder: str, ignore: IgnoreRules, budget: LoopBudget | None = None
) -> SessionListing:
    """Every file below one session folder, depth first, in sorted order."""
    listing = SessionListing(session=folder, is_folder=True)
    root_real = os.path.realpath(root)
    stack = [folder]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = _scan(root / rel_dir, rel_dir, root_real, ignore, budget)
        except FileNotFoundError:
            continue  # removed while we walked; nothing left to ingest
        except OSError as exc:
            listing.problems.append((rel_dir, _unreadable(rel_dir, "cannot list folder", exc)))
            continue
        subdirs = []
        for name, outcome in entries:
            relpath = f"{rel_dir}/{name}"
            if outcome == TEMP:
                listing.temp_files.append(relpath)
                continue
            if name in SESSION_DOCUMENTS:
                # A crate (or its preview) is ours only at the top of a session (the first folder
                # level, or deeper where rules group so) and only if we wrote it; else it is data.
                is_crate = name == CRATE_NAME
                if rel_dir == folder:
                    listing.has_crate = listing.has_crate or is_crate
                    listing.has_preview = listing.has_preview or not is_crate
                # Whether it is ours is read from it: on the loop's thread only if it is small.
                if _is_own_document(root / rel_dir, name, ON_LOOP_BYTES if budget else None):
                    (listing.own_crates if is_crate else listing.own_previews).add(rel_dir)
                    continue
            if outcome == "dir":
                subdirs.append(relpath)
            elif outcome is not None:
                _record(listing, outcome)
        stack.extend(reversed(subdirs))
    return listing


def split_sessions(listing: SessionListing, session_of: Callable[[str], str]) -> list[SessionListing]:
    """A folder's listing split into the sessions rules group its files into (deeper folders).

    The folder's own listing comes first, even when empty: it carries what belongs to no deeper
    session, the temp files, and lets the planner notice files that were removed.
    """
    if not listing.is_folder:
        return [listing]
    keys = sorted({session_of(f.relpath) for f in listing.files} | listing.own_crates)
    deeper = [k for k in keys if k != listing.session]
    if not deeper:
        return [listing]
    parts = {k: SessionListing(session=k, is_folder=True) for k in deeper}
    # Everything below a session's folder is that session's, whatever rule claimed the file: its
    # crate describes its folder. The deepest session folder wins.
    deepest_first = sorted(deeper, key=len, reverse=True)

    def part_of(relpath: str) -> SessionListing:
        key = next((k for k in deepest_first if relpath.startswith(k + "/")), None)
        return parts[key] if key is not None else top

    top = SessionListing(
        session=listing.session,
        is_folder=True,
        temp_files=listing.temp_files,
        has_crate=listing.has_crate,
        has_preview=listing.has_preview,
    )
    for f in listing.files:
        part_of(f.relpath).files.append(f)
    for skip in listing.skips:
        part_of(skip.relpath).skips.append(skip)
    for problem in listing.problems:
        part_of(problem[0]).problems.append(problem)
    for key, part in parts.items():
        part.has_crate = key in listing.own_crates
        part.has_preview = key in listing.own_previews
    return [top, *parts.values()]


async def list_sessions(
    root: Path,
    ignore: IgnoreRules,
    *,
    session_of: Callable[[str], str] | None = None,
    only: Collection[str] | None = None,
    claim: Callable[[str], bool] | None = None,
    on_temp_files: Callable[[list[str]], Awaitable[None]] | None = None,
    lister: SessionLister | None = None,
) -> AsyncIterator[SessionListing]:
    """Every session of a root (or of the top-level folders that hold ``only`` those): the root's
    own level in a thread, each folder as SessionLister lists it. ``claim``, when given, is asked
    for each top-level folder or loose file as its turn comes, and only what it grants is listed
    (a scan shared among processes: service.shards).

    Memory holds one top-level folder's listing at a time. ``session_of`` names the session of a
    file below a folder when rules group deeper than the first level. ``on_temp_files`` is told
    the agent's temp files found on the way (those of the root, then those of each folder).
    ``lister``: the root's, when the caller keeps one (what it learnt of its sessions is kept).
    """
    only = None if only is None else frozenset(only)  # asked of every loose file: a set
    units = None if only is None else {unit_of(s) for s in only}
    lister = lister or SessionLister(root, ignore)
    # The root's own level may hold any number of entries.
    top = await asyncio.to_thread(list_top_level, root, ignore)
    if on_temp_files is not None and top.temp_files:
        await on_temp_files(top.temp_files)
    for listing in top.loose:
        if (only is None or listing.session in only) and (claim is None or claim(listing.session)):
            yield listing
    for folder in top.folders:
        if (units is not None and folder not in units) or (claim is not None and not claim(folder)):
            continue
        listing = await lister.folder(folder)
        if on_temp_files is not None and listing.temp_files:
            await on_temp_files(listing.temp_files)
        for part in split_sessions(listing, session_of) if session_of else [listing]:
            yield part


class SessionLister:
    """Listings of one root's sessions, taken on the event loop's thread while that is quick (see
    the module's docstring), else in a worker thread."""

    def __init__(self, root: Path, ignore: IgnoreRules) -> None:
        self.root = root
        self.ignore = ignore
        self._place: asyncio.Future[LoopListing | None] | None = None
        #: Sessions listed in threads at once, each until a time (monotonic); oldest first.
        self._threaded: dict[str, float] = {}

    def look_at_mounts_again(self) -> None:
        """The next listing reads where the loop may list again (the mounts below the root)."""
        self._place = None

    async def folder(self, folder: str) -> SessionListing:
        """``list_session`` of one folder."""
        return await self._list(list_session, folder)

    async def look(self, session: str) -> SessionListing | None:
        """``look_session``: a fresh listing of one session, None if it is gone."""
        return await self._list(look_session, session)

    async def _list(self, list_one: Callable[..., _Listed], session: str) -> _Listed:
        if self._place is None:
            # Asked once, and again when told (the service's reconciliations): meanwhile a root
            # remounted (another device) is listed in threads, slower but the same; a share
            # mounted below it is left to threads by its device, after one stat.
            self._place = asyncio.ensure_future(asyncio.to_thread(loop_listing, self.root))
        # Shielded: a look cancelled while it waits must not cancel the answer for the others.
        place = await asyncio.shield(self._place)
        now = time.monotonic()
        if place is not None and self._threaded.get(session, now) <= now:
            try:
                listed = list_one(self.root, session, self.ignore, LoopBudget(now + ON_LOOP_SECONDS, place))
            except LeftToThread:
                self._remember_threaded(session, now)
            else:
                self._threaded.pop(session, None)  # left to threads once, on the loop again since
                # Let what else is ready run between listings: sessions due together are listed
                # one after another.
                await asyncio.sleep(0)
                return listed
        return await asyncio.to_thread(list_one, self.root, session, self.ignore)

    def _remember_threaded(self, session: str, now: float) -> None:
        self._threaded.pop(session, None)
        if len(self._threaded) >= THREADED_MOST:
            del self._threaded[next(iter(self._threaded))]
        self._threaded[session] = now + THREADED_FOR_S


def loop_listing(root: Path) -> LoopListing | None:
    """Where the loop's thread may list the root's folders (on a filesystem whose metadata is
    page-cache work); None: only threads list them. Blocking."""
    mountinfo = read_mountinfo()
    if mountinfo is None or not is_loop_safe(filesystem_type(root, mountinfo)):
        return None
    try:
        return LoopListing(os.stat(root).st_dev, mount_points_below(root, mountinfo))
    except OSError:
        return None  # the thread that lists it says what is wrong


def look_session(
    root: Path, session: str, ignore: IgnoreRules, budget: LoopBudget | None = None
) -> SessionListing | None:
    """A fresh listing of one session (a folder, or a loose file), or None if it is gone."""
    path = root / session
    if budget is not None:
        budget.check(session)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if stat_mod.S_ISDIR(st.st_mode):
        return list_session(root, session, ignore, budget)
    listing = SessionListing(session=session, is_folder=False)
    if stat_mod.S_ISLNK(st.st_mode):
        _record(listing, Skip(session, _symlink_reason(str(path), os.path.realpath(root))))
    elif stat_mod.S_ISREG(st.st_mode):
        listing.files.append(FileStat.from_stat(session, st))
    else:
        _record(listing, _not_regular(session, st.st_mode))
    return listing


def _is_own_document(folder: Path, name: str, read_limit: int | None = None) -> bool:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return own_document(fd, name, read_limit=read_limit) is not None
    except TooLargeHere:
        raise LeftToThread(f"{folder / name} is too large to read on the loop's thread") from None
    except OSError:  # someone else's file (FileExistsError) or unreadable: data, not ours
        return False
    finally:
        os.close(fd)


Outcome = FileStat | Skip | tuple[str, AgentError] | str | None
#: An agent's temp file, in _scan's outcomes.
TEMP = "temp"


def _scan(
    path: Path, rel_dir: str, root_real: str, ignore: IgnoreRules, budget: LoopBudget | None = None
) -> list[tuple[str, Outcome]]:
    """Each entry of a folder, looked at as it is read, then sorted by name; ignored names left out
    (not even stat'ed), the agent's temp files marked TEMP. With a ``budget``, LeftToThread when
    it is spent or the folder is on another device.

    The DirEntry objects go as soon as they are looked at: held and sorted, 100,000 of them cost
    more than the listing they make.
    """
    found: list[tuple[str, Outcome]] = []
    if budget is not None:
        budget.check(rel_dir)
        if os.lstat(path).st_dev != budget.place.device:
            raise LeftToThread(f"{path} is on another device than the root")
    with os.scandir(path) as it:
        for entry in it:
            name = entry.name
            if is_temp_file(name):
                found.append((name, TEMP))
            # A crate (or preview) inside a session is looked at whatever the ignore globs say:
            # ours is recognised, anyone else's is data.
            elif (name in SESSION_DOCUMENTS and rel_dir) or not ignore.ignores(name):
                relpath = f"{rel_dir}/{name}" if rel_dir else name
                if budget is not None:
                    budget.check(relpath)  # before it is stat'ed
                found.append((name, _classify(entry, relpath, root_real)))
    found.sort(key=lambda pair: pair[0])
    return found


def _classify(entry: os.DirEntry[str], relpath: str, root_real: str) -> Outcome:
    """``"dir"`` to descend into, a FileStat, a Skip, a problem, or None when it vanished."""
    try:
        if entry.is_symlink():
            return Skip(relpath, _symlink_reason(entry.path, root_real))
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        # e.g. a folder that may be listed but not entered (r-- without x): the name is visible,
        # its metadata is not. A person has to fix the permissions.
        return (relpath, _unreadable(relpath, "cannot read the metadata of", exc))
    if stat_mod.S_ISDIR(st.st_mode):
        return "dir"
    if stat_mod.S_ISREG(st.st_mode):
        return FileStat.from_stat(relpath, st)
    return _not_regular(relpath, st.st_mode)


def _record(listing: SessionListing, outcome: Outcome) -> None:
    if isinstance(outcome, FileStat):
        listing.files.append(outcome)
    elif isinstance(outcome, Skip):
        listing.skips.append(outcome)
    elif isinstance(outcome, tuple):
        listing.problems.append(outcome)


def _not_regular(relpath: str, mode: int) -> Skip:
    return Skip(relpath, f"{kind_of(mode)}, not a regular file; it holds no data to ingest")


def _unreadable(relpath: str, what: str, exc: OSError) -> FileUnreadableError:
    reason = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else (exc.strerror or str(exc))
    return FileUnreadableError(f"{what} {relpath!r}: {reason}")


def _symlink_reason(path: str, root_real: str) -> str:
    try:
        target = os.path.realpath(path, strict=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop; not followed"
        return "broken symlink (its target does not exist); not followed"
    if os.path.commonpath([target, root_real]) != root_real:
        return "symlink points outside the watch root; not followed"
    return "symlink inside the watch root; not followed (its target is ingested where it lies)"
