"""Burst mode: ingest everything under a folder through the service's pipeline, then return.

Used by ``fair-agent scan`` for a backlog and by ``fair-agent replay`` without a running service.
Both this and the service's reconciliation remove the temp files an interrupted run left
(``remove_orphans``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

from ..core.batch import Batch, Root
from ..core.config import AgentConfig, ensure_outside
from ..core.errors import ConfigError
from ..core.naming import IgnoreRules
from ..fs.outputs import remove_orphan_temps
from ..ingest.curate import load_rule_set
from ..ingest.hashing import Hasher
from ..ingest.outcome import Tally
from ..ingest.pipeline import own_pipeline
from ..ledger import Ledger
from .discover import SessionListing, list_sessions
from .quickcheck import Plan, plan_from_ledger
from .workers import WorkerPool

log = logging.getLogger("fair_agent.scan")


class ScanProgress(Protocol):
    def found(self, files: int, size: int) -> None: ...
    def advance(self, files: int, size: int) -> None: ...


@dataclass(slots=True)
class ScanReport:
    sessions: int = 0
    files_seen: int = 0
    files_ingested: int = 0
    bytes_ingested: int = 0
    bytes_hashed: int = 0
    files_hashed: int = 0
    unchanged: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    #: Files whose batch could not be committed (the ledger stayed locked); a later run does them.
    uncommitted: int = 0
    #: Processes of a shared scan (service.shards) that ended before they reported.
    lost_processes: int = 0
    #: In a shared scan, the sessions each process took (this one first).
    sessions_by_process: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0

    def add_ingest(self, tally: Tally, hasher: Hasher) -> None:
        """What the pipeline did with the batches the scan planned."""
        self.files_ingested = tally.files_ingested
        self.bytes_ingested = tally.bytes_ingested
        self.unchanged += tally.touched
        self.skipped += tally.skipped
        self.dead_lettered += tally.dead_lettered
        self.uncommitted = tally.uncommitted
        self.bytes_hashed = hasher.bytes_hashed
        self.files_hashed = hasher.files_hashed

    def absorb(self, other: ScanReport) -> None:
        """Another process's share of the same scan, added up (elapsed_s is the caller's)."""
        for name in self.__dataclass_fields__:
            if name not in ("elapsed_s", "sessions_by_process"):
                setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def ok(self) -> bool:
        return self.dead_lettered == 0 and self.uncommitted == 0 and self.lost_processes == 0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_hashed / 1e6 / self.elapsed_s if self.elapsed_s else 0.0


def root_name_for(path: Path, config: AgentConfig) -> str:
    resolved = path.resolve()
    for root in config.roots:
        if root.path.resolve() == resolved:
            return root.root_name
    return resolved.name or "root"


async def scan(
    path: Path,
    config: AgentConfig,
    ledger: Ledger,
    *,
    progress: ScanProgress | None = None,
    retry_dead: bool = False,
    sessions: Collection[str] | None = None,
    claim: Callable[[str], bool] | None = None,
    started_ns: int | None = None,
) -> ScanReport:
    """Ingest every file under ``path`` that the ledger does not already hold in this version.

    ``sessions``: only these sessions (names below ``path``), e.g. for a replay. ``claim``: only
    the top-level folders and loose files it grants, asked as their turn comes (a scan shared
    among processes: service.shards). ``started_ns``: when the scan began (wall clock), if before
    this call; the agent's temp files older than that are orphans.
    """
    await check_folder(path, config)
    started = time.perf_counter()
    started_ns = started_ns or time.time_ns()
    report = ScanReport()
    root = await ledger.ensure_root(path, root_name_for(path, config))
    ignore = IgnoreRules(config.ignore)
    rules = await asyncio.to_thread(load_rule_set, config)
    with own_pipeline(config, ledger, rules, progress=progress.advance if progress else None) as pipeline:

        async def ingest(batch: Batch) -> None:
            retry = await pipeline.process_batch(batch)
            if retry is not None:
                pool.submit_later(retry.batch, retry.delay)

        pool: WorkerPool[Batch] = WorkerPool(ingest, workers=config.workers, queue_size=config.queue_size)
        async with pool:
            async for listing in list_sessions(
                root.path,
                ignore,
                session_of=partial(rules.session_name, root.name),
                only=sessions,
                claim=claim,
                on_temp_files=partial(remove_orphans, root.path, before_ns=started_ns),
            ):
                plan = await _plan(ledger, root, listing, report, progress, retry_dead)
                if plan.batch is not None:
                    await pool.submit(plan.batch)
    report.add_ingest(pipeline.tally, pipeline.hasher)
    report.elapsed_s = time.perf_counter() - started
    return report


async def check_folder(path: Path, config: AgentConfig) -> None:
    """ConfigError unless ``path`` is a folder that does not hold the state directory."""
    if not await asyncio.to_thread(path.is_dir):
        raise ConfigError(f"{path} is not a folder")
    try:
        ensure_outside(config.state_dir, path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


async def _plan(
    ledger: Ledger,
    root: Root,
    listing: SessionListing,
    report: ScanReport,
    progress: ScanProgress | None,
    retry_dead: bool,
) -> Plan:
    """One session's plan: what the ledger already holds is counted (and shown) as done."""
    report.sessions += 1
    report.files_seen += len(listing.files)
    report.skipped += len(listing.skips)
    await ledger.record_skips(root.id, listing.session, listing.skips)
    plan = await plan_from_ledger(ledger, root, listing, retry_dead=retry_dead)
    report.unchanged += len(plan.unchanged)
    report.dead_lettered += len(plan.still_dead)
    if progress is not None:
        progress.found(len(listing.files), sum(f.size for f in listing.files))
        progress.advance(
            len(plan.unchanged) + len(plan.still_dead),
            sum(f.size for f in plan.unchanged + plan.still_dead),
        )
    return plan


async def remove_orphans(root: Path, temp_files: list[str], *, before_ns: int) -> None:
    """Remove the agent's temp files older than ``before_ns`` (wall clock): this process started
    later, so an interrupted run left them; newer ones are in use."""
    if not temp_files:
        return
    removed = await asyncio.to_thread(remove_orphan_temps, root, temp_files, older_than_ns=before_ns)
    if removed:
        log.warning(
            f"removed {removed} temp file(s) left by an interrupted run",
            extra={"root": root.name, "files": removed},
        )
