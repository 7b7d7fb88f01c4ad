"""Reading a batch: every file hashed once, its format detected, and its extractor's metadata read.

The stages before curation. Each file is read whole once, by the hasher; the extractor then reads
the very file that was hashed (same inode). A file that vanished is recorded as skipped; one that
failed is deferred for a retry or dead-lettered (see outcome).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .. import AGENT_NAME, __version__
from ..core.batch import Batch, Skip
from ..core.config import RetrySettings
from ..core.errors import FileVanishedError
from ..core.records import DERIVED_TABLE, EXTRACTION_FAILURE, FileRecord
from ..extractors.generic import Detected
from ..extractors.runner import DeriveRequest, MetadataReader, Wanted
from ..ledger import CurrentFile
from .crate import crate_can_list
from .hashing import Hashed, Hasher, hash_groups
from .outcome import Outcome, Tally

#: Called as (files, bytes) whenever files are finished with, for progress bars.
ProgressCallback = Callable[[int, int], None]
#: What a file's rule says about reading it: (root name, path) -> (the extractor: "auto", "none" or
#: an extractor's name; the derived table it asks for: (rule name, [transform] as JSON) or None).
ReadingChoice = Callable[[str, str], tuple[str, tuple[str, dict[str, Any]] | None]]


class BatchReader:
    def __init__(
        self,
        hasher: Hasher,
        extraction: MetadataReader,
        reading_for: ReadingChoice,
        retry_settings: RetrySettings,
        tally: Tally,
        progress: ProgressCallback,
    ) -> None:
        self.hasher = hasher
        self.extraction = extraction
        self._reading_for = reading_for
        self._retry_settings = retry_settings
        self._tally = tally
        self._progress = progress

    async def read(self, batch: Batch, current: dict[str, CurrentFile]) -> Outcome:
        """The batch's new records with their metadata; unchanged bytes are only ``touched``."""
        outcome = await self._hash_all(batch, current)
        await self._extract_all(batch, outcome)
        return outcome

    async def _hash_all(self, batch: Batch, current: dict[str, CurrentFile]) -> Outcome:
        groups = list(hash_groups(batch.files))
        results = await asyncio.gather(*(self.hasher.hash_group(batch.root.path, group) for group in groups))
        outcome = Outcome(batch, self._retry_settings, self._tally)
        for listed, result in zip(batch.files, (r for group in results for r in group), strict=True):
            self._progress(1, listed.size)
            if isinstance(result, FileVanishedError):
                outcome.vanished.append(Skip(listed.relpath, f"vanished before it was read: {result}"))
            elif isinstance(result, Exception):
                outcome.defer([listed], result, None)
            elif (known := current.get(listed.relpath)) is not None and known.sha256 == result.sha256:
                outcome.touched.append(result.stat)  # same bytes, new stat: not a new version
            else:
                detected = self.extraction.detect(listed.relpath, result.head)
                outcome.records.append(new_record(batch, result, detected))
                outcome.heads[listed.relpath] = result.head
        return outcome

    async def _extract_all(self, batch: Batch, outcome: Outcome) -> None:
        """Each new record's metadata from its extractor (an extractor's failure is a warning)."""
        # An empty file has nothing to extract; it is ingested with its "empty file" warning.
        wanted = [r for r in outcome.records if r.stat.size]
        # In groups, as they are hashed: one thread hand-off per group, and the groups in parallel.
        groups = list(hash_groups([r.stat for r in wanted]))
        by_path = {r.relpath: r for r in wanted}
        results = await asyncio.gather(
            *(
                self.extraction.read_group(
                    batch.root.path, [self._wanted(batch, outcome, by_path[f.relpath]) for f in group]
                )
                for group in groups
            ),
            return_exceptions=True,
        )
        # A group that failed as a whole (the agent stopping under it) fails each of its files.
        each = [
            r
            for group, done in zip(groups, results, strict=True)
            for r in (done if isinstance(done, list) else [done] * len(group))
        ]
        failed: set[str] = set()
        extracted: dict[str, dict[str, Any]] = {}
        for record, result in zip(wanted, each, strict=True):
            if isinstance(result, FileVanishedError):
                outcome.vanished.append(Skip(record.relpath, f"vanished before it was read: {result}"))
                failed.add(record.relpath)
            elif isinstance(result, Exception):
                outcome.defer([record.stat], result, None)
                failed.add(record.relpath)
            elif isinstance(result, dict) and result:
                extracted[record.relpath] = result
        # A file no extractor read (most binary files: {}) keeps its record as it is.
        outcome.records = [
            with_extracted(r, extracted[r.relpath], outcome.derived_temps) if r.relpath in extracted else r
            for r in outcome.records
            if r.relpath not in failed
        ]

    def _wanted(self, batch: Batch, outcome: Outcome, record: FileRecord) -> Wanted:
        choice, transform = self._reading_for(batch.root.name, record.relpath)
        derive = None
        if transform is not None:
            rule, spec = transform
            provenance = {
                "derivedFrom": record.name,
                "derivedFromSha256": record.sha256,
                "rule": rule,
                "generator": f"{AGENT_NAME} {__version__}",
            }
            derive = DeriveRequest(spec, str(spec.get("format", "parquet")), provenance)
        return Wanted(record.relpath, outcome.heads[record.relpath], record.stat.inode, choice, derive)


def with_extracted(
    record: FileRecord, extracted: dict[str, Any], derived_temps: dict[str, str] | None = None
) -> FileRecord:
    """The record with its extractor's metadata; what the extractor found wrong joins its warnings.
    A derived table comes out of the metadata into the record (its temp file into ``derived_temps``)."""
    derived = extracted.pop(DERIVED_TABLE, None) if DERIVED_TABLE in extracted else None
    warnings = record.warnings + tuple(w for w in extracted.get("warnings", ()) if isinstance(w, str))
    if (failed := extracted.get(EXTRACTION_FAILURE)) is not None:
        warnings += (f"the {failed['extractor']} extractor could not read the file: {failed['message']}",)
    report: dict[str, Any] = {}
    if isinstance(derived, dict):
        if "error" in derived:
            warnings += (f"no derived table was made: {derived['error']}",)
        else:
            report = dict(derived)
            warnings += tuple(str(w) for w in report.pop("warnings", ()))
            if "temp" in report and derived_temps is not None:
                derived_temps[record.relpath] = str(report.pop("temp"))
    return record.changed(metadata={**record.metadata, **extracted}, warnings=warnings, derived=report)


def new_record(batch: Batch, hashed: Hashed, detected: Detected) -> FileRecord:
    warnings = []
    if hashed.stat.size == 0:
        warnings.append("empty file")
    if hashed.stat.mtime_clamped:
        warnings.append(
            "the file's modification time is outside 1677-2262, which the ledger cannot hold; "
            "dateModified is the nearest time it can"
        )
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
