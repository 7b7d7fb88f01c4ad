"""Opening paths below a watch root without ever following a symlink on the way.

O_NOFOLLOW guards only the last component of a path. A folder swapped for a symlink between
listing and reading would otherwise lead the agent out of the watch root, to hash or write files
elsewhere. Every component is opened relative to the one before it (openat), with O_NOFOLLOW.
"""

from __future__ import annotations

import os
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split(relpath: str) -> tuple[str, str]:
    """(parent folder, name) of a path below the root; the parent is "" for the root itself."""
    parent, _, name = relpath.rpartition("/")
    return parent, name


def open_dir_beneath(root: Path, reldir: str) -> int:
    """A file descriptor for ``root/reldir``, reached without following symlinks.

    Raises OSError: ELOOP or ENOTDIR when a component is a symlink or not a folder.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    if not reldir:
        return fd
    try:
        for part in reldir.split("/"):
            if part in ("", ".", ".."):
                raise OSError(f"refusing path component {part!r} in {reldir!r}")
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file_beneath(root: Path, relpath: str) -> int:
    """A read-only descriptor for the regular file ``root/relpath``, no symlink followed on the way.

    Raises OSError as ``os.open`` does (ELOOP for a symlink, ENOENT when it is gone).
    """
    parent, name = split(relpath)
    dir_fd = open_dir_beneath(root, parent)
    try:
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
