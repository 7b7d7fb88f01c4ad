"""The ledger's quick check: which listed files need hashing, and what else a session needs. Pure.

A file whose (size, mtime_ns, ctime_ns, inode) match its current ledger record is unchanged and is
not read again. A dead-lettered file is tried again only once that signature has moved (a chmod
counts), or when someone asks for a replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .batch import Batch, FileStat, Root
from .discover import SessionListing
from .ledger import CurrentFile

#: A dead letter's path and the signature of the file when it failed (None: not a file).
DeadLetters = Mapping[str, tuple[int, ...] | None]


@dataclass(slots=True)
class Plan:
    batch: Batch | None
    unchanged: list[FileStat] = field(default_factory=list)
    #: Dead letters whose file has not changed since; they stay dead until replayed.
    still_dead: list[FileStat] = field(default_factory=list)


def plan_session(
    root: Root,
    listing: SessionListing,
    current: Mapping[str, CurrentFile],
    dead: DeadLetters,
    *,
    retry_dead: bool = False,
) -> Plan:
    plan = Plan(batch=None)
    todo: list[FileStat] = []
    for f in listing.files:
        known = current.get(f.relpath)
        if known is not None and known.signature == f.signature():
            plan.unchanged.append(f)
        elif f.relpath in dead and not retry_dead and dead[f.relpath] == f.signature():
            plan.still_dead.append(f)
        else:
            todo.append(f)
    listed = {f.relpath for f in listing.files}
    problem_paths = {p for p, _ in listing.problems}
    # A folder that could not be listed stays a dead letter until it changes or is replayed.
    problems = [(p, e) for p, e in listing.problems if retry_dead or p not in dead]
    # Files below a folder that could not be listed are unknown, not gone.
    complete = not listing.problems
    removed = sorted(p for p in current if p not in listed) if complete else []
    cleared = sorted(p for p in dead if p not in listed and p not in problem_paths)
    # A folder session whose crate went missing gets it back, even when no file is new.
    crate_missing = listing.is_folder and bool(current) and not listing.has_crate
    if todo or problems or removed or cleared or crate_missing:
        plan.batch = Batch(
            root=root,
            session=listing.session,
            is_folder=listing.is_folder,
            files=todo,
            problems=problems,
            removed=removed,
            cleared_dead=cleared,
            rewrite_crate=crate_missing,
        )
    return plan
