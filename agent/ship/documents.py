"""A session's documents to the store once all its data objects are there.

The crate and its preview (of a folder session) and the sidecars of the session's new versions go
under ``sessions/<agent>/<root>/<session>/``, each PUT with its checksum. They are the local files,
byte for byte: a reader finds each data object from the crate's ``sha256`` of the file.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..core.naming import CRATE_NAME, PREVIEW_NAME, sidecar_name
from ..fs.safepath import open_file_beneath
from ..ledger.outbox import SessionDocuments
from .keys import document_key, session_prefix
from .objectstore import ObjectStore, b64

log = logging.getLogger("fair_agent.ship")


def ship_documents(store: ObjectStore, agent_name: str, docs: SessionDocuments) -> int:
    """Blocking: every document of the session that exists; returns how many were stored."""
    base = session_prefix(store.settings.prefix, agent_name, docs.root_name, docs.session)
    names = [sidecar_name(relpath) for _, relpath in docs.sidecars]
    names += [f"{docs.session}/{CRATE_NAME}", f"{docs.session}/{PREVIEW_NAME}"]
    stored = 0
    for relpath in names:
        body = _read(docs.root_path, relpath)
        if body is None:
            continue
        store.put(document_key(base, docs.session, relpath), body, b64(hashlib.sha256(body).digest()), {})
        stored += 1
    return stored


def _read(root: Path, relpath: str) -> bytes | None:
    """The document's bytes; None when it is not there (a loose file has no crate; a file removed
    since has no sidecar)."""
    try:
        fd = open_file_beneath(root, relpath)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with open(fd, "rb") as handle:
        return handle.read()
