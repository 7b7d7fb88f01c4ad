"""The extraction stage: format detection for every file, and an extractor's metadata where one fits.

Detection works on the first bytes the hasher already read. Extractors run in worker processes
(see isolation), at most one per core, each with hard limits of memory and time, so that no file
can crash or freeze the agent, and so that reading metadata uses the cores the agent's own
interpreter (one at a time, under its GIL) cannot. Each reads the very file that was hashed: the
file is opened here without following links (safepath), checked to be the same inode, and its
descriptor is handed to the worker. Files go to a worker in groups, one request per group: for
small files the round trip would cost more than the reading.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..core.config import AgentConfig
from ..core.errors import FileChangedError, FileReadError, FileVanishedError
from ..core.records import DERIVED_TABLE, EXTRACTION_FAILURE
from ..fs.derived import discard_derived_temp, open_derived_temp
from ..fs.safepath import open_dir_beneath, split
from . import (
    ExtractionError,
    ExtractionTimeout,
    Extractor,
    Metadata,
    UnsafeInputError,
    choose,
    detect,
    load_extractors,
)
from .generic import Detected
from .isolation import IsolatedParsers, OpenFile, most_reads


@dataclass(frozen=True, slots=True)
class DeriveRequest:
    """A derived table to make of a file: its rule's [transform] (as JSON), in which format, and the
    provenance the table carries."""

    spec: dict[str, Any]
    format: str
    provenance: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Wanted:
    """A file whose metadata is wanted: the one hashed (this inode), the first bytes the hasher read,
    the extractor its rule names ("auto", "none" or a name), and the derived table its rule asks for."""

    relpath: str
    head: bytes
    inode: int
    choice: str = "auto"
    derive: DeriveRequest | None = None


class MetadataReader:
    def __init__(
        self,
        threads: int,
        seconds: float,
        extractors: list[Extractor] | None = None,
        *,
        worker_memory_bytes: int = 1 << 30,
    ) -> None:
        self.extractors = load_extractors() if extractors is None else extractors
        self.seconds = seconds
        # A thread per worker process waits on it; the processes start on first use.
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fair-extract")
        self.workers = IsolatedParsers(threads, worker_memory_bytes)
        # The time limit starts when a group gets a worker, not while it queues for one.
        self._slots = asyncio.Semaphore(threads)

    @classmethod
    def from_config(cls, config: AgentConfig) -> MetadataReader:
        return cls(
            config.hash_threads,
            config.extract_timeout_s,
            worker_memory_bytes=config.extract_memory_mb << 20,
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
        """Each file's metadata as ``read`` gives it, or the error ``read`` would raise; the files
        an extractor claims are read by one worker, in one request. Files without one cost nothing."""
        results: list[Metadata | Exception] = [{} for _ in files]
        chosen: list[Extractor | None] = []
        for i, f in enumerate(files):
            try:
                chosen.append(self.chosen(f.relpath, f.head, f.choice))
            except Exception as exc:  # a plug-in's accepts() that fails: this file's error only
                results[i] = exc
                chosen.append(None)
        claimed = [(i, e) for i, e in enumerate(chosen) if e is not None]
        if claimed:
            read = await self._in_worker(root, [(e, files[i]) for i, e in claimed])
            for (i, _), result in zip(claimed, read, strict=True):
                results[i] = result
        return results

    async def _in_worker(
        self, root: Path, files: list[tuple[Extractor, Wanted]]
    ) -> list[Metadata | Exception]:
        loop = asyncio.get_running_loop()
        # Each file is read once for its metadata, and once more for a derived table (or when it
        # is asked again alone).
        reads = sum(most_reads(extractor, wanted.derive) for extractor, wanted in files)
        async with self._slots:
            work = loop.run_in_executor(self._executor, self._extract_group, root, files)
            try:
                # The worker is stopped at each file's limit; this is the backstop should that fail.
                done, _ = await asyncio.wait({work}, timeout=(self.seconds + 5) * reads)
            except asyncio.CancelledError:
                work.add_done_callback(partial(_discard_uncollected, root, files))
                raise
            if done:
                return work.result()
            # Left to finish on its own: the derived tables it makes are not placed.
            work.add_done_callback(partial(_discard_uncollected, root, files))
            what = repr(files[0][1].relpath) if len(files) == 1 else f"{len(files)} files"
            limit = f"{self.seconds:.0f} s" + (" each" if len(files) > 1 else "")
            error = ExtractionTimeout(f"reading the metadata of {what} took longer than {limit}")
            return [failure(extractor.name, error) for extractor, _ in files]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.workers.close()

    def _extract_group(self, root: Path, files: list[tuple[Extractor, Wanted]]) -> list[Metadata | Exception]:
        """In a thread, waiting on a worker: each file opened as it was hashed, then read. An
        extractor's failure becomes the file's failure metadata (see ``read``)."""
        results: list[Metadata | Exception | None] = [None] * len(files)
        opened: list[tuple[int, OpenFile]] = []
        temps: dict[int, str] = {}  # the derived tables' temp files, by file
        unmade: dict[int, str] = {}  # why a derived table could not even be started
        try:
            folders: dict[str, int] = {}  # each folder opened once per group, as the hasher does
            try:
                for i, (extractor, wanted) in enumerate(files):
                    parent, name = split(wanted.relpath)
                    try:
                        fd = _open_hashed(root, wanted.relpath, wanted.inode, folders)
                    except Exception as exc:  # vanished, replaced, unreachable
                        results[i] = _as_result(extractor, exc)
                        continue
                    derive, out_fd = None, None
                    if wanted.derive is not None:
                        try:
                            out_fd, temps[i] = open_derived_temp(root, wanted.relpath, wanted.derive.format)
                            derive = {"spec": wanted.derive.spec, "provenance": wanted.derive.provenance}
                        except OSError as exc:
                            unmade[i] = f"its temp file cannot be made: {exc.strerror}"
                    opened.append((i, OpenFile(extractor, fd, name, root / parent, derive, out_fd)))
            finally:  # the files are open: their folders are not needed any more
                for fd in folders.values():
                    os.close(fd)
            read = self.workers.extract_group([f for _, f in opened], self.seconds)
            for (i, f), result in zip(opened, read, strict=True):
                if isinstance(result, Exception):
                    results[i] = _as_result(f.extractor, result)
                    continue
                report = result.get(DERIVED_TABLE)
                if i in temps and isinstance(report, dict) and "sha256" in report:
                    result[DERIVED_TABLE] = {**report, "temp": temps.pop(i)}  # the pipeline places it
                elif i in unmade:
                    result[DERIVED_TABLE] = {"error": unmade[i]}
                results[i] = result
        except Exception as exc:  # the pool shut down under the group: every file, again later
            results = [r if r is not None else exc for r in results]
        finally:
            for _, f in opened:
                os.close(f.fd)
                if f.out_fd is not None:
                    os.close(f.out_fd)
            for i, temp in temps.items():  # derived tables that will not be placed
                discard_derived_temp(root, files[i][1].relpath, temp)
        return [r if r is not None else {} for r in results]


def _discard_uncollected(
    root: Path, files: list[tuple[Extractor, Wanted]], work: asyncio.Future[list[Metadata | Exception]]
) -> None:
    """Remove the temp files of derived tables in a group's results nobody will read."""
    if work.cancelled() or work.exception() is not None:
        return
    for (_, wanted), result in zip(files, work.result(), strict=True):
        report = result.get(DERIVED_TABLE) if isinstance(result, dict) else None
        if isinstance(report, dict) and "temp" in report:
            discard_derived_temp(root, wanted.relpath, str(report["temp"]))


def _as_result(extractor: Extractor, error: Exception) -> Metadata | Exception:
    """What ``read`` makes of an error: refusals for safety and changed files stay errors; an
    extractor that could not read the file gives its failure metadata."""
    if isinstance(error, ExtractionError) and not isinstance(error, UnsafeInputError):
        return failure(extractor.name, error)
    return error


def failure(extractor: str, error: ExtractionError) -> Metadata:
    """The metadata of a file its extractor could not read: which extractor, and why."""
    return {
        EXTRACTION_FAILURE: {"extractor": extractor, "error": type(error).__name__, "message": str(error)}
    }


def _open_hashed(root: Path, relpath: str, inode: int, folders: dict[str, int]) -> int:
    """The file at ``relpath``, opened without following links, if it is still the one hashed.
    ``folders``: the folders opened so far (by path below the root), kept open for the next file."""
    parent, name = split(relpath)
    try:
        if parent not in folders:
            folders[parent] = open_dir_beneath(root, parent)
        dir_fd = folders[parent]
    except OSError as exc:
        _raise_if_out_of_descriptors(exc, relpath)
        raise ExtractionError(f"cannot reach {relpath!r} to read its metadata: {exc.strerror}") from None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise FileVanishedError(f"{relpath!r} vanished before its metadata was read") from None
    except OSError as exc:
        _raise_if_out_of_descriptors(exc, relpath)
        raise ExtractionError(f"cannot open {relpath!r} to read its metadata: {exc.strerror}") from None
    try:
        if os.fstat(fd).st_ino != inode:
            raise FileChangedError(f"{relpath!r} was replaced after it was hashed")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _raise_if_out_of_descriptors(error: OSError, relpath: str) -> None:
    # The agent's limit of open files, not the file: a moment later it opens, so it is retried.
    if error.errno in (errno.EMFILE, errno.ENFILE):
        raise FileReadError(f"cannot open {relpath!r} to read its metadata: {error.strerror}") from None
