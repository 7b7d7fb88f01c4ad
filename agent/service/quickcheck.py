"""The ledger's quick check: which listed files need hashing, and what else a session needs. Pure.

A file whose (size, mtime_ns, ctime_ns, inode) match its current ledger record is unchanged and is
not read again. A dead-lettered file is tried again only once that signature has moved (a chmod
counts), or when someone asks for a replay.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from ..core.batch import Batch, FileStat, Root
from ..ledger import CurrentFile, Ledger
from .discover import SessionListing

#: A dead letter's path and the signature of the file when it failed (None: not a file).
DeadLetters = Mapping[str, tuple[int, ...] | None]


@dataclass(slots=True)
class Plan:
    batch: Batch | None
    unchanged: list[FileStat] = field(default_factory=list)
    #: Dead letters whose file has not changed since; they stay dead until replayed.
    still_dead: list[FileStat] = field(default_factory=list)


async def plan_from_ledger(
    ledger: Ledger, root: Root, listing: SessionListing, *, retry_dead: bool = False
) -> Plan:
    """``plan_session`` with what the ledger holds of the session."""
    current = await ledger.current_files(root.id, listing.session)
    dead = await ledger.dead_letter_signatures(root.id, listing.session)
    rejected = await ledger.rejected_files(root.id, listing.session) if dead else set()
    behind = listing.is_folder and await ledger.crate_pending(root.id, listing.session)
    return plan_session(
        root, listing, current, dead, rejected=rejected, retry_dead=retry_dead, crate_behind=behind
    )


def plan_session(
    root: Root,
    listing: SessionListing,
    current: Mapping[str, CurrentFile],
    dead: DeadLetters,
    *,
    rejected: Collection[str] = (),
    retry_dead: bool = False,
    crate_behind: bool = False,
) -> Plan:
    """``rejected``: files held back because the session's rules rejected it; the session is
    judged as one again whenever anything in it changes, so they join any new batch.
    ``crate_behind``: parts of the session were committed, but not the last, which writes the crate."""
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
    # A folder session whose crate or preview went missing (or was left behind by an interrupted
    # large session, or was made before previews were) gets it back, even when no file is new.
    documents_missing = not listing.has_crate or not listing.has_preview
    crate_missing = listing.is_folder and bool(current) and (documents_missing or crate_behind)
    if rejected and (todo or problems or removed or cleared):
        todo += [f for f in plan.still_dead if f.relpath in rejected]
        plan.still_dead = [f for f in plan.still_dead if f.relpath not in rejected]
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
