"""What became of a batch's files, stage by stage, and the running tally across batches.

A file that fails transiently is *deferred*: kept for another attempt after a backoff delay while its
kind's retry budget lasts, and a dead letter once it is spent. The part of a batch to try again is
handed back as a ``Retry``; nothing sleeps in a worker.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..core.batch import Batch, FileStat, Skip
from ..core.config import RetrySettings
from ..core.errors import RetryKind
from ..core.records import DeadLetter, FileRecord
from ..core.retry import delay_for, retry_kind

log = logging.getLogger("fair_agent.pipeline")


@dataclass(slots=True)
class Tally:
    """Running totals across batches, for summaries and metrics."""

    batches: int = 0
    files_ingested: int = 0
    bytes_ingested: int = 0
    touched: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    retries: int = 0
    #: Files of batches given up on without a dead letter (the ledger stayed locked): the next
    #: reconciliation or scan does them again, since the ledger holds nothing of them.
    uncommitted: int = 0
    #: Sessions rejected by validation, and sessions whose metadata drifted, by dataset type.
    validation_failures: Counter[str] = field(default_factory=Counter)
    drift_alerts: Counter[str] = field(default_factory=Counter)
    #: Retries scheduled, by kind of retryable failure.
    retries_by_kind: Counter[RetryKind] = field(default_factory=Counter)
    #: Unix time of the last commit with new files; 0 before the first.
    last_success_unix: float = 0.0

    def copy(self) -> Tally:
        """A copy that later batches do not change. Each counter is copied in one step (dict() of
        a dict is atomic under the GIL), so a thread may take it while the event loop counts on."""
        return Tally(
            self.batches,
            self.files_ingested,
            self.bytes_ingested,
            self.touched,
            self.dead_lettered,
            self.skipped,
            self.retries,
            self.uncommitted,
            Counter(dict(self.validation_failures)),
            Counter(dict(self.drift_alerts)),
            Counter(dict(self.retries_by_kind)),
            self.last_success_unix,
        )

    def add(self, other: Tally) -> None:
        """Another process's totals added to these (a helper's: service.offload)."""
        self.batches += other.batches
        self.files_ingested += other.files_ingested
        self.bytes_ingested += other.bytes_ingested
        self.touched += other.touched
        self.dead_lettered += other.dead_lettered
        self.skipped += other.skipped
        self.retries += other.retries
        self.uncommitted += other.uncommitted
        self.validation_failures.update(other.validation_failures)
        self.drift_alerts.update(other.drift_alerts)
        self.retries_by_kind.update(other.retries_by_kind)
        self.last_success_unix = max(self.last_success_unix, other.last_success_unix)


@dataclass(frozen=True, slots=True)
class Retry:
    """What of a batch to try again, and after how many seconds."""

    batch: Batch
    delay: float

    @staticmethod
    def merge(retries: list[Retry], *, parts: int) -> Retry | None:
        """The retries of a session's ``parts`` as one: every file, after the longest delay.

        A session that went in parts may have its crate behind (a part failed after an earlier one
        committed): the retry rewrites it.
        """
        if not retries:
            return None
        last = retries[-1].batch
        merged = replace(
            last,
            files=[f for r in retries for f in r.batch.files],
            problems=[p for r in retries for p in r.batch.problems],
            rewrite_crate=any(r.batch.rewrite_crate for r in retries) or (parts > 1 and last.is_folder),
            crate_later=False,
        )
        return Retry(merged, max(r.delay for r in retries))


@dataclass(slots=True)
class Outcome:
    """One batch's files, sorted by what became of them so far."""

    batch: Batch
    retry_settings: RetrySettings
    tally: Tally
    records: list[FileRecord] = field(default_factory=list)
    touched: list[FileStat] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    vanished: list[Skip] = field(default_factory=list)
    #: Files that failed transiently and get another attempt after ``retry_delay`` seconds.
    to_retry: list[FileStat] = field(default_factory=list)
    retry_crate: bool = False
    retry_delay: float = 0.0
    #: First bytes of each new file, for the extractors.
    heads: dict[str, bytes] = field(default_factory=dict)
    #: The temp file of each derived table made and not yet put in place, by its raw file's path.
    derived_temps: dict[str, str] = field(default_factory=dict)

    def defer(
        self,
        files: list[FileStat],
        exc: Exception,
        bid: str | None,
        *,
        crate: bool = False,
        error_of: Callable[[FileStat], Exception] | None = None,
    ) -> None:
        """Files that failed: kept for a later attempt while the budget lasts, else dead letters.

        ``crate``: the session crate was not written either and must be retried with them.
        ``error_of``: each file's own account of the failure, for its dead letter.
        """
        batch = self.batch
        kind = retry_kind(exc)
        delay = None if kind is None else delay_for(kind, batch.attempt, self.retry_settings)
        if kind is None or delay is None:
            if crate:
                # The crate is ours, not a file to dead-letter: leave it for the next run, and say so.
                self.tally.uncommitted += 1
                log.error(f"the session crate could not be written: {exc}", extra={"session": batch.session})
            self.dead += [
                DeadLetter(
                    f.relpath,
                    batch.session,
                    error_of(f) if error_of else exc,
                    batch.attempt,
                    stat=f,
                    batch_id=bid,
                )
                for f in files
            ]
            return
        self.to_retry += files
        self.retry_crate = self.retry_crate or crate
        self.retry_delay = max(self.retry_delay, delay)
        self.tally.retries += len(files)
        self.tally.retries_by_kind[kind] += len(files)
        log.info(
            f"will try again in {delay:.1f} s: {exc}",
            extra={
                "session": batch.session,
                "file": files[0].relpath if len(files) == 1 else None,
                "files": len(files),
                "attempt": batch.attempt,
                "delay_s": round(delay, 3),
                "error_class": type(exc).__name__,
                "category": "retryable",
            },
        )

    def retry(self, removed_pending: list[str]) -> Retry | None:
        """The deferred part of the batch, if any, as a batch of its own for a later attempt."""
        if not self.to_retry and not self.retry_crate:
            return None
        batch = self.batch
        retry = Batch(
            root=batch.root,
            session=batch.session,
            is_folder=batch.is_folder,
            files=self.to_retry,
            removed=removed_pending,
            rewrite_crate=batch.rewrite_crate or self.retry_crate,
            attempt=batch.attempt + 1,
        )
        return Retry(retry, self.retry_delay)

    def count(self, bid: str) -> None:
        """Into the tally and the log: what the committed batch ingested and dead-lettered."""
        batch = self.batch
        self.tally.files_ingested += len(self.records)
        self.tally.bytes_ingested += sum(r.stat.size for r in self.records)
        self.tally.touched += len(self.touched)
        self.tally.skipped += len(self.vanished)
        self.tally.dead_lettered += len(self.dead)
        for record in self.records:
            log.debug(
                "file ingested",
                extra={
                    "batch_id": bid,
                    "session": batch.session,
                    "file": record.relpath,
                    "sequence": record.sequence,
                },
            )
        if self.records:
            self.tally.batches += 1
            self.tally.last_success_unix = time.time()
            log.info(
                "batch ingested",
                extra={
                    "batch_id": bid,
                    "session": batch.session,
                    "files": len(self.records),
                    "bytes": sum(r.stat.size for r in self.records),
                },
            )
        for dead in self.dead:
            log.warning(
                f"dead-lettered: {dead.error}",
                extra={
                    "session": batch.session,
                    "file": dead.relpath,
                    "attempt": dead.attempts,
                    "category": dead.category,
                    "error_class": type(dead.error).__name__,
                },
            )
