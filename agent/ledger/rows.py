"""What the ledger hands out and takes in: rows of files and dead letters, and a batch's commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..core.batch import FileStat, Root
from ..core.events import OutgoingEvent
from ..core.records import DeadLetter, FileRecord
from .drift import DriftUpdate
from .encoding import from_db


@dataclass(frozen=True, slots=True)
class CurrentFile:
    relpath: str
    signature: tuple[int, int, int, int]  # as FileStat.signature(): size, mtime_ns, ctime_ns, inode
    version: int
    sha256: str


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """A dead letter as the ledger holds it."""

    id: int
    root_id: int
    session: str
    relpath: str
    batch_id: str | None
    category: str
    error_class: str
    message: str
    advice: str
    attempts: int
    first_seen: str
    last_seen: str


VERSION_COLUMNS = (
    "f.relpath, f.session, f.version, f.status, f.size, f.mtime_ns, f.sha256, f.batch_id, f.sequence, "
    "f.sidecar_written_at"
)


@dataclass(frozen=True, slots=True)
class FileVersion:
    """One version of one file, as ``inspect`` and ``verify`` read it."""

    relpath: str
    session: str
    version: int
    status: str  # current, superseded or removed
    size: int
    mtime_ns: int
    sha256: str
    batch_id: str
    sequence: int
    ingested_at: str

    @classmethod
    def from_row(cls, row: Any) -> FileVersion:
        return cls(from_db(row[0]), from_db(row[1]), *row[2:])


@dataclass(slots=True)
class BatchCommit:
    """Everything one batch changes in the ledger, applied in a single transaction."""

    root: Root
    session: str
    batch_id: str | None
    records: list[FileRecord]
    entities: dict[str, str]  # relpath -> crate entity JSON, for records
    touched: list[FileStat]  # same bytes as the current version; only the quick-check fields move
    dead: list[DeadLetter]
    removed: list[str] = field(default_factory=list)  # ingested files no longer there
    cleared_dead: list[str] = field(default_factory=list)  # dead letters that no longer apply
    drift: list[DriftUpdate] = field(default_factory=list)  # baselines to learn, drift to report
    #: The session's crate: "written" by this batch, or "pending" (a part of a large session whose
    #: last part writes it); None: not this batch's concern.
    crate: Literal["written", "pending"] | None = None
    #: Enqueue the new versions and the session in the outbox (a store is configured).
    ship: bool = False
    #: Events announcing the batch to the hub (a bus is configured).
    events: list[OutgoingEvent] = field(default_factory=list)
