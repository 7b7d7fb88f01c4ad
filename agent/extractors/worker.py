"""A worker process for extractors that must not run inside the agent (``python -m`` this module).

It reads requests from the socket it was given (see isolation.py), one at a time: an extractor to
use, the file as an open descriptor, the time allowed. Before it reads anything it limits its own
address space, forbids core dumps, and before each file it sets the CPU time that file may take.
A crash, a memory or CPU limit, or a hang ends this process only; the agent starts another.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import os
import resource
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..core import collector
from . import run_derive, run_extractor
from .base import ExtractionError, Extractor, Source
from .isolation import MAX_FILES_PER_REQUEST, TOGETHER_S, encode_message, receive_message

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _load(spec: str, loaded: dict[str, Extractor]) -> Extractor:
    """``module:Class`` of an extractor, instantiated once per worker."""
    if spec not in loaded:
        module, _, name = spec.partition(":")
        loaded[spec] = getattr(importlib.import_module(module), name)()
    return loaded[spec]


#: The paths of a worker's sources: the same few descriptor numbers and session folders, file after
#: file. Building two Paths was 2% of a small CSV's time in the worker; a Path never changes.
_path = functools.lru_cache(maxsize=256)(Path)


def _limit_cpu(seconds: float) -> None:
    # RLIMIT_CPU counts the process's whole life: allow what was used so far, plus this file's share.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(used + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def serve(sock: socket.socket) -> None:
    loaded: dict[str, Extractor] = {}
    while True:
        try:
            request, fds = receive_message(sock, max_fds=2 * MAX_FILES_PER_REQUEST)
        except EOFError:
            return
        files = request.get("files", [])
        # The agent stops a file that outlasts its time; this CPU limit is the kernel's backstop,
        # set once for the group (a setrlimit per file cost a fifth of a small file's reading).
        _limit_cpu(float(request["cpu_seconds"]) * max(1, len(files)))
        # The descriptors of the derived tables to write follow those of the files to read.
        outputs = iter(fds[len(files) :])
        # A reply per file: the agent times each file on its own. The replies of files marked
        # "together" (quick, and read by an extractor that cannot end this process) may wait until
        # TOGETHER_S were spent on them and go in one write; before any other file is read, and
        # with its own reply, they are sent. So a reply waits only while a file that cannot lose
        # it is read, and a file that may end this process is always the one not answered. A
        # reply waits encoded: the extractor's metadata is not copied (bounds.bound), and what an
        # extractor changes while it reads the next file must not change a reply already made.
        held: list[bytes] = []
        held_since = 0.0
        try:
            for number, file in enumerate(files):
                fd = fds[number] if number < len(fds) else None
                out_fd = next(outputs, None) if file.get("derive") else None
                together = bool(file.get("together"))
                if not together:
                    _flush(sock, held)
                if not held:
                    held_since = time.monotonic()
                held.append(encode_message({"index": number, **_read(file, fd, out_fd, request, loaded)}))
                if not together or time.monotonic() - held_since >= TOGETHER_S:
                    _flush(sock, held)
            _flush(sock, held)
        finally:
            for fd in fds:
                os.close(fd)


def _flush(sock: socket.socket, replies: list[bytes]) -> None:
    if replies:
        sock.sendall(b"".join(replies))
        replies.clear()


def _read(
    file: dict[str, Any],
    fd: int | None,
    out_fd: int | None,
    request: dict[str, Any],
    loaded: dict[str, Extractor],
) -> dict[str, Any]:
    try:
        if fd is None:
            raise ExtractionError("the agent sent no file")
        try:
            extractor = _load(file["extractor"], loaded)
        except Exception as exc:  # a site's plug-in that does not import here
            raise ExtractionError(f"the extractor {file['extractor']} could not be loaded: {exc}") from None
        source = Source(_path(f"/proc/self/fd/{fd}"), file["name"], _path(file["folder"]), fd)
        metadata = run_extractor(extractor, source, float(request["seconds"]))
    except ExtractionError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    reply: dict[str, Any] = {"metadata": metadata}
    if file.get("derive") is not None:
        reply["derived"] = run_derive(source, file["derive"], out_fd, metadata, float(request["seconds"]))
    return reply


def main(argv: list[str]) -> None:
    sock_fd, memory_bytes = int(argv[0]), int(argv[1])
    # Ended by the agent alone: a stopping service's SIGTERM (sent to its whole cgroup) or a
    # terminal's Ctrl-C must not fail the file in hand. When the agent is gone, so is the worker:
    # its socket closes, and if it is busy, the kernel ends it (PR_SET_PDEATHSIG).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the agent died before the line above
        return
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # A crash must not leave core files of instrument data behind.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    collector.settle()
    serve(socket.socket(fileno=sock_fd))


if __name__ == "__main__":
    main(sys.argv[1:])
