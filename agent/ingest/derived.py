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
from ..fs.derived import DerivedPlacement, discard_derived_temp, place_derived
from ..ledger import Ledger
from .outcome import Outcome


class DerivedTables:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def place(self, root: Root, outcome: Outcome) -> None:
        """Every derived table of the batch's records in place; each record says where its is."""
        tables = {
            r.relpath: DerivedPlacement(
                r.relpath, outcome.derived_temps.pop(r.relpath), r.derived["format"], r.derived["sha256"]
            )
            for r in outcome.records
            if r.relpath in outcome.derived_temps
        }
        if not tables:
            return
        await self.ledger.derived.record(root.id, [(t.target, t.sha256) for t in tables.values()])
        ours = {t.target: await self.ledger.derived.written(root.id, t.target) for t in tables.values()}
        placed = await asyncio.to_thread(
            lambda: {
                path: place_derived(root.path, t, ours[t.target].__contains__) for path, t in tables.items()
            }
        )
        outcome.records = [
            _described(r, tables[r.relpath], placed[r.relpath]) if r.relpath in tables else r
            for r in outcome.records
        ]


def _described(record: FileRecord, table: DerivedPlacement, placement: str) -> FileRecord:
    name = table.target.rsplit("/", 1)[-1]
    if placement == "conflict":
        warning = (
            f"no derived table was written: a file named {name!r} that fair-agent did not write is in "
            "its place (move it away, and the table is written when the file is next ingested)"
        )
        return replace(record, derived={}, warnings=(*record.warnings, warning))
    return replace(record, derived={"name": name, **record.derived})


def discard_derived_temps(root: Path, temps: dict[str, str]) -> None:
    """Remove the temp files of derived tables that will not be placed. Blocking."""
    for relpath, temp in temps.items():
        discard_derived_temp(root, relpath, temp)
    temps.clear()
