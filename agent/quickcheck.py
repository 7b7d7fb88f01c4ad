"""The ledger's quick check: which listed files need hashing, and which are known. Pure.

A file whose (size, mtime_ns, inode) match its current ledger record is unchanged and is not read
again; a dead-lettered file is tried again only once its stat (ctime included, so a chmod counts)
has moved, or when someone asks for a replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .batch import Batch, FileStat, Root
from .discover import SessionListing
from .ledger import CurrentFile


@dataclass(slots=True)
class Plan:
    batch: Batch | None
    unchanged: list[FileStat] = field(default_factory=list)
    #: Dead letters whose file has not changed since; they stay dead until replayed.
    still_dead: list[FileStat] = field(default_factory=list)


def dead_signature(f: FileStat) -> tuple[int, ...]:
    return (f.size, f.mtime_ns, f.inode, f.ctime_ns)


def plan_session(
    root: Root,
    listing: SessionListing,
    current: Mapping[str, CurrentFile],
    dead: Mapping[str, tuple[int, ...] | None],
    *,
    retry_dead: bool = False,
) -> Plan:
    plan = Plan(batch=None)
    todo: list[FileStat] = []
    for f in listing.files:
        known = current.get(f.relpath)
        if known is not None and known.quick_key() == f.quick_key():
            plan.unchanged.append(f)
        elif f.relpath in dead and not retry_dead and dead[f.relpath] == dead_signature(f):
            plan.still_dead.append(f)
        else:
            todo.append(f)
    # A folder session whose crate went missing gets it back, even when no file is new.
    crate_missing = listing.is_folder and bool(current) and not listing.has_crate
    # A folder that could not be listed stays a dead letter until someone replays it.
    problems = [(p, e) for p, e in listing.problems if retry_dead or p not in dead]
    if todo or crate_missing or problems:
        plan.batch = Batch(
            root=root,
            session=listing.session,
            is_folder=listing.is_folder,
            files=todo,
            problems=problems,
            rewrite_crate=crate_missing,
        )
    return plan
