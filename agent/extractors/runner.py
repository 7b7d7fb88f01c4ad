"""The extraction stage: format detection for every file, and an extractor's metadata where one fits.

Detection works on the first bytes the hasher already read. Extractors run in their own threads
(at most one per core, so a burst of large tables cannot exhaust memory), each on the very file
that was hashed: the file is opened without following links (safepath), checked to be the same
inode, and handed over as /proc/self/fd/N. Each has a time limit: cooperatively inside, and here
as a backstop. Extractors of native code (``isolated = True``: HDF5) read in worker processes with
hard limits instead (see isolation), so that no file can crash or freeze the agent.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import AgentConfig
from ..core.errors import FileChangedError, FileVanishedError
from ..core.records import EXTRACTION_FAILURE
from ..fs.safepath import open_dir_beneath, split
from . import (
    ExtractionError,
    ExtractionTimeout,
    Extractor,
    Metadata,
    Source,
    UnsafeInputError,
    choose,
    detect,
    load_extractors,
    run_extractor,
)
from .generic import Detected
from .isolation import IsolatedParsers, is_isolated


@dataclass(frozen=True, slots=True)
class Wanted:
    """A file whose metadata is wanted: the one hashed (this inode), the first bytes the hasher read,
    and the extractor its rule names ("auto", "none" or a name)."""

    relpath: str
    head: bytes
    inode: int
    choice: str = "auto"


class MetadataReader:
    def __init__(
        self,
        threads: int,
        seconds: float,
        extractors: list[Extractor] | None = None,
        *,
        isolated_memory_bytes: int = 1 << 30,
    ) -> None:
        self.extractors = load_extractors() if extractors is None else extractors
        self.seconds = seconds
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fair-extract")
        # Worker processes for native parsers: started on first use, one per thread at most.
        self.isolated = IsolatedParsers(threads, isolated_memory_bytes)
        # The time limit starts when a file gets a thread, not while it queues for one.
        self._slots = asyncio.Semaphore(threads)

    @classmethod
    def from_config(cls, config: AgentConfig) -> MetadataReader:
        return cls(
            config.hash_threads,
            config.extract_timeout_s,
            isolated_memory_bytes=config.extract_memory_mb << 20,
        )

    def detect(self, relpath: str, head: bytes) -> Detected:
        return detect(relpath.rsplit("/", 1)[-1], head)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.extractors]

    def chosen(self, relpath: str, head: bytes, choice: str = "auto") -> Extractor | None:
        """The extractor that reads this file. ``choice``: "auto" (by file type), "none", or an
        extractor's name (a rule's say)."""
        if choice == "auto":
            return choose(self.extractors, relpath.rsplit("/", 1)[-1], head)
        return next((e for e in self.extractors if e.name == choice), None)

    async def read(self, root: Path, relpath: str, head: bytes, inode: int, choice: str = "auto") -> Metadata:
        """The metadata of one file (the one hashed, with this inode) by the extractor chosen for it;
        {} when there is none.

        An extractor's failure is returned, not raised (see ``failure``): the file keeps its generic
        description. Content refused for safety (UnsafeInputError) and a file that vanished or
        changed are raised.
        """
        (result,) = await self.read_group(root, [Wanted(relpath, head, inode, choice)])
        if isinstance(result, Exception):
            raise result
        return result

    async def read_group(self, root: Path, files: Sequence[Wanted]) -> list[Metadata | Exception]:
        """Each file's metadata as ``read`` gives it, or the error ``read`` would raise.

        The files an in-process extractor reads are read in one thread hand-off: for small files
        the hand-offs cost more than the reading. Files without an extractor cost nothing; isolated
        extractors (native code) read one file at a time in their worker processes.
        """
        chosen = [self.chosen(f.relpath, f.head, f.choice) for f in files]
        results: list[Metadata | Exception] = [{} for _ in files]
        together = [(i, e) for i, e in enumerate(chosen) if e is not None and not is_isolated(e)]
        if together:
            read = await self._in_thread(root, [(e, files[i]) for i, e in together])
            for (i, _), result in zip(together, read, strict=True):
                results[i] = result
        for i, extractor in enumerate(chosen):
            if extractor is not None and is_isolated(extractor):
                (results[i],) = await self._in_thread(root, [(extractor, files[i])])
        return results

    async def _in_thread(
        self, root: Path, files: list[tuple[Extractor, Wanted]]
    ) -> list[Metadata | Exception]:
        loop = asyncio.get_running_loop()
        async with self._slots:
            work = loop.run_in_executor(self._executor, self._extract_each, root, files)
            try:
                # Each file has its own cooperative limit; this is the backstop if one does not
                # keep to it.
                return await asyncio.wait_for(work, self.seconds * len(files) + 5)
            except TimeoutError:
                what = repr(files[0][1].relpath) if len(files) == 1 else f"{len(files)} files"
                limit = f"{self.seconds:.0f} s" + (" each" if len(files) > 1 else "")
                error = ExtractionTimeout(f"reading the metadata of {what} took longer than {limit}")
                return [failure(extractor.name, error) for extractor, _ in files]

    def _extract_each(self, root: Path, files: list[tuple[Extractor, Wanted]]) -> list[Metadata | Exception]:
        """In an extraction thread: each file's metadata or its error (see ``read``)."""
        results: list[Metadata | Exception] = []
        for extractor, wanted in files:
            try:
                results.append(self._extract(extractor, root, wanted.relpath, wanted.inode))
            except UnsafeInputError as exc:
                results.append(exc)
            except ExtractionError as exc:
                results.append(failure(extractor.name, exc))
            except Exception as exc:  # vanished, changed since hashed, shutting down
                results.append(exc)
        return results

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.isolated.close()

    def _extract(self, extractor: Extractor, root: Path, relpath: str, inode: int) -> dict[str, Any]:
        """In an extraction thread: the file opened as it was hashed, read in this process or in
        a worker process (an isolated extractor)."""
        fd = _open_hashed(root, relpath, inode)
        parent, name = split(relpath)
        try:
            if is_isolated(extractor):
                return self.isolated.extract(extractor, fd, name, root / parent, self.seconds)
            return run_extractor(
                extractor, Source(Path(f"/proc/self/fd/{fd}"), name, root / parent), self.seconds
            )
        finally:
            os.close(fd)


def failure(extractor: str, error: ExtractionError) -> Metadata:
    """The metadata of a file its extractor could not read: which extractor, and why."""
    return {
        EXTRACTION_FAILURE: {"extractor": extractor, "error": type(error).__name__, "message": str(error)}
    }


def _open_hashed(root: Path, relpath: str, inode: int) -> int:
    """The file at ``relpath``, opened without following links, if it is still the one hashed."""
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
    except BaseException:
        os.close(fd)
        raise
    return fd
