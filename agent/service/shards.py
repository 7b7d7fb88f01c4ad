"""A backlog scanned by several processes, each ingesting the sessions it claims.

Why: the pipeline's own Python (listing, hashing small files, records, sidecars, crates) runs
under one interpreter lock. On 20,000 small files no extractor claims, a scan kept one core busy
and left the other idle (48% of two cores; extraction already runs in worker processes). Peers
spread a tree the same way: iRODS automated ingest hands folders to a pool of worker processes.

The root's units (its top-level folders and loose files; rules never group one session across two)
are counted from directory entries alone. This process and one child per other core
(shardworker) then each run a whole scan of the root, in the same order, and ingest a unit only if
they are first to claim it (Claims: a byte per unit in a file, set under an flock) as its turn
comes. So the work is shared out as it is done, whatever each unit costs, and the children's
start-up is no one's wait: this process starts at once. Each has its own ledger connection:
SQLite's write lock orders their commits, and what one process serialises in memory they
serialise together (drift baselines learn in turns: fs.turns). This process holds the state
directory's lock for them, shows their progress, adds up their reports, and ends them if it is
ended (or killed: each child asks the kernel for SIGTERM when its parent dies). A child that
fails takes nothing with it: what it had claimed and not committed is redone by the next run, as
after any crash, and the scan says so and exits non-zero.

A child costs a start-up (0.3-0.5 s of CPU), so by default a folder is shared only when each
process gets at least FILES_PER_PROCESS files; ``scan_processes`` sets the number outright.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..core.config import AgentConfig
from ..core.naming import IgnoreRules, is_own_output, is_temp_file
from ..ledger import Ledger
from . import children
from .children import LogSettings
from .scan import ScanProgress, ScanReport, check_folder, root_name_for, scan

log = logging.getLogger("fair_agent.scan")

#: Below this many files for each process, a folder is scanned by one (a child's start-up would
#: cost more than its part saves: ~0.4 s of CPU against ~0.25 ms of the pipeline's Python a file).
FILES_PER_PROCESS = 2000
WORKER_MODULE = "agent.service.shardworker"
#: How long children have to stop after the scan is interrupted, before they are killed.
STOP_GRACE_S = 10.0
#: The longest line read from a child (a log line with a long traceback included).
LINE_LIMIT = 1 << 24


@dataclass(frozen=True, slots=True)
class Unit:
    """A top-level folder or loose file of a root, and the files counted in it."""

    name: str
    files: int


@dataclass(frozen=True, slots=True)
class ShardJob:
    """What a child scans, sent to it on its standard input (pickled)."""

    path: Path
    config: AgentConfig
    #: Every unit counted, in the order of the claims file's bytes.
    units: tuple[str, ...]
    claims: Path
    retry_dead: bool
    #: The parent's start (wall clock): temp files older than this were left by an interrupted
    #: run; a sibling's are newer.
    started_ns: int
    progress: bool
    logging: LogSettings


def count_units(root: Path, ignore: IgnoreRules, stop: threading.Event | None = None) -> list[Unit]:
    """The root's units with the files below each, counted from directory entries alone (nothing
    stat'ed, no symlink followed, the agent's own outputs left out): enough to share out the
    work and to name the claims; each process lists what it ingests properly. Blocking;
    ``stop`` ends it early."""
    units: list[Unit] = []
    stop = stop or threading.Event()
    with os.scandir(root) as entries:
        for entry in entries:
            if _counted(entry.name, ignore):
                if _is_folder(entry):
                    units.append(Unit(entry.name, _files_below(entry.path, ignore, stop)))
                else:
                    units.append(Unit(entry.name, 1))
    return units


def _counted(name: str, ignore: IgnoreRules) -> bool:
    return not (is_temp_file(name) or is_own_output(name) or ignore.ignores(name))


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _files_below(folder: str, ignore: IgnoreRules, stop: threading.Event) -> int:
    count = 0
    stack = [folder]
    while stack and not stop.is_set():
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if not _counted(entry.name, ignore):
                        continue
                    if _is_folder(entry):
                        stack.append(entry.path)
                    else:
                        count += 1
        except OSError:
            continue  # the process that lists it says what is wrong
    return count


def processes_for(units: list[Unit], setting: int, cores: int) -> int:
    """How many processes scan these units: ``setting`` when given (see AgentConfig.scan_processes),
    else one per core as long as each gets FILES_PER_PROCESS files; never more than the units."""
    wanted = setting or min(cores, sum(u.files for u in units) // FILES_PER_PROCESS)
    return max(1, min(wanted, len(units)))


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


async def scan_backlog(
    path: Path,
    config: AgentConfig,
    ledger: Ledger,
    *,
    progress: ScanProgress | None = None,
    retry_dead: bool = False,
    log_settings: LogSettings = LogSettings(),
) -> ScanReport:
    """``fair-agent scan``: the folder in this process, or shared among several (see above)."""
    await check_folder(path, config)
    cores = usable_cores()
    units: list[Unit] = []
    if config.scan_processes > 1 or (config.scan_processes == 0 and cores > 1):
        units = await _count_units(path, IgnoreRules(config.ignore))
    processes = processes_for(units, config.scan_processes, cores)
    if processes == 1:
        return await scan(path, config, ledger, progress=progress, retry_dead=retry_dead)
    # Registered once here, before the children race to do it.
    await ledger.ensure_root(path, root_name_for(path, config))
    log.info(
        f"scanning in {processes} processes",
        extra={"processes": processes, "files": sum(u.files for u in units)},
    )
    started = time.perf_counter()
    names = tuple(u.name for u in units)
    shared = config.model_copy(
        update={
            # The machine's threads and extraction workers shared out, not multiplied.
            "hash_threads": max(1, config.hash_threads // processes),
            # Units are claimed as discovery reaches them: a long queue would claim far ahead of
            # the work, and leave one process with a tail the others could have taken.
            "queue_size": config.workers,
        }
    )
    job = ShardJob(
        path=path,
        config=shared,
        units=names,
        claims=await asyncio.to_thread(Claims.create, config.state_dir, len(names)),
        retry_dead=retry_dead,
        started_ns=time.time_ns(),
        progress=progress is not None,
        logging=log_settings,
    )
    report = ScanReport()
    children = [_Child(job) for _ in range(processes - 1)]
    claims: Claims | None = None
    try:
        claims = Claims(job.claims, names, takes_unknown=True)
        for child in children:
            await child.start()
        own = asyncio.ensure_future(
            scan(
                path,
                shared,
                ledger,
                progress=progress,
                retry_dead=retry_dead,
                claim=claims.claim,
                started_ns=job.started_ns,
            )
        )
        await _all_or_none([own, *(asyncio.ensure_future(c.finish(report, progress)) for c in children)])
        report.absorb(own.result())
        report.sessions_by_process = [own.result().sessions, *(c.sessions for c in children)]
    finally:
        await asyncio.shield(asyncio.gather(*(child.stop() for child in children)))
        if claims is not None:
            claims.close()
        job.claims.unlink(missing_ok=True)
    report.elapsed_s = time.perf_counter() - started
    return report


async def _all_or_none(tasks: list[asyncio.Future[Any]]) -> None:
    """Every task done; should one fail (or this be cancelled), the others cancelled and waited for."""
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))


class Claims:
    """Which process ingests each unit of a shared scan: the first that claims it. One byte per
    unit in a file of the state directory, read and set under an flock (held for microseconds,
    so taken on the event loop's thread; the kernel drops it if its holder dies)."""

    PREFIX = "scan-claims-"

    def __init__(self, path: Path, units: tuple[str, ...], *, takes_unknown: bool = False) -> None:
        self._index = {name: i for i, name in enumerate(units)}
        #: Whether this process takes the units that appeared after the count (one process must).
        self._takes_unknown = takes_unknown
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    @classmethod
    def create(cls, state_dir: Path, count: int) -> Path:
        """A new claims file, none taken. Blocking."""
        # The state lock is this scan's: any other claims file is a crashed scan's.
        for stale in state_dir.glob(f"{cls.PREFIX}*"):
            stale.unlink(missing_ok=True)
        path = state_dir / f"{cls.PREFIX}{os.getpid()}"
        with path.open("wb") as claims:
            claims.truncate(count)
        return path

    def claim(self, unit: str) -> bool:
        index = self._index.get(unit)
        if index is None:
            return self._takes_unknown
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if os.pread(self._fd, 1, index) != b"\0":
                return False
            os.pwrite(self._fd, b"\1", index)
            return True
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


async def _count_units(root: Path, ignore: IgnoreRules) -> list[Unit]:
    """count_units in a thread that stops when the scan is interrupted."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(count_units, root, ignore, stop)
    except asyncio.CancelledError:
        stop.set()  # else the interpreter's exit would wait for the whole walk
        raise


class _Child:
    """One child scan: started, read until it reports, stopped if need be."""

    def __init__(self, job: ShardJob) -> None:
        self.job = job
        #: Sessions it ingested or found done, once it has reported.
        self.sessions = 0
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        # Started with SIGINT blocked (the mask is inherited): a stop asked for while the child's
        # interpreter starts waits until it can be taken quietly (see shardworker.main).
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.process = await self._spawn()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        assert self.process.stdin is not None
        self.process.stdin.write(pickle.dumps(self.job))
        self.process.stdin.close()

    async def _spawn(self) -> asyncio.subprocess.Process:
        return await children.start(WORKER_MODULE, stderr=asyncio.subprocess.PIPE, limit=LINE_LIMIT)

    async def finish(self, report: ScanReport, progress: ScanProgress | None) -> None:
        """Read the child until it ends: its report added to ``report``, its logs passed on."""
        assert self.process is not None
        reported, _ = await asyncio.gather(self._read_messages(report, progress), self._relay_logs())
        status = await self.process.wait()
        if status != 0 or not reported:
            report.lost_processes += 1
            log.error(
                f"a scan process ended {_how(status)} before it finished: what it had claimed "
                "and not committed is ingested by the next run",
                extra={"pid": self.process.pid, "exit_status": status},
            )

    async def _read_messages(self, report: ScanReport, progress: ScanProgress | None) -> bool:
        assert self.process is not None and self.process.stdout is not None
        reported = False
        async for line in self.process.stdout:
            try:
                message: dict[str, Any] = orjson.loads(line)
            except orjson.JSONDecodeError:  # not ours to stop the scan for: the report decides
                log.warning(f"a scan process wrote an unreadable line: {line[:200]!r}")
                continue
            if "report" in message:
                own = ScanReport(**message["report"])
                report.absorb(own)
                self.sessions = own.sessions
                reported = True
            elif progress is not None and "found" in message:
                progress.found(*message["found"])
            elif progress is not None and "advance" in message:
                progress.advance(*message["advance"])
        return reported

    async def _relay_logs(self) -> None:
        """The child's log lines, written by this process: on a terminal, rich's progress bar
        shows them above itself, as it does this process's own."""
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            sys.stderr.write(line.decode(errors="replace"))

    async def stop(self) -> None:
        """The child ended: at once if it has, else asked (SIGINT, as Ctrl-C would), then killed.
        Its output is read meanwhile, so that a full pipe does not hold it up."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self._drain(), STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        await asyncio.gather(self.process.stdout.read(), self._relay_logs())
        await self.process.wait()


def _how(status: int) -> str:
    if status < 0:
        try:
            return f"by {signal.Signals(-status).name}"
        except ValueError:
            return f"by signal {-status}"
    return f"with status {status}"
