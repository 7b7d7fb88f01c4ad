"""The agent's child processes that share its work (a shared scan's: shards; a burst's: offload).

Both are ``python -P -m MODULE PARENT_PID``: their job pickled on standard input, their messages
on the standard output they were started with, their logs on standard error, out of the
terminal's process group (Ctrl-C reaches the parent, which stops them), and ended by the kernel
when the parent dies.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    json_lines: bool | None = None
    #: The parent logs on its standard output (the service does), and so do its children.
    on_stdout: bool = False


async def start(module: str, *, stderr: int | None, limit: int = 1 << 16) -> asyncio.subprocess.Process:
    """A child running ``module``, its standard input and output piped (``limit``: the longest
    line its output may be read in)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",  # the current folder is not searched for modules: only the agent's own
        "-m",
        module,
        str(os.getpid()),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        limit=limit,
        # Out of the terminal's process group: Ctrl-C reaches the parent alone, which asks each
        # child once (a second SIGINT would break into a child's own clean-up).
        process_group=0,
    )


def die_with_parent(parent: int) -> None:
    """In a child: SIGTERM from the kernel when the parent dies; none of this if it is already gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(1)


def take_standard_output(logging: LogSettings) -> int:
    """In a child that has read its job: the standard output it was started with, kept for its
    messages (a new descriptor); everything else that writes there goes to standard error, where
    it logs as ``logging`` says."""
    from ..core import collector
    from .logs import setup_logging

    messages = os.dup(1)
    os.dup2(2, 1)
    setup_logging(logging.level, stream=sys.stderr, json_lines=logging.json_lines)
    collector.settle()
    return messages


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
