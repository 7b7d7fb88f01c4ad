"""A burst shared with helper processes: the service's batches ingested in more than one process.

Why: the pipeline's own Python runs under one interpreter lock. In a burst of 50,000 small CSV
files the service's process used 0.95 of a core, its extraction workers 0.4, and the rest of a
two-core machine stayed idle; a scan of the same files shares them among processes (shards) and
was 1.7 times as fast.

So in a burst (FILES_PER_PROCESS files wait for a worker, or half the queue is taken: many small
sessions) the service starts a helper per other core (``python -P -m
agent.service.offloadworker``; ``scan_processes`` sets the number of processes, as for a scan). A
helper runs its own pipeline and ledger connection, as a shared scan's child does: SQLite's write
lock orders the commits, fs.turns the drift baselines. The service still decides everything else:
which sessions are complete, when a batch is submitted, that no two batches of one session run at
once, and retries. A batch goes to whichever has room first, the service's own workers before a
helper, the batch that has waited longest first (room.Room), and to a helper only once it has
started, so that its start-up (0.3-0.5 s of CPU) is no batch's wait. A helper idle for IDLE_S
ends, and the next burst starts another.

A helper that ends while it holds batches (killed, crashed) takes nothing with it: those batches
come back as lost, the service forgets they were in flight and reconciles, and the ledger decides
what is still to ingest, as after any crash (the temp files it leaves are removed at the next
start, as a crashed service's are). The service keeps those sessions to itself from then on, so
that a batch that ends every helper cannot go round for ever. A batch that raises in a helper is
let go, logged, as one that raises in the service's own workers is. Batches with listing problems
(errors of their own) stay in the service: only what pickles plainly travels.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import pickle
import signal
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..core.batch import Batch
from ..core.config import AgentConfig
from ..ingest.outcome import Retry, Tally
from . import children
from .children import LogSettings
from .shards import FILES_PER_PROCESS, usable_cores

log = logging.getLogger("fair_agent.offload")

WORKER_MODULE = "agent.service.offloadworker"
#: A helper with no batch for this long ends; the next burst starts another.
IDLE_S = 30.0
#: How long a helper has to end once asked, before it is killed.
STOP_GRACE_S = 5.0
#: After a helper that never became ready (it could not start), none is started for this long.
START_AGAIN_AFTER_S = 300.0
#: An answer's length, before its pickle.
FRAME = struct.Struct(">I")


class Lost(enum.Enum):
    """A batch's answer when its helper ended before it gave one."""

    LOST = "lost"


LOST = Lost.LOST


@dataclass(frozen=True, slots=True)
class OffloadJob:
    """What a helper is, sent on its standard input (pickled) before the batches."""

    config: AgentConfig
    logging: LogSettings


@dataclass(frozen=True, slots=True)
class Answer:
    """A helper's answer to one batch: what to retry, the durations of the batches (or parts)
    it finished since its last answer, and its running tally."""

    number: int
    retry: Retry | Lost | None
    seconds: tuple[float, ...]
    tally: Tally


class Offload:
    """The service's helpers: started when batches queue up, each given batches while the
    service's own workers are busy."""

    def __init__(
        self,
        config: AgentConfig,
        log_settings: LogSettings = LogSettings(),
        *,
        on_batch: Callable[[float], None] = lambda seconds: None,
        on_room: Callable[[], None] = lambda: None,
    ) -> None:
        processes = config.scan_processes or usable_cores()
        #: Helpers at most: one per process beyond the service's own.
        self.most = max(0, processes - 1)
        self._job = OffloadJob(
            # A helper's share of the machine's threads and extraction workers; the service keeps
            # its own, which it needs when it is alone.
            config.model_copy(update={"hash_threads": max(1, config.hash_threads // processes)}),
            log_settings,
        )
        self._on_batch = on_batch
        #: Told when a helper can take a batch, or a waiting batch may start one: a helper became
        #: ready, answered a batch, or ended.
        self._on_room = on_room
        #: The tallies of the helpers that have ended, added up, and the helpers not yet retired:
        #: replaced together, in one assignment, as the metrics thread reads them.
        self._books: tuple[Tally, tuple[HelperProcess, ...]] = (Tally(), ())
        #: No helper is started before this (monotonic) time.
        self._not_before = 0.0

    @property
    def slots(self) -> int:
        """Batches the helpers may hold at once, all of them started."""
        return self.most * self._job.config.workers

    @property
    def _helpers(self) -> tuple[HelperProcess, ...]:
        return self._books[1]

    @property
    def held(self) -> int:
        """Batches the helpers hold now, or were promised."""
        return sum(h.in_flight for h in self._helpers)

    @property
    def pids(self) -> list[int]:
        """The process ids of the helpers started and not yet ended."""
        return [h.pid for h in self._helpers if h.pid is not None and not h.ended]

    @property
    def tally(self) -> Tally:
        """What the helpers ingested, those that have ended too."""
        ended, helpers = self._books
        total = ended.copy()
        for helper in helpers:
            total.add(helper.tally)
        return total

    def helper_for(self, batch: Batch, queued_files: int, backlogged: bool) -> HelperProcess | None:
        """A started helper with room for ``batch``, that place promised to it (its ``ingest``
        takes it, ``give_back`` returns it); or None: it stays in the service. Starts helpers in a
        burst: FILES_PER_PROCESS files wait for a worker, or the queue is half full
        (``backlogged``: many small sessions)."""
        self._retire_ended()
        if (
            (queued_files >= FILES_PER_PROCESS or backlogged)
            and len(self._helpers) < self.most
            and time.monotonic() >= self._not_before
        ):
            log.info(
                f"{queued_files} files wait for a worker: starting a helper process",
                extra={"files": queued_files, "helpers": len(self._helpers) + 1},
            )
            ended, helpers = self._books
            self._books = (ended, (*helpers, HelperProcess(self._job, self._on_batch, self._on_room)))
        if batch.problems:
            return None
        ready = [h for h in self._helpers if h.taking and h.in_flight < self._job.config.workers]
        helper = min(ready, key=lambda h: h.in_flight, default=None)
        if helper is not None:
            helper.promise()
        return helper

    def _retire_ended(self) -> None:
        ended = [h for h in self._helpers if h.ended]
        if not ended:
            return
        self._retire(ended)
        if any(not h.ready for h in ended):  # one never started: not again for a while
            self._not_before = time.monotonic() + START_AGAIN_AFTER_S
            log.warning(
                f"a helper process could not start; the service ingests alone for the next "
                f"{START_AGAIN_AFTER_S:.0f} s"
            )

    def _retire(self, ended: Sequence[HelperProcess]) -> None:
        """Their tallies moved to the sum of those that have ended."""
        total, helpers = self._books
        total = total.copy()
        for helper in ended:
            total.add(helper.tally)
        self._books = (total, tuple(h for h in helpers if h not in ended))

    async def close(self) -> None:
        """Every helper ended: asked, then killed after STOP_GRACE_S."""
        await asyncio.gather(*(h.stop() for h in self._helpers))
        self._retire(self._helpers)


class HelperProcess:
    """One helper process: started at once, ready when it says so, asked batches by number."""

    def __init__(
        self, job: OffloadJob, on_batch: Callable[[float], None], on_room: Callable[[], None]
    ) -> None:
        self._job = job
        self._on_batch = on_batch
        self._on_room = on_room
        self._process: asyncio.subprocess.Process | None = None
        self._waiting: dict[int, asyncio.Future[Retry | Lost | None]] = {}
        #: Places promised to batches that have not come yet (see Room).
        self._promised = 0
        self._numbers = 0
        self._idle: asyncio.TimerHandle | None = None
        self.ready = False
        #: Its standard input is closed: it takes no more batches.
        self.closing = False
        self.ended = False
        self.tally = Tally()
        self._task = asyncio.create_task(self._run(), name="fair-agent-helper")

    @property
    def in_flight(self) -> int:
        """Batches it holds, or was promised."""
        return len(self._waiting) + self._promised

    @property
    def taking(self) -> bool:
        """Whether it takes batches: started, and neither ending nor ended."""
        return self.ready and not self.closing and not self.ended

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def promise(self) -> None:
        """A place kept for a batch that comes next (``ingest``), or is given back."""
        self._promised += 1
        if self._idle is not None:
            self._idle.cancel()

    def give_back(self) -> None:
        """A promised place the batch did not take."""
        self._promised -= 1
        self._idle_after_last()

    async def ingest(self, batch: Batch) -> Retry | Lost | None:
        """The batch ingested by this helper, in the place promised to it: what to retry, or LOST
        if the helper ended first."""
        assert self._process is not None and self._process.stdin is not None
        self._promised -= 1
        if self.ended:
            return LOST
        self._numbers += 1
        number = self._numbers
        answer: asyncio.Future[Retry | Lost | None] = asyncio.get_running_loop().create_future()
        self._waiting[number] = answer
        try:
            # Should it have ended meanwhile, the pipe drops this, and _run answers LOST.
            self._process.stdin.write(pickle.dumps((number, batch)))
            return await answer
        finally:
            self._waiting.pop(number, None)
            self._idle_after_last()
            self._on_room()

    def _idle_after_last(self) -> None:
        # Idle from its last batch: it ends after IDLE_S unless another comes.
        if not self.in_flight and not self.ended:
            if self._idle is not None:
                self._idle.cancel()
            self._idle = asyncio.get_running_loop().call_later(IDLE_S, self._end_idle)

    async def stop(self) -> None:
        """Ended at once (SIGTERM), killed if it has not after STOP_GRACE_S; what it held is
        redone from the ledger, as after any crash."""
        self._end_idle()
        self._signal(signal.SIGTERM)  # if not started yet, _run sends it once it is
        for then in (signal.SIGKILL, None):
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_S)
                return
            except TimeoutError:
                if then is None:
                    log.warning("a helper process did not end", extra={"pid": self.pid})
                else:
                    self._signal(then)

    def _signal(self, signum: int) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signum)

    def _end_idle(self) -> None:
        """Its standard input closed: it finishes what it holds (nothing, when idle) and ends."""
        self.closing = True
        if self._process is not None and self._process.stdin is not None:
            self._process.stdin.close()

    async def _run(self) -> None:
        status: int | None = None
        try:
            # Its logs go where the service's go.
            self._process = await children.start(
                WORKER_MODULE, stderr=1 if self._job.logging.on_stdout else None
            )
            assert self._process.stdin is not None and self._process.stdout is not None
            if self.closing:  # stopped while it started
                self._signal(signal.SIGTERM)
            else:
                self._process.stdin.write(pickle.dumps(self._job))
            await self._read_answers(self._process.stdout)
            status = await self._process.wait()
        except Exception:  # an answer that does not read back (a bug): the helper is let go
            log.exception("a helper process failed")
            self._signal(signal.SIGKILL)
            # Ended before its sessions are done again: it may have been writing their files.
            if self._process is not None:
                status = await self._process.wait()
        finally:
            self.ended = True
            held = [answer for answer in self._waiting.values() if not answer.done()]
            for answer in held:
                answer.set_result(LOST)
            self._on_room()  # its places are gone: a waiting batch may start another helper
        if held:
            log.warning(
                f"a helper process ended (status {status}) while it held {len(held)} batch(es): "
                "their sessions are looked at again",
                extra={"exit_status": status},
            )
        elif status not in (0, -signal.SIGTERM):
            log.warning(f"a helper process ended with status {status}", extra={"exit_status": status})

    async def _read_answers(self, stdout: asyncio.StreamReader) -> None:
        while True:
            try:
                (size,) = FRAME.unpack(await stdout.readexactly(FRAME.size))
                frame = await stdout.readexactly(size)
            except asyncio.IncompleteReadError:
                return
            message: object = pickle.loads(frame)
            if message == "ready":
                self.ready = True
                self._idle = asyncio.get_running_loop().call_later(IDLE_S, self._end_idle)
                self._on_room()
                continue
            assert isinstance(message, Answer)
            self.tally = message.tally
            for seconds in message.seconds:
                self._on_batch(seconds)
            answer = self._waiting.get(message.number)
            if answer is not None and not answer.done():
                answer.set_result(message.retry)
