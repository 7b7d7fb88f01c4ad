"""process_batch: the one place where the stages meet.

Order of effects for a batch: hash -> build metadata -> write every sidecar (and the session crate)
atomically -> commit the ledger in one transaction. Killed before the commit, the batch is redone
and rewrites byte-identical outputs; killed after it, nothing is redone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import AGENT_NAME, __version__
from ..core.batch import Batch, FileStat, Skip, batch_id
from ..core.config import AgentConfig
from ..core.errors import (
    REJECTION_CLASS_NAMES,
    AgentError,
    FileVanishedError,
    OutputConflictError,
    RetryKind,
    SessionRejectedError,
    UnexpectedError,
)
from ..core.naming import CRATE_NAME, display_name, error_name, sidecar_name, unit_of
from ..core.records import DeadLetter, FileRecord
from ..core.retry import delay_for, retry_kind
from ..extractors.generic import Detected
from ..extractors.runner import MetadataReader
from ..fs.outputs import Document, OutputWriter, remove_files, write_documents
from ..ledger import BatchCommit, CurrentFile, Ledger
from ..rules import RuleSet
from .crate import build_crate
from .curate import Curator, Review
from .hashing import Hashed, Hasher, hash_groups
from .metadata import build_sidecar, crate_entities

log = logging.getLogger("fair_agent.pipeline")

#: Called as (files, bytes) whenever files are finished with, for progress bars.
ProgressCallback = Callable[[int, int], None]

DEFAULT_ADVICE = (
    "Fix the problem described above. The agent tries again when the file changes; "
    "`fair-agent replay --session FOLDER` tries again at once."
)


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
    #: Retries scheduled, by kind of retryable failure (changing, io, output, ledger).
    retries_by_kind: Counter[RetryKind] = field(default_factory=Counter)
    #: Unix time of the last commit with new files; 0 before the first.
    last_success_unix: float = 0.0


@dataclass(slots=True)
class _Outcome:
    records: list[FileRecord] = field(default_factory=list)
    touched: list[FileStat] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    vanished: list[Skip] = field(default_factory=list)
    #: Files that failed transiently and get another attempt after ``retry_delay`` seconds.
    retry: list[FileStat] = field(default_factory=list)
    retry_crate: bool = False
    retry_delay: float = 0.0
    #: First bytes of each new file, for the extractors.
    heads: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Retry:
    """What of a batch to try again, and after how many seconds."""

    batch: Batch
    delay: float


class _SessionLocks:
    """One lock per session, kept while anyone holds or awaits it, then forgotten (bounded)."""

    def __init__(self) -> None:
        self._locks: dict[tuple[int, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: tuple[int, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Pipeline:
    def __init__(
        self,
        config: AgentConfig,
        ledger: Ledger,
        hasher: Hasher,
        writer: OutputWriter,
        rules: RuleSet | None = None,
        *,
        progress: ProgressCallback | None = None,
        on_batch: Callable[[float], None] | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.hasher = hasher
        self.writer = writer
        self.reader = MetadataReader(config.hash_threads, config.extract_timeout_s)
        #: Without a rule set, every file gets the built-in generic rule.
        self.rules = rules if rules is not None else RuleSet([])
        self.curator = Curator(self.rules, ledger, config.site.timezone)
        self.tally = Tally()
        self._progress = progress or (lambda files, size: None)
        #: Told each batch's duration in seconds (metrics).
        self._on_batch = on_batch or (lambda seconds: None)
        # Two batches of one session must not interleave: the second rewrites the crate the first
        # wrote, and must see the first one's ledger rows.
        self._locks = _SessionLocks()

    def close(self) -> None:
        self.reader.close()

    async def process_batch(self, batch: Batch) -> Retry | None:
        """Ingest one batch. Never raises for bad input: failures become dead letters.

        Returns the part that failed transiently, with how long to wait before trying it again;
        the caller resubmits it then (retries never sleep in a worker).
        """
        async with self._locks.hold((batch.root.id, batch.session)):
            started = time.perf_counter()
            try:
                return await self._process(batch)
            except Exception as exc:
                # The batch boundary: nothing of this batch was committed. A retryable failure
                # (the ledger stayed locked) or an unknown one gets the whole batch tried again
                # within the retry budget (an unknown one as an I/O error); then an unknown failure
                # becomes a dead letter.
                unknown = not isinstance(exc, AgentError)
                kind = RetryKind.IO if unknown else retry_kind(exc)
                delay = None if kind is None else delay_for(kind, batch.attempt, self.config.retry)
                log.log(
                    logging.ERROR if unknown else logging.WARNING,
                    f"batch not committed: {type(exc).__name__}: {exc}",
                    exc_info=unknown,
                    extra={
                        "session": batch.session,
                        "attempt": batch.attempt,
                        "error_class": type(exc).__name__,
                        "category": str(getattr(exc, "category", "unknown")),
                    },
                )
                if kind is not None and delay is not None:
                    self.tally.retries_by_kind[kind] += 1
                    return Retry(replace(batch, attempt=batch.attempt + 1), delay)
                if unknown:
                    await self._dead_letter_all(batch, exc)
                else:
                    self.tally.uncommitted += len(batch.files)
                return None
            finally:
                self._on_batch(time.perf_counter() - started)

    async def _process(self, batch: Batch) -> Retry | None:
        root, session = batch.root, batch.session
        # Read again here, under the session lock, although the planner read the same rows: a
        # batch may have waited in the queue (or for a retry) while another batch of its session
        # committed, and versions and the crate must build on what the ledger holds now.
        current = await self.ledger.current_files(root.id, session)
        previously_dead = set(await self.ledger.dead_letter_signatures(root.id, session))
        outcome = await self._hash_all(batch, current)
        await self._extract_all(batch, outcome)
        review = await self.curator.review(batch, outcome.records)
        try:
            return await self._record(batch, current, previously_dead, outcome, review)
        finally:
            review.release()

    async def _record(
        self,
        batch: Batch,
        current: dict[str, CurrentFile],
        previously_dead: set[str],
        outcome: _Outcome,
        review: Review,
    ) -> Retry | None:
        """Write the batch's outputs and commit it, as the rules' review decided."""
        root, session = batch.root, batch.session
        latest = await self.ledger.latest_versions(root.id, unit_of(session))
        self._apply_review(batch, outcome, review)
        for relpath, error in batch.problems:
            outcome.dead.append(DeadLetter(relpath, session, error, attempts=batch.attempt))
        bid = batch_id(root.name, session, [(r.relpath, r.sha256) for r in outcome.records])
        outcome.dead = [d if d.batch_id else replace(d, batch_id=bid) for d in outcome.dead]
        outcome.records = [
            replace(r, batch_id=bid, sequence=seq, version=latest.get(r.relpath, 0) + 1)
            for seq, r in enumerate(outcome.records, start=1)
        ]
        entities = {r.relpath: crate_entities(r, batch.is_folder) for r in outcome.records}
        documents: list[Document] = [
            (root.path, sidecar_name(r.relpath), build_sidecar(r, self.config.site)) for r in outcome.records
        ]
        crate_relpath = f"{session}/{CRATE_NAME}"
        needs_crate = batch.is_folder and bool(outcome.records or batch.rewrite_crate or batch.removed)
        if needs_crate:
            documents.append(
                (root.path, crate_relpath, self._crate(batch, current, entities, outcome.records))
            )
        removed = batch.removed
        if documents:
            try:
                written = await self.writer.write(documents)
                blocked = self._handle_conflicts(
                    written.conflicts, crate_relpath, session, outcome, bid, batch.attempt
                )
                if blocked and needs_crate:
                    # A sidecar was blocked: its file is not ingested, so the crate must not list it.
                    crate = self._crate(batch, current, entities, outcome.records)
                    await self.writer.write([(root.path, crate_relpath, crate)])
            except AgentError as exc:
                # Disk full, read-only, permission denied: nothing new is committed; the files (and
                # the crate) are tried again later, or dead-lettered once the budget is spent.
                self._defer(outcome, [r.stat for r in outcome.records], exc, batch, bid, crate=needs_crate)
                outcome.records, removed = [], []
            else:
                if written.already_there and outcome.records:
                    log.info(
                        f"{written.already_there} output(s) of an interrupted run were already in place; "
                        "now recorded in the ledger",
                        extra={"session": session, "batch_id": bid},
                    )
        await self.ledger.commit_batch(
            BatchCommit(
                root=root,
                session=session,
                batch_id=bid,
                records=outcome.records,
                entities={
                    r.relpath: json.dumps(entities[r.relpath], ensure_ascii=False) for r in outcome.records
                },
                touched=outcome.touched,
                dead=outcome.dead,
                removed=removed,
                cleared_dead=batch.cleared_dead,
                drift=review.updates,
            )
        )
        await self.ledger.record_skips(root.id, session, outcome.vanished)
        passed = (
            [r.relpath for r in outcome.records] + [t.relpath for t in outcome.touched] + batch.cleared_dead
        )
        stale = [error_name(p) for p in passed if p in previously_dead]
        if passed and previously_dead and not await self._still_rejected(root.id, session):
            stale.append(error_name(session))
        if stale or outcome.dead:
            await asyncio.to_thread(_update_error_files, root.path, session, stale, outcome.dead)
        self._count(batch, bid, outcome)
        return self._retry_of(batch, outcome, removed_pending=batch.removed if not removed else [])

    def _apply_review(self, batch: Batch, outcome: _Outcome, review: Review) -> None:
        """The rules' verdict: records ready to write, or the whole batch rejected."""
        self.tally.validation_failures.update(review.invalid_types)
        self.tally.drift_alerts.update(review.drifted_types)
        if review.rejected is None:
            outcome.records = review.records
            return
        outcome.dead += [
            DeadLetter(r.relpath, batch.session, review.rejected, batch.attempt, stat=r.stat)
            for r in outcome.records
        ]
        outcome.records = []

    async def _still_rejected(self, root_id: int, session: str) -> bool:
        """Whether files of the session are still dead-lettered for what its rules said."""
        rows = await self.ledger.dead_letters(root_id=root_id, session=session)
        return any(row.error_class in REJECTION_CLASS_NAMES for row in rows)

    def _crate(
        self,
        batch: Batch,
        current: dict[str, CurrentFile],
        entities: dict[str, list[dict[str, Any]]],
        records: list[FileRecord],
    ) -> dict[str, Any]:
        """The session crate: every current file (minus removed ones) and this batch's records."""
        fresh = {r.relpath for r in records}
        # Each file's ledger record holds its File entity and the contextual entities it needs.
        listed = [
            _entity_group(c.entity)
            for p, c in current.items()
            if p not in entities and p not in batch.removed
        ]
        listed += [entities[p] for p in sorted(fresh) if crate_can_list(p)]
        return build_crate(
            root_name=batch.root.name,
            session=batch.session,
            entities=[group[0] for group in listed],
            contextual=[extra for group in listed for extra in group[1:]],
            site=self.config.site,
        )

    def _handle_conflicts(
        self,
        conflicts: list[str],
        crate_relpath: str,
        session: str,
        outcome: _Outcome,
        bid: str,
        attempt: int,
    ) -> bool:
        """Dead-letter files whose sidecar is blocked by a file that is not ours; True if any was."""
        if not conflicts:
            return False
        if crate_relpath in conflicts:
            # Someone else's ro-crate-metadata.json is data; it is never overwritten.
            log.warning(
                "the session folder holds an ro-crate-metadata.json not written by fair-agent; left as is",
                extra={"session": session},
            )
        blocked = {c.removesuffix(".fair.json") for c in conflicts if c != crate_relpath}
        for record in [r for r in outcome.records if r.relpath in blocked]:
            error = OutputConflictError(
                f"a file named {sidecar_name(record.name)!r} that fair-agent did not write is in the way "
                f"of the sidecar of {record.relpath!r}"
            )
            outcome.dead.append(
                DeadLetter(record.relpath, record.session, error, attempt, stat=record.stat, batch_id=bid)
            )
        outcome.records = [r for r in outcome.records if r.relpath not in blocked]
        return bool(blocked)

    async def _hash_all(self, batch: Batch, current: dict[str, CurrentFile]) -> _Outcome:
        groups = list(hash_groups(batch.files))
        results = await asyncio.gather(
            *(self.hasher.hash_group(batch.root.path, [f.relpath for f in group]) for group in groups)
        )
        outcome = _Outcome()
        for listed, result in zip(batch.files, (r for group in results for r in group), strict=True):
            self._progress(1, listed.size)
            if isinstance(result, FileVanishedError):
                outcome.vanished.append(Skip(listed.relpath, f"vanished before it was read: {result}"))
            elif isinstance(result, Exception):
                self._defer(outcome, [listed], result, batch, None)
            elif (known := current.get(listed.relpath)) is not None and known.sha256 == result.sha256:
                outcome.touched.append(result.stat)  # same bytes, new stat: not a new version
            else:
                outcome.records.append(
                    _new_record(batch, result, self.reader.detect(listed.relpath, result.head))
                )
                outcome.heads[listed.relpath] = result.head
        return outcome

    async def _extract_all(self, batch: Batch, outcome: _Outcome) -> None:
        """Each new record's metadata from its extractor; a file no extractor can read is dead-lettered."""
        # Each file's extractor as its rule says, asked once per file.
        choices = {r.relpath: self.curator.extractor_for(batch.root.name, r.relpath) for r in outcome.records}
        # An empty file has nothing to extract; it is ingested with its "empty file" warning.
        wanted = [
            r
            for r in outcome.records
            if r.stat.size and self.reader.wants(r.relpath, outcome.heads[r.relpath], choices[r.relpath])
        ]
        if not wanted:
            return
        results = await asyncio.gather(
            *(
                self.reader.read(
                    batch.root.path, r.relpath, outcome.heads[r.relpath], r.stat.inode, choices[r.relpath]
                )
                for r in wanted
            ),
            return_exceptions=True,
        )
        failed: set[str] = set()
        extracted: dict[str, dict[str, Any]] = {}
        for record, result in zip(wanted, results, strict=True):
            if isinstance(result, FileVanishedError):
                outcome.vanished.append(Skip(record.relpath, f"vanished before it was read: {result}"))
                failed.add(record.relpath)
            elif isinstance(result, Exception):
                self._defer(outcome, [record.stat], result, batch, None)
                failed.add(record.relpath)
            elif isinstance(result, dict):
                extracted[record.relpath] = result
        outcome.records = [
            replace(r, metadata={**r.metadata, **extracted.get(r.relpath, {})})
            for r in outcome.records
            if r.relpath not in failed
        ]

    def _defer(
        self,
        outcome: _Outcome,
        files: list[FileStat],
        exc: Exception,
        batch: Batch,
        bid: str | None,
        *,
        crate: bool = False,
    ) -> None:
        """Files that failed: kept for a later attempt while the budget lasts, else dead letters.

        ``crate``: the session crate was not written either and must be retried with them.
        """
        kind = retry_kind(exc)
        delay = None if kind is None else delay_for(kind, batch.attempt, self.config.retry)
        if kind is None or delay is None:
            if crate:
                # The crate is ours, not a file to dead-letter: leave it for the next run, and say so.
                self.tally.uncommitted += 1
                log.error(f"the session crate could not be written: {exc}", extra={"session": batch.session})
            outcome.dead += [
                DeadLetter(f.relpath, batch.session, exc, batch.attempt, stat=f, batch_id=bid) for f in files
            ]
            return
        outcome.retry += files
        outcome.retry_crate = outcome.retry_crate or crate
        outcome.retry_delay = max(outcome.retry_delay, delay)
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

    def _retry_of(self, batch: Batch, outcome: _Outcome, removed_pending: list[str]) -> Retry | None:
        if not outcome.retry and not outcome.retry_crate:
            return None
        retry = Batch(
            root=batch.root,
            session=batch.session,
            is_folder=batch.is_folder,
            files=outcome.retry,
            removed=removed_pending,
            rewrite_crate=batch.rewrite_crate or outcome.retry_crate,
            attempt=batch.attempt + 1,
        )
        return Retry(retry, outcome.retry_delay)

    async def _dead_letter_all(self, batch: Batch, exc: Exception) -> None:
        error = UnexpectedError(_without_root(f"{type(exc).__name__}: {exc}", batch.root.path))
        dead = [
            DeadLetter(f.relpath, batch.session, error, attempts=batch.attempt, stat=f) for f in batch.files
        ]
        try:
            await self.ledger.commit_batch(BatchCommit(batch.root, batch.session, None, [], {}, [], dead))
        except Exception:
            log.exception("could not record dead letters", extra={"session": batch.session})
        self.tally.dead_lettered += len(dead)

    def _count(self, batch: Batch, bid: str, outcome: _Outcome) -> None:
        self.tally.files_ingested += len(outcome.records)
        self.tally.bytes_ingested += sum(r.stat.size for r in outcome.records)
        self.tally.touched += len(outcome.touched)
        self.tally.skipped += len(outcome.vanished)
        self.tally.dead_lettered += len(outcome.dead)
        for record in outcome.records:
            log.debug(
                "file ingested",
                extra={
                    "batch_id": bid,
                    "session": batch.session,
                    "file": record.relpath,
                    "sequence": record.sequence,
                },
            )
        if outcome.records:
            self.tally.batches += 1
            self.tally.last_success_unix = time.time()
            log.info(
                "batch ingested",
                extra={
                    "batch_id": bid,
                    "session": batch.session,
                    "files": len(outcome.records),
                    "bytes": sum(r.stat.size for r in outcome.records),
                },
            )
        for dead in outcome.dead:
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


def _entity_group(stored: str) -> list[dict[str, Any]]:
    """A ledger record's crate entities: a list (File entity first), or a lone File entity."""
    value = json.loads(stored)
    return value if isinstance(value, list) else [value]


def crate_can_list(relpath: str) -> bool:
    """RO-Crate ids are Unicode: a name that is not valid UTF-8 cannot be resolved by a crate reader."""
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _new_record(batch: Batch, hashed: Hashed, detected: Detected) -> FileRecord:
    warnings = []
    if hashed.stat.size == 0:
        warnings.append("empty file")
    if batch.is_folder and not crate_can_list(hashed.stat.relpath):
        warnings.append(
            "the file name is not valid UTF-8, so the session's RO-Crate cannot list it "
            "(RO-Crate ids are Unicode); this sidecar is its record"
        )
    return FileRecord(
        stat=hashed.stat,
        session=batch.session,
        sha256=hashed.sha256,
        encoding_format=detected.media_type,
        metadata={"format": detected.as_metadata()},
        warnings=tuple(warnings),
    )


def _without_root(message: str, root: Path) -> str:
    # Messages of unexpected errors may carry absolute paths; outputs never do.
    message = re.sub(r"/proc/self/fd/\d+", "<the file>", message)
    return message.replace(str(root) + "/", "").replace(str(root), "<watch root>")


def _update_error_files(root: Path, session: str, stale: list[str], dead: list[DeadLetter]) -> None:
    """Tell the person at the instrument what failed; remove the notes of what now passed.

    A file that failed on its own gets an error file beside it; a session its rules rejected gets
    one beside the session, naming every file and field.
    """
    remove_files(root, stale)
    rejected = [d for d in dead if isinstance(d.error, SessionRejectedError)]
    documents: list[Document] = [
        (root, error_name(d.relpath), error_document(d, root))
        for d in dead
        # Nothing but loose-file sidecars goes into the watch root: a session folder that cannot
        # be read is reported in the log and the ledger only.
        if not isinstance(d.error, SessionRejectedError) and ("/" in d.relpath or d.stat is not None)
    ]
    if rejected:
        documents.append((root, error_name(session), session_error_document(session, rejected, root)))
    try:
        result = write_documents(documents)
    except AgentError as exc:
        log.warning(f"could not write an error file next to the data: {exc}")
        return
    for conflict in result.conflicts:
        log.warning(f"a file not written by fair-agent is in the way of the error file {conflict!r}")


def session_error_document(session: str, rejected: list[DeadLetter], root: Path) -> dict[str, Any]:
    """The ``.fair.error.json`` beside a rejected session: every file, every field, in words."""
    first = rejected[0]
    error = first.error
    assert isinstance(error, SessionRejectedError)
    return {
        "session": display_name(session),
        "status": "not ingested",
        "reason": _without_root(str(error), root),
        "problems": error.details,
        "filesHeldBack": sorted(display_name(d.relpath.removeprefix(session + "/")) for d in rejected),
        "whatToDo": first.advice or DEFAULT_ADVICE,
        "category": first.category,
        "errorClass": type(error).__name__,
        "attempts": max(d.attempts for d in rejected),
        "generatedBy": {"name": AGENT_NAME, "version": __version__},
    }


def error_document(dead: DeadLetter, root: Path) -> dict[str, Any]:
    """The ``.fair.error.json`` for the person at the instrument. Deterministic: no clock in it.

    Reasons can quote a library's message; no absolute path of the machine may go out with it.
    """
    return {
        "file": display_name(dead.relpath.rsplit("/", 1)[-1]),
        "session": display_name(dead.session),
        "status": "not ingested",
        "reason": _without_root(str(dead.error), root),
        "whatToDo": dead.advice or DEFAULT_ADVICE,
        "category": dead.category,
        "errorClass": type(dead.error).__name__,
        "attempts": dead.attempts,
        "generatedBy": {"name": AGENT_NAME, "version": __version__},
    }
