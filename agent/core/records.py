"""The records of the agent's domain: one ingested version of a file, and a file that failed.

A FileRecord is built while a batch is read, curated by its rules, written out as a sidecar and a
crate entity, and recorded in the ledger. A DeadLetter is what failed, why, and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from .batch import FileStat
from .errors import AgentError

if TYPE_CHECKING:
    # Only named here: the extraction workers import this module, and need no pydantic (80 ms
    # at each worker's start).
    from .enrichment import Enrichment

GENERIC_DATASET_TYPE = "generic"
NOT_VALIDATED: dict[str, Any] = {"status": "not-validated"}
NOT_CHECKED: dict[str, Any] = {"status": "not-checked"}
#: The key of a file's metadata that says its extractor failed: {"extractor", "error", "message"}.
EXTRACTION_FAILURE = "extraction_error"
#: The key under which an extraction brings back its rule's derived table (see extractors.derive);
#: the reader takes it out of the metadata.
DERIVED_TABLE = "derivedTable"


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One version of one ingested file, as the sidecar, the crate and the ledger describe it."""

    stat: FileStat  # the file as it was while it was hashed
    session: str
    sha256: str
    encoding_format: str
    batch_id: str = ""
    sequence: int = 0
    version: int = 0
    dataset_type: str = GENERIC_DATASET_TYPE
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    #: The fields of its dataset type, validated and normalised (see rules.dataset).
    dataset: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=lambda: dict(NOT_VALIDATED))
    drift: dict[str, Any] = field(default_factory=lambda: dict(NOT_CHECKED))
    #: What its rule adds: license, keywords, instrument, publisher, creators.
    enrichment: Enrichment | None = None
    #: When it was measured, zoned ISO 8601: {"start"} or {"start", "end"}; {} when unknown.
    acquisition: dict[str, str] = field(default_factory=dict)
    #: The analysis-ready table its rule's [transform] derived: name, sha256, columns... ({}: none).
    derived: dict[str, Any] = field(default_factory=dict)

    @property
    def relpath(self) -> str:
        return self.stat.relpath

    @property
    def name(self) -> str:
        # Not PurePosixPath(...).name: this runs several times per file on the hot path.
        return self.stat.relpath.rsplit("/", 1)[-1]

    @property
    def derived_relpath(self) -> str | None:
        """Where its derived table lies (beside it), if one was written."""
        name = self.derived.get("name")
        if not name:
            return None
        parent = self.stat.relpath.rpartition("/")[0]
        return f"{parent}/{name}" if parent else str(name)

    def changed(self, **changes: Unpack[RecordChanges]) -> FileRecord:
        """``dataclasses.replace(self, **changes)`` at half its cost (2 µs instead of 4.5): a
        record is copied three or four times a file on the hot path, and replace looks up the
        class's fields at every call. The class has no __post_init__ and no init=False field,
        which replace would honour and this does not."""
        if not _RECORD_FIELD_SET.issuperset(changes):
            raise TypeError(f"FileRecord has no field {sorted(set(changes) - _RECORD_FIELD_SET)}")
        copy = _new_object(FileRecord)
        for name in _RECORD_FIELDS:
            _set_attribute(copy, name, getattr(self, name))
        for name, value in changes.items():
            _set_attribute(copy, name, value)
        return copy


class RecordChanges(TypedDict, total=False):
    """FileRecord's fields, for FileRecord.changed: type checkers check its callers as they check
    dataclasses.replace's (tests/test_records.py holds the two lists together)."""

    stat: FileStat
    session: str
    sha256: str
    encoding_format: str
    batch_id: str
    sequence: int
    version: int
    dataset_type: str
    metadata: dict[str, Any]
    warnings: tuple[str, ...]
    dataset: dict[str, Any]
    validation: dict[str, Any]
    drift: dict[str, Any]
    enrichment: Enrichment | None
    acquisition: dict[str, str]
    derived: dict[str, Any]


_RECORD_FIELDS = tuple(f.name for f in fields(FileRecord))
_RECORD_FIELD_SET = frozenset(_RECORD_FIELDS)
# A frozen dataclass's own __init__ sets its fields this way too.
_new_object, _set_attribute = object.__new__, object.__setattr__


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A file (or a folder that could not be listed) that was not ingested, and the error saying why."""

    relpath: str
    session: str
    error: AgentError | BaseException
    attempts: int
    stat: FileStat | None = None
    batch_id: str | None = None

    @property
    def category(self) -> str:
        return str(getattr(self.error, "category", "terminal"))

    @property
    def advice(self) -> str:
        return str(getattr(self.error, "advice", ""))
