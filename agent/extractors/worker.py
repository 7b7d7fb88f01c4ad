"""A worker process for extractors that must not run inside the agent (``python -m`` this module).

It reads requests from the socket it was given (see isolation.py), one at a time: an extractor to
use, the file as an open descriptor, the time allowed. Before it reads anything it limits its own
address space, forbids core dumps, and before each file it sets the CPU time that file may take.
A crash, a memory or CPU limit, or a hang ends this process only; the agent starts another.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import resource
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from . import run_extractor
from .base import ExtractionError, Extractor, Source
from .isolation import receive_message, send_message

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _load(spec: str, loaded: dict[str, Extractor]) -> Extractor:
    """``module:Class`` of an extractor, instantiated once per worker."""
    if spec not in loaded:
        module, _, name = spec.partition(":")
        loaded[spec] = getattr(importlib.import_module(module), name)()
    return loaded[spec]


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
            request, fd = receive_message(sock, with_fd=True)
        except EOFError:
            return
        try:
            if fd is None:
                raise ExtractionError("the agent sent no file")
            _limit_cpu(float(request["cpu_seconds"]))
            extractor = _load(request["extractor"], loaded)
            source = Source(Path(f"/proc/self/fd/{fd}"), request["name"], Path(request["folder"]))
            reply: dict[str, Any] = {"metadata": run_extractor(extractor, source, float(request["seconds"]))}
        except ExtractionError as exc:
            reply = {"error": type(exc).__name__, "message": str(exc)}
        finally:
            if fd is not None:
                os.close(fd)
        send_message(sock, reply)


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
    serve(socket.socket(fileno=sock_fd))


if __name__ == "__main__":
    main(sys.argv[1:])
