"""Extractors run outside the agent: in worker processes, with hard limits.

Two reasons. A parser written in C (libhdf5, under h5py) reads bytes that anyone may have shaped,
with no safety net: a damaged file can crash the process (SIGSEGV) or loop while holding the GIL,
where no time limit of a thread reaches it. And the agent's pipeline runs under one GIL: reading
metadata in other processes puts the other cores to work (small CSV exports: ~2x the files per
second on two cores). So every extractor runs in a worker process (worker.py), from a small pool
reused from file to file, each worker with

- an address-space limit (RLIMIT_AS) and no core dumps, set before it reads any file;
- a CPU-time limit for each request (RLIMIT_CPU): past it, the kernel ends the worker;
- a wall-clock limit per file, kept here: past it, the worker is killed.

A request carries a group of files (their descriptors travel with it, SCM_RIGHTS, so the worker
reads the very files the agent hashed and needs no permission of its own); the worker answers each
in order. A crash, a limit or a hang ends that worker only: the file it was reading
gets an ExtractionError that says what happened (the file keeps its generic description), and the
files after it go to a fresh worker.

Replies of quick files travel together, a few milliseconds' worth at a time: one for each 4 KiB
table woke the agent's thread, which then took the GIL from the event loop, a quarter of the
context switches of a scan of small tables and 30 µs of CPU a file. Only files read by an
extractor whose class says it is ``crash_free`` (the built-in ones but HDF5's) travel together:
their replies wait only while another such file is read; before any other file is read, they are
sent, and its own reply goes at once. So a crash of a parser that may crash is pinned on its file
as before. Should a crash-free extractor end its worker all the same (its bug) while replies are
held back, which file ended it is not known: the files not answered are asked again one at a
time on a fresh worker, where the file that fails fails alone (a second time limit, counted in
``most_reads``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ..core import jsontext
from ..core.errors import AbortedError
from ..core.records import DERIVED_TABLE
from .base import (
    ExtractionError,
    ExtractionTimeout,
    Extractor,
    Metadata,
    UnsafeArchiveError,
    UnsafeInputError,
)

WORKER_MODULE = "agent.extractors.worker"
#: Past the extractor's own time limit, how long the worker has to answer before it is killed.
GRACE_S = 2.0
#: Length prefix of every message: a 4-byte unsigned big-endian integer.
HEADER = struct.Struct(">I")
#: A reply larger than this is refused (metadata is bounded long before that).
MAX_MESSAGE_BYTES = 64 << 20
#: Files per request: their descriptors travel in one message (the kernel allows 253).
MAX_FILES_PER_REQUEST = 64
#: A worker holds the replies of quick files until it has spent this long on them, then sends them
#: together (see worker.serve and IsolatedParsers._ask).
TOGETHER_S = 0.005
_ERRORS: dict[str, type[ExtractionError]] = {
    cls.__name__: cls for cls in (ExtractionError, UnsafeInputError, UnsafeArchiveError, ExtractionTimeout)
}


class ParserCrashedError(ExtractionError):
    """A native parser ended its worker process (a crash, or a memory or CPU limit) on this file."""

    advice = (
        "The file made its format's parser fail. If it does not open in the vendor's software either, "
        "export it again from the instrument; if it does, send it to the data manager: the parser "
        "may have a bug. The agent reads it again when the file changes."
    )


def encode_message(message: dict[str, Any]) -> bytes:
    """A message as it travels: its length, then its JSON."""
    try:
        data = orjson.dumps(message)
    except TypeError:  # lone surrogates (names that are not UTF-8), huge integers: escaped
        data = json.dumps(message).encode("ascii")
    return HEADER.pack(len(data)) + data


def send_message(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    payload = encode_message(message)
    if fds:
        # The descriptor travels with the first byte, so it never arrives without its request.
        socket.send_fds(sock, [payload[:1]], fds)
        payload = payload[1:]
    sock.sendall(payload)


def receive_message(sock: socket.socket, *, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """The next message, and the descriptors that came with it; EOFError when the peer is gone."""
    fds: list[int] = []
    if max_fds:
        first, fds, _, _ = socket.recv_fds(sock, 1, max_fds)
        if not first:
            raise EOFError
        head = first + _receive_exactly(sock, HEADER.size - 1)
    else:
        head = _receive_exactly(sock, HEADER.size)
    (size,) = HEADER.unpack(head)
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"a message of {size} bytes is more than the {MAX_MESSAGE_BYTES} allowed")
    return _decode(_receive_exactly(sock, size)), fds


def read_message(reader: BinaryIO) -> dict[str, Any]:
    """The next message from a buffered reader of the socket: replies that arrive together are
    read in one system call. EOFError when the peer is gone."""
    head = reader.read(HEADER.size)
    if len(head) < HEADER.size:
        raise EOFError
    (size,) = HEADER.unpack(head)
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"a message of {size} bytes is more than the {MAX_MESSAGE_BYTES} allowed")
    data = reader.read(size)
    if len(data) < size:
        raise EOFError
    return _decode(data)


def _decode(data: bytes) -> dict[str, Any]:
    value = jsontext.loads(data)  # the standard library's escapes too (see encode_message)
    if not isinstance(value, dict):
        raise ValueError("a message is not a JSON object")
    return value


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _Worker:
    def __init__(self, memory_bytes: int) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", WORKER_MODULE, str(theirs.fileno()), str(memory_bytes)],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                # numpy (under h5py) would reserve address space for a thread per core; pyarrow's
                # default allocator (mimalloc) keeps what a derived table's chunks freed.
                env={
                    **os.environ,
                    "OPENBLAS_NUM_THREADS": "1",
                    "OMP_NUM_THREADS": "1",
                    "ARROW_DEFAULT_MEMORY_POOL": "system",
                },
            )
        finally:
            theirs.close()
        self.sock = mine
        self.replies = mine.makefile("rb")

    def kill(self) -> int:
        """End the worker; its exit status (negative: the signal that ended it)."""
        if self.process.poll() is None:
            self.process.kill()
        self.replies.close()
        self.sock.close()
        return self.process.wait()


@dataclass(frozen=True, slots=True)
class OpenFile:
    """A file to read in a worker: its extractor, its open descriptor, its name and folder; and,
    for a derived table, what its rule asks (``derive``) and the open temp file to write it to."""

    extractor: Extractor
    fd: int
    name: str
    folder: Path
    derive: dict[str, Any] | None = None
    out_fd: int | None = None

    @property
    def passes(self) -> int:
        """Reads the worker makes of the file, each with the time limit: metadata, derived table."""
        return 2 if self.derive is not None else 1


def travels_together(extractor: Extractor, derive: object | None) -> bool:
    """Whether a file's reply may wait in the worker with others, and others' while it is read: its
    extractor's own class promises that reading cannot end the worker (``crash_free``: a subclass,
    which may call native code of its own, does not inherit the promise), and the file is read once
    (a derived table's file may take two time limits, and a reply waits for one)."""
    return derive is None and vars(type(extractor)).get("crash_free") is True


def most_reads(extractor: Extractor, derive: object | None) -> int:
    """How many time limits a file may take at most: a derived table's file is read twice; a file
    that travels together may be asked again alone (see _AskAgainOneByOne)."""
    return 2 if derive is not None or travels_together(extractor, derive) else 1


class _AskAgainOneByOne(Exception):
    """A worker that sent its replies together failed: which file ended it is not known."""

    def __init__(self, answered: list[Metadata | Exception]) -> None:
        super().__init__()
        self.answered = answered


class IsolatedParsers:
    """The pool of worker processes; ``extract_group`` is blocking and safe to call from many threads."""

    def __init__(self, size: int, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False

    def extract(self, extractor: Extractor, fd: int, name: str, folder: Path, seconds: float) -> Metadata:
        """The extractor's metadata for the open file ``fd``, read in a worker process."""
        (result,) = self.extract_group([OpenFile(extractor, fd, name, folder)], seconds)
        if isinstance(result, Exception):
            raise result
        return result

    def extract_group(self, files: Sequence[OpenFile], seconds: float) -> list[Metadata | Exception]:
        """Each file's metadata, or the ExtractionError saying why there is none, read by one worker
        (one request for the group; replies in order, quick files' several at a time).

        Each file has its own limits. A file that crashes or outlasts its worker ends that worker:
        it gets its error, and the files after it go to a fresh worker.
        """
        results: list[Metadata | Exception] = []
        left = list(files)
        while left:
            chunk, left = left[:MAX_FILES_PER_REQUEST], left[MAX_FILES_PER_REQUEST:]
            done = self._group(chunk, seconds)
            results += done
            left = chunk[len(done) :] + left
        return results

    def _group(self, files: list[OpenFile], seconds: float) -> list[Metadata | Exception]:
        """Replies for a prefix of ``files`` (all of them unless the worker ended on one)."""
        with self._slots:
            worker = self._take()
            try:
                try:
                    results = self._ask(worker, files, seconds, together=True)
                except (BrokenPipeError, ConnectionResetError):
                    # Gone while idle (the kernel's OOM killer, an administrator): not these files.
                    worker.kill()
                    worker = _Worker(self.memory_bytes)
                    results = self._ask(worker, files, seconds, together=True)
            except _AskAgainOneByOne as unsure:
                worker = _Worker(self.memory_bytes)
                try:
                    rest = files[len(unsure.answered) :]
                    results = unsure.answered + self._ask(worker, rest, seconds, together=False)
                except BaseException:
                    worker.kill()
                    raise
            except BaseException:
                worker.kill()
                raise
            if len(results) == len(files):
                self._give_back(worker)
            return results

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise AbortedError("the agent is shutting down")
            while self._idle:
                worker = self._idle.pop()
                if worker.process.poll() is None:
                    return worker
                worker.kill()
        return _Worker(self.memory_bytes)

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
        worker.kill()

    def _ask(
        self, worker: _Worker, files: list[OpenFile], seconds: float, *, together: bool
    ) -> list[Metadata | Exception]:
        """Each file's result, up to and including the first file that ended the worker. With
        ``together``, files that travel together may have their replies held back and sent several
        at once: a worker that ends while one is held is killed and _AskAgainOneByOne raised
        instead, with the results before it."""
        holds = [together and travels_together(f.extractor, f.derive) for f in files]
        request = {
            "files": [
                {
                    "extractor": _spec(f.extractor),
                    "name": f.name,
                    "folder": str(f.folder),
                    "derive": f.derive,
                    "together": hold,
                }
                for f, hold in zip(files, holds, strict=True)
            ],
            "seconds": seconds,
            # The worker's CPU limit is set once for the group: each file's passes count.
            "cpu_seconds": seconds * sum(f.passes for f in files) / len(files),
        }
        outputs = [f.out_fd for f in files if f.derive is not None and f.out_fd is not None]
        send_message(worker.sock, request, [f.fd for f in files] + outputs)

        def unsure_after(index: int) -> bool:
            # Whether the worker may have gone on to the next file with this one's reply held
            # back: then a failure cannot be pinned on this file. (The worker's rule, in serve.)
            return holds[index] and index + 1 < len(files) and holds[index + 1]

        results: list[Metadata | Exception] = []
        for index, f in enumerate(files):
            if self._closed:  # the agent is stopping: the rest of the group waits for its next start
                worker.kill()
                raise AbortedError("the agent is shutting down")
            try:
                # Each file's time counts from the reply before it: the worker reads them in order.
                # Set only when it changes: setting it is a system call (ioctl), which hands the
                # GIL over to the event loop and back, for every file.
                timeout = seconds * f.passes + GRACE_S
                if worker.sock.gettimeout() != timeout:
                    worker.sock.settimeout(timeout)
                reply = read_message(worker.replies)
            except (TimeoutError, EOFError, OSError, ValueError) as exc:
                if unsure_after(index):
                    worker.kill()
                    raise _AskAgainOneByOne(results) from None
                results.append(self._failed(worker, f, exc, seconds))
                return results
            if reply.get("index") != index:
                # Not this file's answer (an extractor that wrote to the channel): the worker's
                # replies can no longer be matched to files. The files from here go to a fresh
                # worker; the file that does it there first fails alone.
                worker.kill()
                if unsure_after(index):
                    raise _AskAgainOneByOne(results)
                if index == 0:
                    results.append(
                        ExtractionError(
                            f"the {f.extractor.name} extractor wrote into the agent's channel while "
                            f"reading {f.name!r}"
                        )
                    )
                return results
            results.append(_result(reply, f))
        return results

    def _failed(self, worker: _Worker, f: OpenFile, exc: Exception, seconds: float) -> ExtractionError:
        """What the file that ended its worker gets, by how its reply failed to come; the worker is
        ended here (if it has not ended itself)."""
        status = worker.kill()
        if isinstance(exc, TimeoutError):
            return ExtractionTimeout(
                f"reading the metadata of {f.name!r} took longer than {seconds:.0f} s; the "
                f"{f.extractor.name} parser was stopped"
            )
        if isinstance(exc, ValueError):
            return ExtractionError(
                f"the {f.extractor.name} parser gave no usable answer for {f.name!r}: {exc}"
            )
        if status == -signal.SIGXCPU:
            why = "used more CPU time than it may"
        elif status < 0:
            why = f"crashed ({_signal_name(-status)})"
        else:
            why = f"stopped with exit status {status}"
        limit = f"{self.memory_bytes / 2**20:.0f} MiB"
        return ParserCrashedError(
            f"the {f.extractor.name} parser {why} while reading {f.name!r} (its memory limit is {limit})"
        )


def _spec(extractor: Extractor) -> str:
    """How a worker finds the extractor: ``module:Class``, made there with no arguments."""
    kind = type(extractor)
    return f"{kind.__module__}:{kind.__qualname__}"


def _result(reply: dict[str, Any], f: OpenFile) -> Metadata | Exception:
    if "error" in reply:
        return _ERRORS.get(str(reply["error"]), ExtractionError)(str(reply.get("message", "")))
    metadata = reply.get("metadata")
    if not isinstance(metadata, dict):
        return ExtractionError(f"the {f.extractor.name} parser gave no metadata for {f.name!r}")
    if isinstance(reply.get("derived"), dict):
        metadata[DERIVED_TABLE] = reply["derived"]
    return metadata


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
