"""Names of the agent's own outputs, of ignored inputs, and of ids inside the outputs.

The watcher, the scanner and start-up repair all ask this module whether a name is ours, so that the
agent never ingests what it wrote itself.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from fnmatch import translate
from pathlib import PurePosixPath
from urllib.parse import quote

SIDECAR_SUFFIX = ".fair.json"
ERROR_SUFFIX = ".fair.error.json"
CRATE_NAME = "ro-crate-metadata.json"
#: The crate's human-readable view, beside it (the RO-Crate convention).
PREVIEW_NAME = "ro-crate-preview.html"
#: What the agent writes at the top of a session folder (anywhere else these names are data).
SESSION_DOCUMENTS = (CRATE_NAME, PREVIEW_NAME)
TEMP_SUFFIX = ".fair-tmp"
#: What a rule's [transform] derives from a table: ``<file>.tidy.parquet`` or ``<file>.tidy.csv``.
DERIVED_INFIX = ".tidy."
DERIVED_FORMATS = ("parquet", "csv")

_OWN_SUFFIX = re.compile(
    rf"(?:{re.escape(SIDECAR_SUFFIX)}|{re.escape(ERROR_SUFFIX)}|{re.escape(TEMP_SUFFIX)})$"
)
#: A derived table's name: the raw file's name, which has an extension, then ``.tidy.<format>``.
#: ``results.tidy.csv`` (no extension before ``.tidy``) is a person's file, and data; the agent
#: derives no table from a file without an extension, whose table's name would look like that.
_DERIVED = re.compile(r"^.+\.[^.]+\.tidy\.(?:parquet|csv)$", re.S)


def is_own_output(name: str) -> bool:
    """True for names of sidecars, error files, derived tables and temp files the agent writes.

    Names ending in ``.fair.json`` and ``.fair.error.json`` are the agent's anywhere. A crate (and
    its preview) is the agent's only at the top of a session folder (see ``is_own_path``);
    elsewhere that name is data.
    """
    return _OWN_SUFFIX.search(name) is not None or is_derived_name(name)


def is_derived_name(name: str) -> bool:
    """Whether a name is that of a derived table (``OD600.csv.tidy.parquet``)."""
    return DERIVED_INFIX in name and _DERIVED.match(name) is not None


def derived_name(file_name: str, fmt: str) -> str:
    """``OD600.csv`` -> ``OD600.csv.tidy.parquet``: the derived table beside a raw file."""
    return f"{file_name}{DERIVED_INFIX}{fmt}"


def is_own_path(relpath: str) -> bool:
    """True for paths (below a watch root) of anything the agent writes."""
    parts = relpath.split("/")
    return is_own_output(parts[-1]) or (len(parts) == 2 and parts[1] in SESSION_DOCUMENTS)


def is_temp_file(name: str) -> bool:
    return name.endswith(TEMP_SUFFIX)


#: What every filesystem the agent meets allows for one name, in bytes (ext4, XFS, btrfs, NFS...).
NAME_MAX = 255
#: Our temp names: ".<16 hex of the final name>.<12 hex>.fair-tmp"; before 0.2 they held the final
#: name itself, which could make them too long. Both are recognised when orphans are cleaned up.
_TEMP_NAME = re.compile(
    rf"^\.(?:[0-9a-f]{{16}}|.+)\.[0-9a-f]{{12}}(?P<derived>\.tidy)?{re.escape(TEMP_SUFFIX)}$", re.S
)


def is_our_temp_name(name: str) -> bool:
    """Exactly the shape of a temp name the agent makes (not merely its suffix)."""
    return _TEMP_NAME.match(name) is not None


def is_derived_temp_name(name: str) -> bool:
    """A temp name of a derived table: its content is not ours to recognise (any table), its name is."""
    found = _TEMP_NAME.match(name)
    return found is not None and found["derived"] is not None


def fits(name: str) -> bool:
    """Whether a file name fits in NAME_MAX bytes."""
    return len(os.fsencode(name)) <= NAME_MAX


class IgnoreRules:
    """Glob patterns (matched against the file name) for files that are never data."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        # One expression for every glob, each as fnmatchcase reads it: every event a watcher
        # reports is checked, and a glob at a time cost 5 µs a name for the default fourteen.
        self._globs = re.compile("|".join(map(translate, self.patterns))) if self.patterns else None

    def ignores(self, name: str) -> bool:
        """A name that is never data: ours (by suffix) or matching an ignore glob."""
        return is_own_output(name) or (self._globs is not None and self._globs.match(name) is not None)

    def ignores_path(self, relpath: str) -> bool:
        """As ``ignores``, for a path below the root: also the session crates."""
        return is_own_path(relpath) or self.ignores(relpath.rsplit("/", 1)[-1])


def data_name(name: str) -> str:
    """The data file a sidecar or error file describes (any other name is itself)."""
    for suffix in (SIDECAR_SUFFIX, ERROR_SUFFIX):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name.removesuffix(suffix)
    return name


def sidecar_name(file_name: str) -> str:
    return file_name + SIDECAR_SUFFIX


def error_name(file_name: str) -> str:
    """The error file of a data file or session (a name or a path): ``<name>.fair.error.json``.

    A name too long for that keeps its start and gets a hash of the whole in place of the rest,
    so every file, however named, can be told why it was not ingested.
    """
    folder, _, name = file_name.rpartition("/")
    full = name + ERROR_SUFFIX
    if not fits(full):
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
        room = NAME_MAX - len(ERROR_SUFFIX) - len(digest) - 1
        start = os.fsencode(name)[:room].decode("utf-8", "ignore")
        full = f"{start}~{digest}{ERROR_SUFFIX}"
    return f"{folder}/{full}" if folder else full


def temp_name(final_name: str, token: str, *, derived: bool = False) -> str:
    # Hidden, with our suffix, and short whatever the final name's length (NAME_MAX): neither
    # people nor the agent mistake it for data, and no name makes it too long to create.
    digest = hashlib.sha256(os.fsencode(final_name)).hexdigest()[:16]
    return f".{digest}.{token}{'.tidy' if derived else ''}{TEMP_SUFFIX}"


def relative_id(relpath: str) -> str:
    """A relative, percent-encoded URI reference for a path below a crate or sidecar folder.

    Spaces, brackets, colons and non-ASCII are escaped (a colon in the first segment would
    otherwise read as a URI scheme); names that are not valid UTF-8 keep their raw bytes.
    """
    return quote(os.fsencode(relpath), safe="/")


def display_name(name: str) -> str:
    """A name fit for JSON: undecodable bytes (kept by surrogateescape) become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def session_of(relpath: str) -> tuple[str, bool]:
    """The session a file belongs to, and whether that session is a folder.

    The first folder level under the watch root is a session; a loose file in the root is a
    session of one.
    """
    parts = PurePosixPath(relpath).parts
    if len(parts) == 1:
        return relpath, False
    return parts[0], True


def is_within(relpath: str, folder: str) -> bool:
    """True for ``folder`` itself and every path below it; "" is the watch root, holding all."""
    return not folder or relpath == folder or relpath.startswith(folder + "/")


def unit_of(session: str) -> str:
    """The top-level entry a session lies in: what is watched and waited for as one."""
    return session.split("/", 1)[0]
