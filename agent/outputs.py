"""Writing outputs next to the data, atomically. Blocking: callers run it in a worker thread.

Each file goes to a hidden temp file in the same folder, is fsynced, then renamed over the target;
each folder is fsynced once after its renames. A reader (or a crash) sees the old document or the new
one, never half of one. A document whose bytes are already on disk is not rewritten, so its mtime
stays put and a redone batch changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from .errors import OutputWriteError
from .naming import temp_name

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def write_documents(documents: Iterable[tuple[Path, bytes]]) -> int:
    """Write every (path, bytes) atomically; return how many files actually changed."""
    changed_dirs: set[Path] = set()
    written = 0
    for path, data in documents:
        if _already_there(path, data):
            continue
        _write_one(path, data)
        changed_dirs.add(path.parent)
        written += 1
    for folder in changed_dirs:
        _fsync_dir(folder)
    return written


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _already_there(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def _write_one(path: Path, data: bytes) -> None:
    tmp = path.parent / temp_name(path.name, secrets.token_hex(4))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb", closefd=True) as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        remove_quietly(tmp)
        raise _write_error(path, exc) from exc
    except BaseException:
        remove_quietly(tmp)
        raise


def _fsync_dir(folder: Path) -> None:
    # Makes the renames durable; a crash after this cannot resurrect the old documents.
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(path: Path, exc: OSError) -> OutputWriteError:
    reason = _REASONS.get(exc.errno or 0, exc.strerror or str(exc))
    return OutputWriteError(f"cannot write {path.name!r} next to the data: {reason}")
