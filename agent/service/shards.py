"""A backlog scanned by several processes, each ingesting its share of the root's sessions.

Why: the pipeline's own Python (listing, hashing small files, records, sidecars, crates) runs
under one interpreter lock. On 20,000 small files no extractor claims, a scan kept one core busy
and left the other idle (48% of two cores; extraction already runs in worker processes). Peers
spread a tree the same way: iRODS automated ingest hands folders to a pool of worker processes.

The root's units (its top-level folders and loose files; rules never group one session across two)
are counted from directory entries alone, then dealt to the processes by file count, largest
first, so that each gets about the same work. Each child (shardworker) is a whole scan of its
units with its own ledger connection: SQLite's write lock orders their commits, and what one
process serialises in memory they serialise together (drift baselines learn in turns: fs.turns).
The parent holds the state directory's lock for them, shows their progress, adds up their
reports, and ends them if it is ended (or killed: each child asks the kernel for SIGTERM when its
parent dies). A child that fails takes nothing with it: what it had not committed is redone by
the next run, as after any crash, and the scan says so and exits non-zero.

A child costs a start-up (0.3-0.5 s of CPU), so by default a folder is split only when each
process gets at least FILES_PER_PROCESS files; ``scan_processes`` sets the number outright.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from ..core.config import AgentConfig
from ..core.naming import IgnoreRules, is_own_output, is_temp_file
from ..ledger import Ledger
from .scan import ScanProgress, ScanReport, check_folder, root_name_for, scan

log = logging.getLogger("fair_agent.scan")

#: Below this many files for each process, a folder is scanned by one (a child's start-up would
#: cost more than its share saves: ~0.4 s of CPU against ~0.25 ms of the pipeline's Python a file).
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
class LogSettings:
    level: str = "info"
    json_lines: bool | None = None


@dataclass(frozen=True, slots=True)
class ShardJob:
    """What a child scans, sent to it on its standard input (pickled)."""

    path: Path
    config: AgentConfig
    units: tuple[str, ...]
    retry_dead: bool
    #: The parent's start (wall clock): temp files older than this were left by an interrupted
    #: run; a sibling's are newer.
    started_ns: int
    progress: bool
    logging: LogSettings


def count_units(root: Path, ignore: IgnoreRules, stop: threading.Event | None = None) -> list[Unit]:
    """The root's units with the files below each, counted from directory entries alone (nothing
    stat'ed, no symlink followed, the agent's own outputs left out): enough to share out the
    work; the children list what they ingest properly. Blocking; ``stop`` ends it early."""
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
            continue  # the child that lists it says what is wrong
    return count


def processes_for(units: list[Unit], setting: int, cores: int) -> int:
    """How many processes scan these units: ``setting`` when given (see AgentConfig.scan_processes),
    else one per core as long as each gets FILES_PER_PROCESS files; never more than the units."""
    wanted = setting or min(cores, sum(u.files for u in units) // FILES_PER_PROCESS)
    return max(1, min(wanted, len(units)))


def deal(units: list[Unit], processes: int) -> list[tuple[str, ...]]:
    """The units shared among ``processes`` by file count: the largest first, each to the share
    with the fewest files so far. Deterministic (ties go by name, then by share)."""
    shares: list[list[str]] = [[] for _ in range(processes)]
    loads = [0] * processes
    for unit in sorted(units, key=lambda u: (-u.files, u.name)):
        lightest = min(range(processes), key=lambda i: (loads[i], i))
        shares[lightest].append(unit.name)
        loads[lightest] += max(unit.files, 1)
    return [tuple(sorted(share)) for share in shares if share]


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
    shares = deal(units, processes)
    log.info(
        f"scanning in {len(shares)} processes",
        extra={"processes": len(shares), "files": sum(u.files for u in units)},
    )
    started = time.perf_counter()
    job = ShardJob(
        path=path,
        # The machine's threads and extraction workers shared out, not multiplied.
        config=config.model_copy(update={"hash_threads": max(1, config.hash_threads // len(shares))}),
        units=(),
        retry_dead=retry_dead,
        started_ns=time.time_ns(),
        progress=progress is not None,
        logging=log_settings,
    )
    report = ScanReport()
    children = [_Child(job, share) for share in shares]
    try:
        for child in children:
            await child.start()
        await asyncio.gather(*(child.finish(report, progress) for child in children))
    finally:
        await asyncio.shield(asyncio.gather(*(child.stop() for child in children)))
    report.elapsed_s = time.perf_counter() - started
    return report


async def _count_units(root: Path, ignore: IgnoreRules) -> list[Unit]:
    """count_units in a thread that stops when the scan is interrupted."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(count_units, root, ignore, stop)
    except asyncio.CancelledError:
        stop.set()  # else the interpreter's exit would wait for the whole walk
        raise


class _Child:
    """One child scan: started with its share, read until it reports, stopped if need be."""

    def __init__(self, job: ShardJob, units: tuple[str, ...]) -> None:
        self.job = replace(job, units=units)
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-P",  # the current folder is not searched for modules: only the agent's own
            "-m",
            WORKER_MODULE,
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
            # Out of the terminal's process group: Ctrl-C reaches the parent alone, which asks
            # each child once (a second SIGINT would break into a child's own clean-up).
            process_group=0,
        )
        assert self.process.stdin is not None
        self.process.stdin.write(pickle.dumps(self.job))
        self.process.stdin.close()

    async def finish(self, report: ScanReport, progress: ScanProgress | None) -> None:
        """Read the child until it ends: its report added to ``report``, its logs passed on."""
        assert self.process is not None
        reported, _ = await asyncio.gather(self._read_messages(report, progress), self._relay_logs())
        status = await self.process.wait()
        if status != 0 or not reported:
            report.lost_processes += 1
            log.error(
                f"a scan process ended {_how(status)} before it finished its share "
                f"({len(self.job.units)} of the folder's top-level entries): what it had not "
                "committed is ingested by the next run",
                extra={"pid": self.process.pid, "exit_status": status},
            )

    async def _read_messages(self, report: ScanReport, progress: ScanProgress | None) -> bool:
        assert self.process is not None and self.process.stdout is not None
        reported = False
        async for line in self.process.stdout:
            message: dict[str, Any] = orjson.loads(line)
            if "report" in message:
                report.absorb(ScanReport(**message["report"]))
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
