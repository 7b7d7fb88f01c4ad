"""The events as the hub reads them: pydantic models of what an agent announces (see events.py).

Apart from events.py so that an agent, which only writes events, does not build these models at
every start.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from .events import SCHEMA_VERSION


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class FileEntry(_Event):
    path: str
    version: int
    sha256: str
    size: int
    format: str
    datasetType: str
    dataset: dict[str, Any] = {}
    validation: str = "not-validated"
    drift: str = "not-checked"
    acquiredStart: str | None = None
    acquiredEnd: str | None = None
    instrument: str | None = None
    modified: str | None = None
    extractionError: str | None = None


class BatchEvent(_Event):
    v: int = SCHEMA_VERSION
    kind: Literal["batch"] = "batch"
    id: str
    agent: str
    root: str
    session: str
    batchId: str
    part: int
    parts: int
    committedAt: str
    files: list[FileEntry] = []
    removed: list[str] = []
    crate: dict[str, Any] | None = None
    #: Why the crate is not in the event (too large for one message).
    crateOmitted: str | None = None


class StoredFile(_Event):
    path: str
    version: int
    sha256: str
    uri: str
    verifiedAt: str


class StoredEvent(_Event):
    v: int = SCHEMA_VERSION
    kind: Literal["stored"] = "stored"
    id: str
    agent: str
    root: str
    session: str
    files: list[StoredFile]


class AgentStatus(_Event):
    """An agent's account of its announcing, sent after each pass (for the fleet page)."""

    agent: str
    pending: int
    awaitingReceipt: int
    oldestPendingAt: str | None = None
    sentAt: str


class Receipt(_Event):
    """The hub's word that these message ids are committed to the catalogue."""

    ids: list[str]


def parse_event(payload: bytes) -> BatchEvent | StoredEvent:
    """An event from the bus; raises ValueError for anything that is not one of ours."""
    data = orjson.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("an event is a JSON object")
    if data.get("kind") == "batch":
        return BatchEvent.model_validate(data)
    if data.get("kind") == "stored":
        return StoredEvent.model_validate(data)
    raise ValueError(f"unknown event kind {data.get('kind')!r}")
