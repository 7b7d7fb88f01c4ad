"""A session's documents to the store once all its data objects are there.

The crate and its preview (of a folder session) and the sidecars of the session's new versions go
under ``sessions/<agent>/<root>/<session>/``, each PUT with its checksum. They are the local files,
byte for byte: a reader finds each data object from the crate's ``sha256`` of the file.

The documents are read before anything is sent, and the crate as read is checked against the ledger
(``named_hashes``): a batch may have written a newer crate, naming objects not stored yet, after the
session was found ready. Such a crate waits for the next pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..core.naming import CRATE_NAME, PREVIEW_NAME, sidecar_name
from ..fs.safepath import open_file_beneath
from ..ledger.outbox import SessionDocuments
from .keys import document_key, session_prefix
from .objectstore import ObjectStore, b64

_TYPES = {CRATE_NAME: "application/ld+json", PREVIEW_NAME: "text/html; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class Document:
    key: str
    body: bytes
    content_type: str


def read_documents(prefix: str, agent_name: str, docs: SessionDocuments) -> list[Document]:
    """Blocking: every document of the session that exists, the crate last."""
    base = session_prefix(prefix, agent_name, docs.root_name, docs.session)
    names = [sidecar_name(relpath) for _, relpath in docs.sidecars]
    names += [f"{docs.session}/{PREVIEW_NAME}", f"{docs.session}/{CRATE_NAME}"]
    found = []
    for relpath in names:
        body = _read(docs.root_path, relpath)
        if body is not None:
            kind = _TYPES.get(relpath.rsplit("/", 1)[-1], "application/json")
            found.append(Document(document_key(base, docs.session, relpath), body, kind))
    return found


def named_hashes(documents: list[Document]) -> set[str]:
    """The sha256 of every data File entity in the session's crate (none without a crate).

    A table derived from a file (``isBasedOn`` it) is shipped too, but the documents do not wait
    for it: one made before the store was set, or deleted before it was shipped, is never stored,
    and is made again from the raw file and the rule."""
    crate = next((d for d in documents if d.key.endswith("/" + CRATE_NAME)), None)
    if crate is None:
        return set()
    graph = orjson.loads(crate.body).get("@graph", [])
    return {
        e["sha256"]
        for e in graph
        if isinstance(e, dict) and isinstance(e.get("sha256"), str) and "isBasedOn" not in e
    }


def put_documents(store: ObjectStore, documents: list[Document]) -> None:
    """Blocking: each document with its checksum, in order (the crate last)."""
    for document in documents:
        checksum = b64(hashlib.sha256(document.body).digest())
        store.put(document.key, document.body, checksum, {}, content_type=document.content_type)


def _read(root: Path, relpath: str) -> bytes | None:
    """The document's bytes; None when it is not there (a loose file has no crate; a file removed
    since has no sidecar)."""
    try:
        fd = open_file_beneath(root, relpath)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with open(fd, "rb") as handle:
        return handle.read()
