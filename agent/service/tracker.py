"""SessionTracker: decides when a session is complete. Pure: it is told the time and what was seen.

A session is sealed when all of these hold:
1. no change arrived for the quiet period (every change starts the wait again);
2. two looks at its files saw the same names, sizes and mtimes: the second at the end of the quiet
   period, the first ``stability_look_s`` before it (at most half the quiet period); on a polled
   root the second is also at least ``stability_look_s`` after the first;
3. where the policy names a marker glob, a file matching it exists (folder sessions only).

Where changes are reported by events (inotify), every write starts the quiet period again, so a
session whose second look agrees is sealed at once at the end of the quiet period. A polled root
sees a write up to a poll interval late, and another machine's writes to a share may show in sizes
and mtimes later still: there the looks keep their full spacing, whatever the quiet period.

The tracker keeps a few numbers per pending session, never a list of events, so a burst of files
costs memory per session, not per file. The caller takes the looks (listing is I/O) and reports
them back with ``record_look``.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

from ..core.batch import FileStat
from ..core.config import CompletionPolicy

SessionKey = tuple[int, str]  # (root id, session name)
#: A digest of a session's sorted (relpath, size, mtime_ns).
Snapshot = bytes


class Action(enum.Enum):
    FIRST_LOOK = "first look"
    SECOND_LOOK = "second look"
    WARN_LONG = "still changing"


class Verdict(enum.Enum):
    SEALED = "sealed"
    CHANGED = "changed"  # the looks differ: wait a full quiet period again
    LOOKED = "looked"  # first look recorded
    WAITING_FOR_MARKER = "waiting for marker"
    GONE = "gone"


def has_marker(files: Iterable[FileStat], marker: str) -> bool:
    return any(fnmatchcase(PurePosixPath(f.relpath).name, marker) for f in files)


def snapshot_of(files: Iterable[FileStat]) -> Snapshot:
    """What two looks at a session compare: a digest of its names, sizes and mtimes (32 bytes, not
    a copy of a listing that may hold 100,000 files)."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.relpath):
        digest.update(f"{f.relpath}\0{f.size}\0{f.mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.digest()


@dataclass(slots=True)
class PendingSession:
    key: SessionKey
    policy: CompletionPolicy
    first_change: float
    last_change: float
    #: Changes are found by polling (or the root's notifications failed): the looks keep their full
    #: spacing. Once set, it stays until the session is sealed.
    polled: bool = False
    look: Snapshot | None = None
    look_at: float = float("-inf")
    waiting_for_marker: bool = False
    warned_long: bool = False
    #: Why it is still pending, in words, for ``status``.
    reason: str = field(default="quiet period")

    def look_is_fresh(self) -> bool:
        return self.look is not None and self.look_at >= self.last_change

    def deadline(self) -> float | None:
        if self.waiting_for_marker:
            return None
        if self.look_is_fresh():
            return max(self.last_change + self.policy.quiet_period_s, self.look_at + self.look_spacing_s())
        return self.last_change + self.policy.first_look_s

    def look_spacing_s(self) -> float:
        """The least time between the two looks."""
        return self.policy.stability_look_s if self.polled else self.policy.look_spacing_s

    def kept_changing_too_long(self) -> bool:
        return not self.warned_long and self.last_change - self.first_change >= self.policy.max_session_s


class SessionTracker:
    def __init__(self) -> None:
        self._pending: dict[SessionKey, PendingSession] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def sessions(self) -> list[PendingSession]:
        return list(self._pending.values())

    def observe(self, key: SessionKey, policy: CompletionPolicy, at: float, *, polled: bool = False) -> None:
        """Something changed in the session at time ``at`` (monotonic seconds); ``polled``: the
        change was found by polling or by a reconciliation standing in for failed notifications."""
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = PendingSession(key, policy, first_change=at, last_change=at, polled=polled)
            return
        if at > pending.last_change:
            pending.last_change = at
        pending.polled = pending.polled or polled
        # Files of several rules in one folder: the folder waits as the strictest of them asks.
        pending.policy = pending.policy.strictest(policy)
        pending.waiting_for_marker = False  # a new file may be the marker
        pending.reason = "quiet period"

    def tighten(self, key: SessionKey, policy: CompletionPolicy) -> bool:
        """Make a pending session wait as ``policy`` asks too; True if that changed anything."""
        pending = self._pending[key]
        stricter = pending.policy.strictest(policy)
        changed = stricter != pending.policy
        pending.policy = stricter
        return changed

    def forget(self, key: SessionKey) -> None:
        self._pending.pop(key, None)

    def due(
        self, now: float, busy: set[SessionKey] | frozenset[SessionKey] = frozenset()
    ) -> list[tuple[PendingSession, Action]]:
        """What to do now; sessions in ``busy`` (a batch of theirs is in flight) wait."""
        actions: list[tuple[PendingSession, Action]] = []
        for pending in self._pending.values():
            if pending.kept_changing_too_long():
                actions.append((pending, Action.WARN_LONG))
            if pending.key in busy:
                continue
            deadline = pending.deadline()
            if deadline is None or now < deadline:
                continue
            actions.append((pending, Action.SECOND_LOOK if pending.look_is_fresh() else Action.FIRST_LOOK))
        return actions

    def next_deadline(self, busy: set[SessionKey] | frozenset[SessionKey] = frozenset()) -> float | None:
        deadlines = [p.deadline() for p in self._pending.values() if p.key not in busy]
        return min((d for d in deadlines if d is not None), default=None)

    def deadline_of(self, key: SessionKey) -> float | None:
        return self._pending[key].deadline()

    def warned(self, key: SessionKey) -> None:
        self._pending[key].warned_long = True

    def record_look(
        self, key: SessionKey, files: list[FileStat] | None, is_folder: bool, now: float
    ) -> Verdict:
        """Report what a look begun at ``now`` saw (None: the session no longer exists) and learn
        what follows."""
        pending = self._pending[key]
        if now < pending.last_change:
            # A change was reported while the look was taken: it may show in it or not.
            pending.look = None
            pending.reason = "quiet period (files still changing)"
            return Verdict.CHANGED
        if files is None:
            self.forget(key)
            return Verdict.GONE
        snap = snapshot_of(files)
        if not pending.look_is_fresh():
            pending.look, pending.look_at = snap, now
            pending.reason = "checking that sizes and mtimes are stable"
            return Verdict.LOOKED
        if snap != pending.look:
            # Changed without a notification (polling lag, a writer holding the file open).
            pending.last_change, pending.look = now, None
            pending.reason = "quiet period (files still changing)"
            return Verdict.CHANGED
        marker = pending.policy.marker
        if is_folder and marker and not has_marker(files, marker):
            pending.waiting_for_marker = True
            pending.reason = f"waiting for a marker file matching {marker!r}"
            return Verdict.WAITING_FOR_MARKER
        self.forget(key)
        return Verdict.SEALED
