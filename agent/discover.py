"""Listing a watch root, grouped into sessions. Blocking: callers run it in a worker thread.

Never follows a symlink, never opens anything (a FIFO would block on open), and never reports the
agent's own outputs or ignored names as data.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from dataclasses import dataclass, field
from pathlib import Path

from .batch import FileStat, Skip, kind_of
from .crate import is_agent_crate
from .errors import AgentError, FileUnreadableError
from .naming import CRATE_NAME, IgnoreRules

# A crate of ours is a few hundred bytes per file; anything larger is someone else's.
_MAX_CRATE_BYTES = 64 << 20


@dataclass(slots=True)
class SessionListing:
    session: str
    is_folder: bool
    files: list[FileStat] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    problems: list[tuple[str, AgentError]] = field(default_factory=list)
    #: The session folder holds a ``ro-crate-metadata.json``.
    has_crate: bool = False
    #: ...written by someone else: it is data, ingested like any file, and never overwritten.
    foreign_crate: bool = False


@dataclass(slots=True)
class TopLevel:
    """What lies directly in the watch root."""

    folders: list[str] = field(default_factory=list)
    loose: list[SessionListing] = field(default_factory=list)


def list_top_level(root: Path, ignore: IgnoreRules) -> TopLevel:
    top = TopLevel()
    root_real = os.path.realpath(root)
    for entry in _sorted_entries(root):
        if ignore.ignores(entry.name):
            continue
        outcome = _classify(entry, entry.name, root_real)
        if outcome == "dir":
            top.folders.append(entry.name)
        elif outcome is not None:
            listing = SessionListing(session=entry.name, is_folder=False)
            _record(listing, outcome)
            top.loose.append(listing)
    return top


def list_session(root: Path, folder: str, ignore: IgnoreRules) -> SessionListing:
    """Every file below one session folder, depth first, in sorted order."""
    listing = SessionListing(session=folder, is_folder=True)
    root_real = os.path.realpath(root)
    stack = [folder]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = _sorted_entries(root / rel_dir)
        except PermissionError:
            listing.problems.append(
                (rel_dir, FileUnreadableError(f"cannot list folder {rel_dir!r}: permission denied"))
            )
            continue
        except FileNotFoundError:
            continue  # removed while we walked; nothing left to ingest
        subdirs = []
        for entry in entries:
            relpath = f"{rel_dir}/{entry.name}"
            if entry.name == CRATE_NAME and rel_dir == folder:
                listing.has_crate = True
                listing.foreign_crate = not _is_agent_crate_file(Path(entry.path))
                if not listing.foreign_crate:
                    continue
            elif ignore.ignores(entry.name):
                continue
            outcome = _classify(entry, relpath, root_real)
            if outcome == "dir":
                subdirs.append(relpath)
            elif outcome is not None:
                _record(listing, outcome)
        stack.extend(reversed(subdirs))
    return listing


def look_session(root: Path, session: str, ignore: IgnoreRules) -> SessionListing | None:
    """A fresh listing of one session (a folder, or a loose file), or None if it is gone."""
    path = root / session
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if stat_mod.S_ISDIR(st.st_mode):
        return list_session(root, session, ignore)
    listing = SessionListing(session=session, is_folder=False)
    if stat_mod.S_ISLNK(st.st_mode):
        _record(listing, Skip(session, _symlink_reason(str(path), os.path.realpath(root))))
    elif stat_mod.S_ISREG(st.st_mode):
        listing.files.append(FileStat.from_stat(session, st))
    else:
        _record(
            listing, Skip(session, f"{kind_of(st.st_mode)}, not a regular file; it holds no data to ingest")
        )
    return listing


def _is_agent_crate_file(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_CRATE_BYTES + 1)
    except OSError:
        return True  # unreadable or gone: do not claim it as data, do not overwrite it blindly
    return len(raw) <= _MAX_CRATE_BYTES and is_agent_crate(raw)


def _sorted_entries(path: Path) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _classify(entry: os.DirEntry[str], relpath: str, root_real: str) -> FileStat | Skip | str | None:
    """``"dir"`` for a folder to descend into, a FileStat, a Skip, or None when it vanished."""
    try:
        if entry.is_symlink():
            return Skip(relpath, _symlink_reason(entry.path, root_real))
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat_mod.S_ISDIR(st.st_mode):
        return "dir"
    if stat_mod.S_ISREG(st.st_mode):
        return FileStat.from_stat(relpath, st)
    return Skip(relpath, f"{kind_of(st.st_mode)}, not a regular file; it holds no data to ingest")


def _record(listing: SessionListing, outcome: FileStat | Skip | str) -> None:
    if isinstance(outcome, FileStat):
        listing.files.append(outcome)
    elif isinstance(outcome, Skip):
        listing.skips.append(outcome)


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
