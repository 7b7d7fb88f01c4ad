"""Values that flow through the pipeline: what was seen on disk, and the batch of a session."""

from __future__ import annotations

import hashlib
import os
import stat as stat_mod
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import AgentError

#: SQLite stores signed 64-bit integers: nanoseconds since 1970 fit from 1677-09-21 to 2262-04-11.
#: A file's times outside that span (a wrong clock, a crafted touch -d 2400-01-01) are clamped to
#: it; the signature still moves with size, ctime and inode, and the sidecar says so.
NS_MIN, NS_MAX = -(2**63), 2**63 - 1


def clamp_ns(value: int) -> int:
    return min(max(value, NS_MIN), NS_MAX)


@dataclass(frozen=True, slots=True)
class FileStat:
    """A regular file as listed: enough for the ledger's quick check."""

    relpath: str  # POSIX path below the watch root
    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int

    @classmethod
    def from_stat(cls, relpath: str, st: os.stat_result) -> FileStat:
        return cls(relpath, st.st_size, clamp_ns(st.st_mtime_ns), st.st_ino, clamp_ns(st.st_ctime_ns))

    @property
    def mtime_clamped(self) -> bool:
        """Its modification time lay outside what the ledger can store (see clamp_ns)."""
        return self.mtime_ns in (NS_MIN, NS_MAX)

    def signature(self) -> tuple[int, int, int, int]:
        """What must match the ledger for the file to count as unchanged.

        ctime is in it because mtime can be set back (``cp -p``, ``rsync -t``) and ctime cannot: a
        same-size rewrite with its mtime restored is still seen. A chmod also moves ctime; that
        costs one rehash, which finds the same bytes.
        """
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode)


@dataclass(frozen=True, slots=True)
class Skip:
    """A path that was deliberately not ingested, and why."""

    relpath: str
    reason: str


@dataclass(frozen=True, slots=True)
class Root:
    """A watch root as the pipeline knows it."""

    id: int  # ledger row id
    name: str  # stable name, part of batch ids
    path: Path  # absolute; never written into outputs


@dataclass(slots=True)
class Batch:
    """The files of one session that need ingesting now, in sorted order."""

    root: Root
    session: str
    is_folder: bool
    files: list[FileStat]
    #: Paths in the session that could not even be listed (e.g. an unreadable sub-folder).
    problems: list[tuple[str, AgentError]] = field(default_factory=list)
    #: Ingested files that are no longer there: the crate stops listing them.
    removed: list[str] = field(default_factory=list)
    #: Dead letters whose path is gone or no longer a problem: cleared with their error files.
    cleared_dead: list[str] = field(default_factory=list)
    #: The session's crate is missing and must be rewritten even if no file is new.
    rewrite_crate: bool = False
    #: 1 for a first try; a batch handed back for a retry counts up (retry budgets use it).
    attempt: int = 1
    #: A part of a large session other than its last: the last part writes the session's crate.
    crate_later: bool = False

    def __post_init__(self) -> None:
        self.files.sort(key=lambda f: f.relpath)

    @property
    def byte_count(self) -> int:
        return sum(f.size for f in self.files)

    def parts(self, size: int) -> list[Batch]:
        """The batch as parts of at most ``size`` files, in order, each processed and committed as
        a batch of its own, so that memory follows the part, not the session.

        The parts of files still to be ingested are the same after a crash (the committed ones are
        a prefix of them), so a redone part has the same files and id. The session's other changes
        (problems, removals, cleared dead letters) and its crate go with the last part.
        """
        if len(self.files) <= size:
            return [self]
        chunks = [self.files[i : i + size] for i in range(0, len(self.files), size)]
        earlier = [
            replace(
                self, files=c, problems=[], removed=[], cleared_dead=[], rewrite_crate=False, crate_later=True
            )
            for c in chunks[:-1]
        ]
        return [*earlier, replace(self, files=chunks[-1], rewrite_crate=self.is_folder)]


def batch_id(root_name: str, session: str, hashed: list[tuple[str, str]]) -> str:
    """Deterministic id of a batch: the same files with the same bytes always give the same id."""
    digest = hashlib.sha256()
    for part in (root_name, session):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    for relpath, sha in sorted(hashed):
        digest.update(relpath.encode("utf-8", "surrogateescape") + b"\0" + sha.encode() + b"\n")
    return digest.hexdigest()[:32]


def kind_of(mode: int) -> str:
    """A plain word for a non-regular file type, for skip reasons."""
    if stat_mod.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat_mod.S_ISSOCK(mode):
        return "a socket"
    if stat_mod.S_ISCHR(mode):
        return "a character device"
    if stat_mod.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"
