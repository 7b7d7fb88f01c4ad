"""The ``.fair.error.json`` files that tell the person at the instrument what failed and what to do.

Deterministic (no clock in them), so a redone batch writes the same bytes, and free of the machine's
absolute paths: a reason may quote a library's message, and that message may name one.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from .. import AGENT_NAME, __version__
from ..core.errors import AgentError, SessionRejectedError
from ..core.naming import display_name, error_name
from ..core.records import DeadLetter
from ..fs.outputs import Document, remove_own_documents, write_documents

log = logging.getLogger("fair_agent.pipeline")

DEFAULT_ADVICE = (
    "Fix the problem described above. The agent tries again when the file changes; "
    "`fair-agent replay --session FOLDER` tries again at once."
)


def without_root(message: str, root: Path) -> str:
    # Messages of unexpected errors may carry absolute paths; outputs never do.
    message = re.sub(r"/proc/self/fd/\d+", "<the file>", message)
    return message.replace(str(root) + "/", "").replace(str(root), "<watch root>")


def update_error_files(root: Path, session: str, stale: list[str], dead: list[DeadLetter]) -> None:
    """Tell the person at the instrument what failed; remove the notes of what now passed.

    A file that failed on its own gets an error file beside it; a session its rules rejected gets
    one beside the session, naming every file and field.
    """
    for relpath in remove_own_documents(root, stale):
        log.warning(
            f"{relpath!r} looks like an error file but fair-agent did not write it; left alone",
            extra={"session": session, "file": relpath},
        )
    rejected = [d for d in dead if isinstance(d.error, SessionRejectedError)]
    documents: list[Document] = [
        (root, error_name(d.relpath), error_document(d, root))
        for d in dead
        # Nothing but loose-file sidecars goes into the watch root: a session folder that cannot
        # be read is reported in the log and the ledger only.
        if not isinstance(d.error, SessionRejectedError) and ("/" in d.relpath or d.stat is not None)
    ]
    if rejected:
        documents.append((root, error_name(session), session_error_document(session, rejected, root)))
    # One at a time: an error file that cannot be written (its folder unreadable, a name in the
    # way) must not keep the others from being written.
    for document in documents:
        try:
            result = write_documents([document])
        except AgentError as exc:
            log.warning(f"could not write an error file next to the data: {exc}", extra={"session": session})
            continue
        for conflict in result.conflicts:
            log.warning(f"a file not written by fair-agent is in the way of the error file {conflict!r}")


def session_error_document(session: str, rejected: list[DeadLetter], root: Path) -> dict[str, Any]:
    """The ``.fair.error.json`` beside a rejected session: every file, every field, in words."""
    first = rejected[0]
    error = first.error
    assert isinstance(error, SessionRejectedError)
    return {
        "session": display_name(session),
        "status": "not ingested",
        "reason": without_root(str(error), root),
        "problems": error.details,
        "filesHeldBack": sorted(display_name(d.relpath.removeprefix(session + "/")) for d in rejected),
        "whatToDo": first.advice or DEFAULT_ADVICE,
        "category": first.category,
        "errorClass": type(error).__name__,
        "attempts": max(d.attempts for d in rejected),
        "generatedBy": {"name": AGENT_NAME, "version": __version__},
    }


def error_document(dead: DeadLetter, root: Path) -> dict[str, Any]:
    """The ``.fair.error.json`` for the person at the instrument. Deterministic: no clock in it.

    Reasons can quote a library's message; no absolute path of the machine may go out with it.
    """
    return {
        "file": display_name(dead.relpath.rsplit("/", 1)[-1]),
        "session": display_name(dead.session),
        "status": "not ingested",
        "reason": without_root(str(dead.error), root),
        "whatToDo": dead.advice or DEFAULT_ADVICE,
        "category": dead.category,
        "errorClass": type(dead.error).__name__,
        "attempts": dead.attempts,
        "generatedBy": {"name": AGENT_NAME, "version": __version__},
    }
