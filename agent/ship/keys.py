"""Object keys: content-addressed data, and each session's documents under its agent and root."""

from __future__ import annotations

from urllib.parse import quote


def data_key(prefix: str, sha256: str) -> str:
    """Identical bytes from any session or PC share one object."""
    return f"{prefix}sha256/{sha256}"


def session_prefix(prefix: str, agent_name: str, root_name: str, session: str) -> str:
    return f"{prefix}sessions/{_part(agent_name)}/{_part(root_name)}/{_path(session)}/"


def document_key(session_key: str, session: str, relpath: str) -> str:
    """The key of a document at ``relpath`` (below the watch root) of a session.

    A folder session's files keep their path inside the session folder; a loose file (a session of
    one, named like the file) keeps its name.
    """
    inside = relpath[len(session) + 1 :] if relpath.startswith(session + "/") else relpath.rsplit("/", 1)[-1]
    return session_key + _path(inside)


def _path(relpath: str) -> str:
    return "/".join(_part(p) for p in relpath.split("/"))


def _part(name: str) -> str:
    # Keys are UTF-8; a name that is not (raw bytes kept by surrogateescape) is percent-encoded,
    # and so are the few characters that would change a key's meaning.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return quote(name.encode("utf-8", "surrogateescape"), safe="")
    return name.replace(".", "%2E") if name in (".", "..") else name
