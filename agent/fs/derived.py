"""Derived tables on disk: their temp files, and putting them in place without overwriting a person's.

A derived table (``<file>.tidy.parquet``) is written by an extraction worker into a temp file the
agent opened for it in the raw file's folder, then renamed over its final name with the batch's
sidecars. The final name is the agent's by its shape (see core.naming), but a person may still have
put a file there: one is replaced only when its bytes are what the agent wrote there before, which
the ledger remembers (``ours``). The ledger learns each table's SHA-256 before the rename, so a
crash between the two leaves nothing the agent would refuse to replace on the redo.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..core.naming import derived_name, fits, is_derived_name, temp_name
from .outputs import open_regular
from .safepath import open_dir_beneath, split

_rng = random.Random()
Placement = Literal["written", "already-there", "conflict", "unverified"]


def open_derived_temp(root: Path, relpath: str, fmt: str) -> tuple[int, str]:
    """A new temp file for the derived table of ``relpath``, open for writing, and its name."""
    parent, name = split(relpath)
    final = derived_name(name, fmt)
    if not fits(final):
        raise OSError(errno.ENAMETOOLONG, f"the name {final!r} would be too long for a file name")
    if not is_derived_name(final):
        raise OSError(
            errno.EINVAL,
            f"{name!r} has no extension, so the name {final!r} would not tell the table from a person's file",
        )
    dir_fd = open_dir_beneath(root, parent)
    try:
        temp = temp_name(final, f"{_rng.getrandbits(48):012x}", derived=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        return os.open(temp, flags, 0o644, dir_fd=dir_fd), temp
    finally:
        os.close(dir_fd)


def discard_derived_temp(root: Path, relpath: str, temp: str) -> None:
    """Remove a derived table's temp file that will not be placed (gone already is fine)."""
    parent, _ = split(relpath)
    with contextlib.suppress(OSError):
        dir_fd = open_dir_beneath(root, parent)
        try:
            os.unlink(temp, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)


@dataclass(frozen=True, slots=True)
class DerivedPlacement:
    """A derived table to put in place: the raw file's path, the temp file, the final name's
    format, and the SHA-256 of what the temp file holds."""

    relpath: str
    temp: str
    format: str
    sha256: str

    @property
    def target(self) -> str:
        parent, name = split(self.relpath)
        return f"{parent}/{derived_name(name, self.format)}" if parent else derived_name(name, self.format)


def existing_sha256(root: Path, target: str) -> str | None:
    """The SHA-256 of the regular file at ``target`` (None: nothing there). Raises FileExistsError
    for anything else there (a link, a folder, a FIFO: never ours)."""
    parent, name = split(target)
    dir_fd = open_dir_beneath(root, parent)
    try:
        opened = open_regular(dir_fd, name)
    finally:
        os.close(dir_fd)
    if opened is None:
        return None
    fd, _ = opened
    try:
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def place_derived(root: Path, table: DerivedPlacement, ours: Callable[[str], bool]) -> Placement:
    """Put the temp file at the target unless a file the agent did not write is there.
    ``ours(sha256)``: whether the agent wrote a file with these bytes at the target. Blocking; the
    temp file is gone afterwards whatever happened."""
    parent, _ = split(table.relpath)
    target = split(table.target)[1]
    try:
        if existing_sha256(root, f"{parent}/{table.temp}" if parent else table.temp) != table.sha256:
            # What the worker reported is not what it wrote: nothing it wrote is placed.
            return "unverified"
        try:
            found = existing_sha256(root, table.target)
        except FileExistsError:
            return "conflict"
        if found == table.sha256:
            return "already-there"
        if found is not None and not ours(found):
            return "conflict"
        dir_fd = open_dir_beneath(root, parent)
        try:
            if found is None:
                # A link fails if a file appeared there since the look above: never replaced.
                try:
                    os.link(table.temp, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                except FileExistsError:
                    return "conflict"
            else:
                os.replace(table.temp, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return "written"
    finally:
        discard_derived_temp(root, table.relpath, table.temp)
