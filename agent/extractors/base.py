"""What every extractor is: a file in, metadata out, a typed error on failure, bounded in time.

Extractors are blocking and run in a worker thread. They read at most what they need (headers,
or a stream in chunks), never load a whole file into memory, and call ``budget.check()`` in their
loops so a per-file time limit stops them: a thread cannot be killed, but it can be asked.

An extractor's metadata is the format's own, under its own keys; a few keys mean the same for every
format, and the agent reads them:

- ``acquisition``: when the measurement was made, as the file records it: ``{"start": ISO 8601,
  "end": ISO 8601 (optional), "source": where in the file}``, with the file's UTC offset where it
  gives one and without one where it does not (the agent then applies the rule's or the site's time
  zone). Build it with ``acquisition_time``. Never a file-system time: a copy must not change it.
- ``description``: one sentence for people saying what the file holds ("FCS 3.1 flow cytometry
  data: 5,785 events, 12 parameters").
- ``instrument``: the instrument as the file names it: ``{"name", "model", "manufacturer",
  "serialNumber", "software"}``, each optional.
- ``warnings``: sentences about problems inside the content a person should see (a declared
  checksum that does not match); they join the sidecar's warnings.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import TerminalError

Metadata = dict[str, Any]


def suffix(name: str) -> str:
    """A file name's extension, lower-cased: ``PurePosixPath(name).suffix.lower()`` without building
    a path. Every extractor is asked about every file, and the paths cost 15 µs a file."""
    dot = name.rfind(".")
    return name[dot:].lower() if 0 < dot < len(name) - 1 else ""


def iso_seconds(text: Any) -> str | None:
    """An ISO 8601 time to the second, with the offset the file gives (none when it gives none);
    None for what is not a time."""
    try:
        return datetime.fromisoformat(text).isoformat(timespec="seconds") if isinstance(text, str) else None
    except ValueError:
        return None


def counted(n: int, noun: str) -> str:
    """``1 file``, ``2,048 files``: a count for a description."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def acquisition_time(
    start: datetime | date | str, end: datetime | date | str | None = None, *, source: str
) -> Metadata:
    """The ``acquisition`` entry for a measurement's start (and end): ISO 8601 to the second."""
    entry = {"start": _iso(start), "source": source}
    if end is not None and _iso(end) != entry["start"]:
        entry["end"] = _iso(end)
    return entry


def _iso(moment: datetime | date | str) -> str:
    if isinstance(moment, datetime):
        return moment.isoformat(timespec="seconds")
    return moment.isoformat() if isinstance(moment, date) else moment


class ExtractionError(TerminalError):
    """An extractor could not read the file's metadata.

    The file is still ingested: hashed, recorded and described by its generic format, with the
    extractor's error among its sidecar's warnings (see ingest.reading). Only an UnsafeInputError
    stops a file.
    """

    advice = (
        "Check that the file is complete and of the format its name says. "
        "The agent reads it again when the file changes."
    )


class UnsafeInputError(ExtractionError):
    """Content refused for safety: the file is dead-lettered, not ingested with a warning."""

    advice = (
        "Do not open this file. Export it again from its source; if it is expected, ask the data manager."
    )


class UnsafeArchiveError(UnsafeInputError):
    """An archive that would write outside its folder, expand without bound, or is encrypted."""

    advice = (
        "Do not unpack this archive. Export it again from its source; "
        "if it is expected, ask the data manager."
    )


class ExtractionTimeout(ExtractionError):
    """Reading the file's metadata took longer than the per-file limit."""


class Budget:
    """The time an extractor may take, checked cooperatively."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._deadline = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self._deadline:
            raise ExtractionTimeout(f"reading the metadata took longer than {self.seconds:.0f} s")


@dataclass(frozen=True, slots=True)
class Source:
    """The file an extractor reads.

    ``path`` opens the very file that was hashed (the agent hands over an already opened file as
    /proc/self/fd/N, so nothing can be swapped in between); ``name`` is for messages; ``folder``
    is where relative references inside the file (HDF5 external links) point. ``fd``, where there
    is one (in a worker), is that open file itself, to read with ``read_at`` without opening it
    again: opening the path under /proc cost 20 of the 285 µs a small CSV's extraction takes.
    """

    path: Path
    name: str
    folder: Path
    fd: int | None = None


def read_at(fd: int, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes of the open file ``fd`` from ``offset``, fewer only at its end. A read
    at an offset moves no position that another reader of the same open file would share."""
    data = os.pread(fd, size, offset)
    while 0 < len(data) < size:  # a short read before the end (some network filesystems)
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


class Extractor(Protocol):
    """A metadata reader for one family of formats; register more through the entry point group
    ``fair_agent.extractors`` (a class with this interface, instantiated without arguments, in the
    worker processes that read files: see isolation.py)."""

    #: Short name, recorded in the sidecar as ``metadata.extractor``.
    name: str
    # Optional: ``crash_free = True`` says its reading cannot end its worker process (Python, or a
    # C library that does not crash on bad input, checking its budget). Other files' answers may
    # then wait in the worker while it reads (see isolation). Without it, they are sent first. Set
    # on the class itself: a subclass does not inherit the promise.

    def accepts(self, name: str, head: bytes) -> bool:
        """Whether this extractor reads a file of this name whose first bytes are ``head``."""
        ...

    def extract(self, source: Source, budget: Budget) -> Metadata:
        """The file's metadata. Raises ExtractionError (or a subclass) for a file it cannot read."""
        ...
