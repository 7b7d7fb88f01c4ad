"""Extractors that must not run inside the agent: native parsers in worker processes, with hard limits.

A parser written in C (libhdf5, under h5py) reads bytes that anyone may have shaped, with no safety
net: a damaged file can crash the process (SIGSEGV) or loop while holding the GIL, where no time
limit of a thread reaches it. An extractor whose class says ``isolated = True`` therefore runs in a
worker process (worker.py), from a small pool reused from file to file, each worker with

- an address-space limit (RLIMIT_AS) and no core dumps, set before it reads any file;
- a CPU-time limit per file (RLIMIT_CPU): past it, the kernel ends the worker;
- a wall-clock limit per file, kept here: past it, the worker is killed.

A crash, a limit or a hang ends that worker only: the file gets an ExtractionError that says what
happened (a terminal dead letter, not tried again until the file changes) and the next file gets a
fresh worker. The file travels as an open descriptor (SCM_RIGHTS), so the worker reads the very
file the agent hashed, and needs no permission of its own to open it.
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
from pathlib import Path
from typing import Any

from ..core.errors import AbortedError
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


def is_isolated(extractor: Extractor) -> bool:
    return bool(getattr(extractor, "isolated", False))


def send_message(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message, ensure_ascii=False).encode("utf-8")
    payload = HEADER.pack(len(data)) + data
    if fds:
        # The descriptor travels with the first byte, so it never arrives without its request.
        socket.send_fds(sock, [payload[:1]], fds)
        payload = payload[1:]
    sock.sendall(payload)


def receive_message(sock: socket.socket, *, with_fd: bool = False) -> tuple[dict[str, Any], int | None]:
    """The next message, and the descriptor that came with it; EOFError when the peer is gone."""
    fd = None
    if with_fd:
        first, fds, _, _ = socket.recv_fds(sock, 1, 1)
        if not first:
            raise EOFError
        fd = fds[0] if fds else None
        head = first + _receive_exactly(sock, HEADER.size - 1)
    else:
        head = _receive_exactly(sock, HEADER.size)
    (size,) = HEADER.unpack(head)
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"a message of {size} bytes is more than the {MAX_MESSAGE_BYTES} allowed")
    value = json.loads(_receive_exactly(sock, size))
    if not isinstance(value, dict):
        raise ValueError("a message is not a JSON object")
    return value, fd


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
                # numpy (under h5py) would reserve address space for a thread per core.
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            )
        finally:
            theirs.close()
        self.sock = mine

    def kill(self) -> int:
        """End the worker; its exit status (negative: the signal that ended it)."""
        if self.process.poll() is None:
            self.process.kill()
        self.sock.close()
        return self.process.wait()


class IsolatedParsers:
    """The pool of worker processes; ``extract`` is blocking and safe to call from many threads."""

    def __init__(self, size: int, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False

    def extract(self, extractor: Extractor, fd: int, name: str, folder: Path, seconds: float) -> Metadata:
        """The extractor's metadata for the open file ``fd``, read in a worker process."""
        with self._slots:
            worker = self._take()
            try:
                metadata = self._ask(worker, extractor, fd, name, folder, seconds)
            except BaseException:
                worker.kill()
                raise
            self._give_back(worker)
            return metadata

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
        self, worker: _Worker, extractor: Extractor, fd: int, name: str, folder: Path, seconds: float
    ) -> Metadata:
        kind = type(extractor)
        request = {
            "extractor": f"{kind.__module__}:{kind.__qualname__}",
            "name": name,
            "folder": str(folder),
            "seconds": seconds,
            "cpu_seconds": seconds,
        }
        try:
            send_message(worker.sock, request, [fd])
            worker.sock.settimeout(seconds + GRACE_S)
            reply, _ = receive_message(worker.sock)
        except TimeoutError:
            worker.kill()
            raise ExtractionTimeout(
                f"reading the metadata of {name!r} took longer than {seconds:.0f} s; the {extractor.name} "
                "parser was stopped"
            ) from None
        except (EOFError, OSError):
            raise self._ended(worker, extractor, name) from None
        except ValueError as exc:
            raise ExtractionError(
                f"the {extractor.name} parser gave no usable answer for {name!r}: {exc}"
            ) from None
        if "error" in reply:
            raise _ERRORS.get(str(reply["error"]), ExtractionError)(str(reply.get("message", "")))
        metadata = reply.get("metadata")
        if not isinstance(metadata, dict):
            raise ExtractionError(f"the {extractor.name} parser gave no metadata for {name!r}")
        return metadata

    def _ended(self, worker: _Worker, extractor: Extractor, name: str) -> ParserCrashedError:
        status = worker.kill()
        if status == -signal.SIGXCPU:
            why = "used more CPU time than it may"
        elif status < 0:
            why = f"crashed ({_signal_name(-status)})"
        else:
            why = f"stopped with exit status {status}"
        limit = f"{self.memory_bytes / 2**20:.0f} MiB"
        return ParserCrashedError(
            f"the {extractor.name} parser {why} while reading {name!r} (its memory limit is {limit})"
        )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
