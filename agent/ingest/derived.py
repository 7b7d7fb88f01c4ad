"""Putting a batch's derived tables in place, before the sidecars that describe them.

Each table was written by an extraction worker into a temp file beside its raw file. Before the
sidecars are written, each is renamed over ``<file>.tidy.<format>`` unless a file the agent did not
write is there (the ledger knows the bytes of every table it put anywhere, recorded before the
rename); then the sidecar says the table was not written, and why. Redone after a crash, the same
rule gives the same bytes, and a table already in place is left as it is.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from ..core.batch import Root
from ..core.records import FileRecord
from ..fs.derived import DerivedPlacement, Placement, discard_derived_temp, place_derived
from ..ledger import Ledger
from .outcome import Outcome


class DerivedTables:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def place(self, root: Root, outcome: Outcome) -> None:
        """Every derived table of the batch's records in place; each record says where its is.
        A temp file leaves ``outcome.derived_temps`` once placed (or refused): what is left there
        on a failure is removed by the pipeline."""
        tables = {
            r.relpath: DerivedPlacement(
                r.relpath, outcome.derived_temps[r.relpath], r.derived["format"], r.derived["sha256"]
            )
            for r in outcome.records
            if r.relpath in outcome.derived_temps
        }
        if not tables:
            return
        await self.ledger.derived.record(root.id, [(t.target, t.sha256) for t in tables.values()])
        placed: dict[str, Placement] = {}
        for path, table in tables.items():
            ours = await self.ledger.derived.written(root.id, table.target)
            placed[path] = await asyncio.to_thread(place_derived, root.path, table, ours.__contains__)
            del outcome.derived_temps[path]
        outcome.records = [
            _described(r, tables[r.relpath], placed[r.relpath]) if r.relpath in tables else r
            for r in outcome.records
        ]


def _described(record: FileRecord, table: DerivedPlacement, placement: str) -> FileRecord:
    name = table.target.rsplit("/", 1)[-1]
    if placement in ("conflict", "unverified"):
        why = (
            f"a file named {name!r} that fair-agent did not write is in its place (move it away, and the "
            "table is written when the file is next ingested)"
            if placement == "conflict"
            else "the bytes its extraction worker wrote are not those it reported"
        )
        return replace(
            record, derived={}, warnings=(*record.warnings, f"no derived table was written: {why}")
        )
    return replace(record, derived={"name": name, **record.derived})


def discard_derived_temps(root: Path, temps: dict[str, str]) -> None:
    """Remove the temp files of derived tables that will not be placed. Blocking."""
    for relpath, temp in temps.items():
        discard_derived_temp(root, relpath, temp)
    temps.clear()
