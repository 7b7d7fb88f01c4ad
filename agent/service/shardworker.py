"""One process of a shared scan (see shards): ``python -m agent.service.shardworker PARENT_PID``.

Reads its ShardJob (pickled) on standard input, scans the units it claims with its own ledger
connection, and writes JSON lines on the standard output it was started with: progress
(``found``, ``advance``, a few a second at most) when the parent shows a bar, then its
``report``. Its logs go to standard error, as the parent's do; so does anything else that would
print, so that no stray line mixes with the messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

import orjson

from .children import die_with_parent, take_standard_output, write_all

if TYPE_CHECKING:
    from .shards import ShardJob

#: Progress is sent at most this often: the parent's bar needs no more.
PROGRESS_EVERY_S = 0.1


class _Messages:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def send(self, message: dict[str, object]) -> None:
        write_all(self._fd, orjson.dumps(message) + b"\n")


class _Progress:
    """Counts gathered, and sent every PROGRESS_EVERY_S (and at the end)."""

    def __init__(self, messages: _Messages) -> None:
        self._messages = messages
        self._found = [0, 0]
        self._advance = [0, 0]
        self._sent_at = 0.0

    def found(self, files: int, size: int) -> None:
        self._found[0] += files
        self._found[1] += size
        self._maybe_send()

    def advance(self, files: int, size: int) -> None:
        self._advance[0] += files
        self._advance[1] += size
        self._maybe_send()

    def _maybe_send(self) -> None:
        if time.monotonic() - self._sent_at >= PROGRESS_EVERY_S:
            self.flush()

    def flush(self) -> None:
        for name, counts in (("found", self._found), ("advance", self._advance)):
            if counts[0] or counts[1]:
                self._messages.send({name: list(counts)})
                counts[:] = [0, 0]
        self._sent_at = time.monotonic()


async def _scan(job: ShardJob, messages: _Messages) -> None:
    from ..ledger import Ledger
    from .scan import scan
    from .shards import Claims

    progress = _Progress(messages) if job.progress else None
    claims = Claims(job.claims, job.units)
    try:
        async with Ledger.open(job.config.ledger_path) as ledger:
            report = await scan(
                job.path,
                job.config,
                ledger,
                progress=progress,
                retry_dead=job.retry_dead,
                claim=claims.claim,
                started_ns=job.started_ns,
            )
    finally:
        claims.close()
    if progress is not None:
        progress.flush()
    messages.send({"report": dataclasses.asdict(report)})


def main() -> int:
    die_with_parent(int(sys.argv[1]))
    # The parent started this process with SIGINT blocked, so that a stop asked for while the
    # interpreter started stayed pending. From here it is noted, and ends this process quietly
    # before anything begins, until the scan's event loop takes SIGINT over.
    interrupts: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        interrupts.append(signum)

    signal.signal(signal.SIGINT, note)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    from ..core.errors import AgentError

    job: ShardJob = pickle.load(sys.stdin.buffer)
    messages = _Messages(take_standard_output(job.logging))
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if interrupts:
            return 130
        asyncio.run(_scan(job, messages))
    except KeyboardInterrupt:
        return 130  # the parent was interrupted too, and says what that means
    except AgentError as exc:
        print(f"fair-agent scan (one of its processes): error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
