"""process_batch: the one place where the stages meet.

Order of effects for a batch: hash -> extract -> curate (validate, enrich, check drift) -> write
every sidecar (and the session crate) atomically -> commit the ledger in one transaction. Killed
before the commit, the batch is redone and rewrites byte-identical outputs; killed after it,
nothing is redone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from ..core import jsontext
from ..core.batch import Batch, FileStat, batch_id
from ..core.config import AgentConfig
from ..core.errors import (
    REJECTION_CLASS_NAMES,
    AgentError,
    OutputConflictError,
    OutputWriteError,
    RetryKind,
    SidecarNameTooLongError,
    UnexpectedError,
)
from ..core.events import OutgoingEvent, batch_events
from ..core.naming import CRATE_NAME, NAME_MAX, PREVIEW_NAME, SIDECAR_SUFFIX, error_name, fits, sidecar_name
from ..core.records import DeadLetter, FileRecord
from ..core.retry import delay_for, retry_kind
from ..extractors.runner import MetadataReader
from ..fs.outputs import Document, OutputWriter
from ..ledger import BatchCommit, Ledger
from ..rules import RuleSet
from .crate import SessionCrate, crate_can_list, entity_group
from .curate import Curator, Review
from .derived import DerivedTables, discard_derived_temps
from .errordocs import update_error_files, without_root
from .hashing import Hasher
from .metadata import build_sidecar, crate_entities, file_properties
from .outcome import Outcome, Retry, Tally
from .reading import BatchReader, ProgressCallback

log = logging.getLogger("fair_agent.pipeline")

#: What a batch did about its session's crate (see BatchCommit.crate).
CrateState = Literal["written", "pending"] | None


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
        self.extraction = MetadataReader.from_config(config)
        #: Without a rule set, every file gets the built-in generic rule.
        self.rules = rules if rules is not None else RuleSet([])
        self.curator = Curator(self.rules, ledger, config.site.timezone)
        self.tally = Tally()
        self.reader = BatchReader(
            hasher,
            self.extraction,
            self.curator.reading_for,
            config.retry,
            self.tally,
            progress or (lambda files, size: None),
        )
        self.derived = DerivedTables(ledger)
        #: Told each batch's duration in seconds (metrics).
        self._on_batch = on_batch or (lambda seconds: None)
        # Two batches of one session must not interleave: the second rewrites the crate the first
        # wrote, and must see the first one's ledger rows.
        self._locks = _SessionLocks()

    def close(self) -> None:
        self.extraction.close()

    async def process_batch(self, batch: Batch) -> Retry | None:
        """Ingest one batch (a large one in parts). Never raises for bad input: failures become
        dead letters.

        Returns what failed transiently, with how long to wait before trying it again; the caller
        resubmits it then (retries never sleep in a worker).
        """
        async with self._locks.hold((batch.root.id, batch.session)):
            parts = batch.parts(self.config.batch_max_files)
            retries = [retry for part in parts if (retry := await self._process_part(part)) is not None]
            return Retry.merge(retries, parts=len(parts))

    async def _process_part(self, batch: Batch) -> Retry | None:
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
        current = await self.ledger.current_files(root.id, session, [f.relpath for f in batch.files])
        previously_dead = set(await self.ledger.dead_letter_signatures(root.id, session))
        outcome = await self.reader.read(batch, current)
        try:
            review = await self.curator.review(batch, outcome.records)
            try:
                return await self._record(batch, previously_dead, outcome, review)
            finally:
                review.release()
        finally:
            if outcome.derived_temps:  # derived tables of files that were not ingested
                await asyncio.to_thread(discard_derived_temps, batch.root.path, outcome.derived_temps)

    async def _record(
        self, batch: Batch, previously_dead: set[str], outcome: Outcome, review: Review
    ) -> Retry | None:
        """Write the batch's outputs and commit it, as the rules' review decided."""
        root, session = batch.root, batch.session
        bid = await self._number(batch, outcome, review)
        await self.derived.place(batch.root, outcome)
        described = {r.relpath: file_properties(r) for r in outcome.records}
        entities = {
            r.relpath: crate_entities(r, batch.is_folder, described[r.relpath]) for r in outcome.records
        }
        removed, crate, crate_text = await self._write_outputs(batch, outcome, entities, described, bid)
        await self.ledger.commit_batch(
            BatchCommit(
                root=root,
                session=session,
                batch_id=bid,
                records=outcome.records,
                entities={r.relpath: jsontext.compact(entities[r.relpath]) for r in outcome.records},
                touched=outcome.touched,
                dead=outcome.dead,
                removed=removed,
                cleared_dead=batch.cleared_dead,
                drift=review.updates,
                crate=crate,
                ship=self.config.store is not None,
                events=self._events(batch, bid, outcome.records, removed, crate_text),
            )
        )
        await self.ledger.record_skips(root.id, session, outcome.vanished)
        await self._tell_the_person(batch, previously_dead, outcome)
        outcome.count(bid)
        return outcome.retry(removed_pending=batch.removed if not removed else [])

    async def _number(self, batch: Batch, outcome: Outcome, review: Review) -> str:
        """Apply the review; give the batch its id and each new record its sequence and version."""
        root, session = batch.root, batch.session
        latest = await self.ledger.latest_versions(root.id, [r.relpath for r in outcome.records])
        self._apply_review(batch, outcome, review)
        self._refuse_long_names(outcome)
        for relpath, error in batch.problems:
            outcome.dead.append(DeadLetter(relpath, session, error, attempts=batch.attempt))
        bid = batch_id(root.name, session, [(r.relpath, r.sha256) for r in outcome.records])
        outcome.dead = [d if d.batch_id else replace(d, batch_id=bid) for d in outcome.dead]
        outcome.records = [
            r.changed(batch_id=bid, sequence=seq, version=latest.get(r.relpath, 0) + 1)
            for seq, r in enumerate(outcome.records, start=1)
        ]
        return bid

    async def _write_outputs(
        self,
        batch: Batch,
        outcome: Outcome,
        entities: dict[str, list[dict[str, Any]]],
        described: dict[str, dict[str, Any]],
        bid: str,
    ) -> tuple[list[str], CrateState, str | None]:
        """Every sidecar, and the session crate, on disk; the removed files the commit may record,
        what became of the crate, and its text when this batch wrote it."""
        root, session = batch.root, batch.session
        documents: list[Document] = [
            (root.path, sidecar_name(r.relpath), build_sidecar(r, self.config.site, described[r.relpath]))
            for r in outcome.records
        ]
        crate_relpath = f"{session}/{CRATE_NAME}"
        preview_relpath = f"{session}/{PREVIEW_NAME}"
        needs_crate = (
            batch.is_folder
            and not batch.crate_later
            and bool(outcome.records or batch.rewrite_crate or batch.removed)
        )
        if needs_crate:
            crate_text, preview = await self._crate(batch, entities, outcome.records)
            documents += [(root.path, crate_relpath, crate_text), (root.path, preview_relpath, preview)]
        else:
            crate_text = []
        # A part of a large session that ingested files leaves the crate to the last part.
        crate: CrateState = (
            "written" if needs_crate else "pending" if batch.crate_later and outcome.records else None
        )
        if not documents:
            return batch.removed, crate, None
        try:
            written = await self.writer.write(documents)
            blocked = self._handle_conflicts(
                written.conflicts, (crate_relpath, preview_relpath), outcome, bid
            )
            if blocked and needs_crate:
                # A sidecar was blocked: its file is not ingested, so the crate must not list it.
                crate_text, preview = await self._crate(batch, entities, outcome.records)
                await self.writer.write(
                    [(root.path, crate_relpath, crate_text), (root.path, preview_relpath, preview)]
                )
        except AgentError as exc:
            # Disk full, read-only, permission denied: nothing new is committed; the files (and
            # the crate) are tried again later, or dead-lettered once the budget is spent, each
            # naming its own sidecar.
            files = [r.stat for r in outcome.records]
            outcome.defer(files, exc, bid, crate=needs_crate, error_of=_about_each_sidecar(exc))
            outcome.records = []
            return [], None, None
        if written.already_there and outcome.records:
            log.info(
                f"{written.already_there} output(s) of an interrupted run were already in place; "
                "now recorded in the ledger",
                extra={"session": session, "batch_id": bid},
            )
        return batch.removed, crate, "".join(crate_text) if needs_crate else None

    def _events(
        self, batch: Batch, bid: str, records: list[FileRecord], removed: list[str], crate_text: str | None
    ) -> list[OutgoingEvent]:
        """What the hub is told of this batch (nothing without a [bus], or when nothing changed)."""
        if self.config.bus is None or not (records or removed or crate_text):
            return []
        return batch_events(
            agent_name=self.config.agent_name,
            root_name=batch.root.name,
            session=batch.session,
            batch_id=bid,
            records=records,
            removed=removed,
            crate_text=crate_text,
            stamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
        )

    async def _tell_the_person(self, batch: Batch, previously_dead: set[str], outcome: Outcome) -> None:
        """Error files for what failed now; those of what passed now are removed."""
        root, session = batch.root, batch.session
        passed = (
            [r.relpath for r in outcome.records] + [t.relpath for t in outcome.touched] + batch.cleared_dead
        )
        stale = [error_name(p) for p in passed if p in previously_dead]
        if passed and previously_dead and not await self._still_rejected(root.id, session):
            stale.append(error_name(session))
        if stale or outcome.dead:
            await asyncio.to_thread(update_error_files, root.path, session, stale, outcome.dead)

    def _apply_review(self, batch: Batch, outcome: Outcome, review: Review) -> None:
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

    def _refuse_long_names(self, outcome: Outcome) -> None:
        """Files whose sidecar's name would not fit NAME_MAX: dead letters of their own, no more."""
        for record in [r for r in outcome.records if not fits(sidecar_name(r.name))]:
            length = len(os.fsencode(record.name))
            error = SidecarNameTooLongError(
                f"the name of {record.relpath!r} is {length} bytes long: its sidecar's name would be "
                f"longer than the {NAME_MAX} bytes a file name may have"
            )
            outcome.dead.append(
                DeadLetter(record.relpath, record.session, error, outcome.batch.attempt, stat=record.stat)
            )
        outcome.records = [r for r in outcome.records if fits(sidecar_name(r.name))]

    async def _still_rejected(self, root_id: int, session: str) -> bool:
        """Whether files of the session are still dead-lettered for what its rules said."""
        rows = await self.ledger.dead_letters(root_id=root_id, session=session)
        return any(row.error_class in REJECTION_CLASS_NAMES for row in rows)

    async def _crate(
        self, batch: Batch, entities: dict[str, list[dict[str, Any]]], records: list[FileRecord]
    ) -> tuple[list[str], list[str]]:
        """The session crate's text and its preview page: every current file (minus removed ones)
        and this batch's records.

        Each file's ledger record holds its File entity and the contextual entities it needs; they
        are read a chunk at a time, so a session of many files does not sit in memory as objects.
        """
        crate = SessionCrate(batch.root.name, batch.session, self.config.site)
        async for path, entity in self.ledger.session_entities(batch.root.id, batch.session):
            if path not in entities and path not in batch.removed:
                crate.add(entity_group(entity))
        for path in sorted(r.relpath for r in records):
            if crate_can_list(path):
                crate.add(entities[path])
        return await asyncio.to_thread(crate.documents)

    def _handle_conflicts(
        self, conflicts: list[str], session_documents: tuple[str, ...], outcome: Outcome, bid: str
    ) -> bool:
        """Dead-letter files whose sidecar is blocked by a file that is not ours; True if any was."""
        if not conflicts:
            return False
        for document in session_documents:
            if document in conflicts:
                # Someone else's ro-crate-metadata.json (or preview) is data; never overwritten.
                log.warning(
                    f"the session folder holds a {document.rsplit('/', 1)[-1]} not written by fair-agent; "
                    "left as is",
                    extra={"session": outcome.batch.session},
                )
        blocked = {c.removesuffix(SIDECAR_SUFFIX) for c in conflicts if c not in session_documents}
        attempt = outcome.batch.attempt
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

    async def _dead_letter_all(self, batch: Batch, exc: Exception) -> None:
        error = UnexpectedError(without_root(f"{type(exc).__name__}: {exc}", batch.root.path))
        dead = [
            DeadLetter(f.relpath, batch.session, error, attempts=batch.attempt, stat=f) for f in batch.files
        ]
        try:
            await self.ledger.commit_batch(BatchCommit(batch.root, batch.session, None, [], {}, [], dead))
        except Exception:
            # One at a time then: a row the ledger refuses must not keep the others out of it.
            for letter in dead:
                try:
                    await self.ledger.commit_batch(
                        BatchCommit(batch.root, batch.session, None, [], {}, [], [letter])
                    )
                except Exception:
                    log.exception(
                        "could not record a dead letter",
                        extra={"session": batch.session, "file": letter.relpath},
                    )
        self.tally.dead_lettered += len(dead)


def _about_each_sidecar(exc: AgentError) -> Callable[[FileStat], Exception] | None:
    """For a failed write, each file's own account: the sidecar it could not get."""
    if not isinstance(exc, OutputWriteError):
        return None
    return lambda f: exc.about(sidecar_name(f.relpath))


@contextmanager
def own_pipeline(
    config: AgentConfig,
    ledger: Ledger,
    rules: RuleSet | None,
    *,
    progress: ProgressCallback | None = None,
    on_batch: Callable[[float], None] | None = None,
) -> Iterator[Pipeline]:
    """A pipeline with a hasher and an output writer of its own (a scan's, a service helper's),
    all three closed after the block."""
    hasher = Hasher(config.hash_threads, config.read_chunk_bytes)
    writer = OutputWriter(config.workers, config.sync_strategy)
    pipeline = Pipeline(config, ledger, hasher, writer, rules, progress=progress, on_batch=on_batch)
    try:
        yield pipeline
    finally:
        hasher.close()
        writer.close()
        pipeline.close()
