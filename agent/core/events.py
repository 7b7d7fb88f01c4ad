"""The fleet's events: what an agent announces over the bus, and what the hub reads and receipts.

Subjects: ``fair.v1.<agent>.batch`` (a committed batch: its new file versions, the files it
removed, the session's crate) and ``fair.v1.<agent>.stored`` (a session's objects stored and
verified in the object store); the hub answers on ``fair.v1.receipt.<agent>`` with the message ids
it has committed to the catalogue. ``<agent>`` is the agent's name as a subject token.

Every message id is deterministic (``Nats-Msg-Id``): the same batch, redone after a crash, makes
the same events with the same ids, so JetStream drops a re-publish inside its duplicate window and
the catalogue's keys make it harmless beyond. A batch's files are split into parts that each stay
below ``MAX_EVENT_BYTES`` (NATS refuses messages above the server's max_payload, 1 MiB by default).
The hub's models of these events are in eventmodels.py. The agent name ``receipt`` is refused by the
configuration: its events would land among the receipts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from .records import EXTRACTION_FAILURE, FileRecord

SCHEMA_VERSION = 1
#: Largest payload an agent makes; below NATS's default max_payload (1 MiB) with room for headers.
MAX_EVENT_BYTES = 512 * 1024
EventKind = Literal["batch", "stored"]
#: The kinds the hub's stream takes: ``fair.v1.<agent>.<kind>``.
EVENT_KINDS: tuple[EventKind, ...] = ("batch", "stored")
_TOKEN_UNSAFE = {".": "%2E", "*": "%2A", ">": "%3E", "%": "%25", " ": "%20", "\t": "%09"}


def subject_token(name: str) -> str:
    """A name as one NATS subject token (dots, wildcards and spaces percent-encoded)."""
    return "".join(_TOKEN_UNSAFE.get(c, c) for c in name)


def event_subject(agent_name: str, kind: EventKind) -> str:
    return f"fair.v1.{subject_token(agent_name)}.{kind}"


def receipt_subject(agent_name: str) -> str:
    return f"fair.v1.receipt.{subject_token(agent_name)}"


def status_subject(agent_name: str) -> str:
    """Where an agent says how its announcing goes (plain NATS, not kept in the stream)."""
    return f"fair.v1.{subject_token(agent_name)}.status"


#: What the hub listens to for every agent's status.
STATUS_SUBJECTS = "fair.v1.*.status"


def stream_subjects() -> list[str]:
    return [f"fair.v1.*.{kind}" for kind in EVENT_KINDS]


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An event as the ledger's outbox keeps it until it is published and receipted."""

    msg_id: str
    subject: str
    payload: bytes
    #: The file versions it announces: (relpath, version).
    files: tuple[tuple[str, int], ...]
    kind: EventKind


def file_entry(record: FileRecord) -> dict[str, Any]:
    failure = record.metadata.get(EXTRACTION_FAILURE)
    instrument = record.enrichment.instrument if record.enrichment else None
    return {
        "path": record.relpath,
        "version": record.version,
        "sha256": record.sha256,
        "size": record.stat.size,
        "format": record.encoding_format,
        "datasetType": record.dataset_type,
        "dataset": record.dataset,
        "validation": str(record.validation.get("status", "not-validated")),
        "drift": str(record.drift.get("status", "not-checked")),
        "acquiredStart": record.acquisition.get("start"),
        "acquiredEnd": record.acquisition.get("end"),
        "instrument": instrument.name if instrument else None,
        "extractionError": failure.get("message") if isinstance(failure, dict) else None,
    }


def batch_events(
    *,
    agent_name: str,
    root_name: str,
    session: str,
    batch_id: str,
    records: list[FileRecord],
    removed: list[str],
    crate_text: str | None,
    stamp: str,
    max_bytes: int = MAX_EVENT_BYTES,
) -> list[OutgoingEvent]:
    """The events of one committed batch: its files in parts below ``max_bytes``, the crate last."""
    entries = [file_entry(r) for r in records]
    # Each version once: the same batch id for other versions (a file changed and changed back)
    # must not share message ids with the first.
    versions = hashlib.sha256(repr(sorted((r.relpath, r.version) for r in records)).encode()).hexdigest()[:16]
    crate_bytes = len(crate_text.encode()) if crate_text else 0
    crate: dict[str, Any] | None = orjson.loads(crate_text) if crate_text else None
    omitted = None
    if crate_bytes > max_bytes // 2:
        crate, omitted = None, f"the crate ({crate_bytes} bytes) is too large for one event"
    chunks = _chunks(entries, max_bytes - (crate_bytes if crate else 0) - 4096)
    base = {
        "v": SCHEMA_VERSION,
        "kind": "batch",
        "agent": agent_name,
        "root": root_name,
        "session": session,
        "batchId": batch_id,
        "committedAt": stamp,
    }
    events = []
    for part, chunk in enumerate(chunks, start=1):
        last = part == len(chunks)
        msg_id = f"{subject_token(agent_name)}:{batch_id}:{versions}:{part}"
        body = {
            **base,
            "id": msg_id,
            "part": part,
            "parts": len(chunks),
            "files": chunk,
            "removed": removed if last else [],
            "crate": crate if last else None,
            "crateOmitted": omitted if last else None,
        }
        files = tuple(
            (r.relpath, r.version) for r in records[_offset(chunks, part) : _offset(chunks, part + 1)]
        )
        events.append(OutgoingEvent(msg_id, event_subject(agent_name, "batch"), _dumps(body), files, "batch"))
    return events


def stored_events(
    *,
    agent_name: str,
    root_name: str,
    session: str,
    generation: int,
    files: list[dict[str, Any]],
    max_bytes: int = MAX_EVENT_BYTES,
) -> list[OutgoingEvent]:
    """A session's newly stored objects (``files``: StoredFile fields), in parts below ``max_bytes``."""
    where = hashlib.sha256(f"{root_name}\0{session}".encode()).hexdigest()[:16]
    chunks = _chunks(files, max_bytes - 4096)
    events = []
    for part, chunk in enumerate(chunks, start=1):
        msg_id = f"{subject_token(agent_name)}:stored:{where}:{generation}:{part}"
        body = {
            "v": SCHEMA_VERSION,
            "kind": "stored",
            "id": msg_id,
            "agent": agent_name,
            "root": root_name,
            "session": session,
            "files": chunk,
        }
        announced = tuple(
            (f["path"], f["version"]) for f in files[_offset(chunks, part) : _offset(chunks, part + 1)]
        )
        events.append(
            OutgoingEvent(msg_id, event_subject(agent_name, "stored"), _dumps(body), announced, "stored")
        )
    return events


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # an integer beyond 64 bits, a name that is not valid UTF-8
        return json.dumps(value, ensure_ascii=True, default=str).encode()


def _chunks(entries: list[dict[str, Any]], budget: int) -> list[list[dict[str, Any]]]:
    """Consecutive entries whose JSON sizes add up to at most ``budget`` (one entry alone may
    exceed it); always at least one chunk, so a batch that only removed files is announced too."""
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for entry in entries:
        length = len(_dumps(entry)) + 1
        if chunks[-1] and size + length > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += length
    return chunks


def _offset(chunks: list[list[dict[str, Any]]], part: int) -> int:
    return sum(len(c) for c in chunks[: part - 1])
