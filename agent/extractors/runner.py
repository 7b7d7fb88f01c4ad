"""The extraction stage: format detection for every file, and an extractor's metadata where one fits.

Detection works on the first bytes the hasher already read. Extractors run in their own threads
(at most one per core, so a burst of large tables cannot exhaust memory), each on the very file
that was hashed: the file is opened without following links (safepath), checked to be the same
inode, and handed over as /proc/self/fd/N. Each has a time limit: cooperatively inside, and here
as a backstop.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..core.errors import FileChangedError, FileVanishedError
from ..fs.safepath import open_dir_beneath, split
from . import (
    ExtractionError,
    ExtractionTimeout,
    Extractor,
    Source,
    choose,
    detect,
    load_extractors,
    run_extractor,
)
from .generic import Detected


class MetadataReader:
    def __init__(self, threads: int, seconds: float, extractors: list[Extractor] | None = None) -> None:
        self.extractors = load_extractors() if extractors is None else extractors
        self.seconds = seconds
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fair-extract")
        # The time limit starts when a file gets a thread, not while it queues for one.
        self._slots = asyncio.Semaphore(threads)

    def detect(self, relpath: str, head: bytes) -> Detected:
        return detect(relpath.rsplit("/", 1)[-1], head)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.extractors]

    def _extractor(self, relpath: str, head: bytes, choice: str) -> Extractor | None:
        """``choice``: "auto" (by file type), "none", or an extractor's name (a rule's say)."""
        if choice == "auto":
            return choose(self.extractors, relpath.rsplit("/", 1)[-1], head)
        return next((e for e in self.extractors if e.name == choice), None)

    def wants(self, relpath: str, head: bytes, choice: str = "auto") -> bool:
        return self._extractor(relpath, head, choice) is not None

    async def read(
        self, root: Path, relpath: str, head: bytes, inode: int, choice: str = "auto"
    ) -> dict[str, Any]:
        """The extractor's metadata for one file; {} when no extractor reads its type."""
        extractor = self._extractor(relpath, head, choice)
        if extractor is None:
            return {}
        loop = asyncio.get_running_loop()
        async with self._slots:
            work = loop.run_in_executor(
                self._executor, _extract, extractor, root, relpath, inode, self.seconds
            )
            try:
                # The extractor checks its own budget; this is the backstop if one does not.
                return await asyncio.wait_for(work, self.seconds + 5)
            except TimeoutError:
                limit = f"{self.seconds:.0f} s"
                raise ExtractionTimeout(
                    f"reading the metadata of {relpath!r} took longer than {limit}"
                ) from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _extract(extractor: Extractor, root: Path, relpath: str, inode: int, seconds: float) -> dict[str, Any]:
    parent, name = split(relpath)
    try:
        dir_fd = open_dir_beneath(root, parent)
    except OSError as exc:
        raise ExtractionError(f"cannot reach {relpath!r} to read its metadata: {exc.strerror}") from None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise FileVanishedError(f"{relpath!r} vanished before its metadata was read") from None
    except OSError as exc:
        raise ExtractionError(f"cannot open {relpath!r} to read its metadata: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
    try:
        if os.fstat(fd).st_ino != inode:
            raise FileChangedError(f"{relpath!r} was replaced after it was hashed")
        return run_extractor(extractor, Source(Path(f"/proc/self/fd/{fd}"), name, root / parent), seconds)
    finally:
        os.close(fd)
