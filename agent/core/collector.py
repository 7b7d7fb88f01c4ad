"""The cyclic garbage collector, tuned for a process that handles many small files.

Python collects its youngest generation every 700 container allocations, and every collection
stops every thread, holding the GIL. A small file's sidecar, crate entity and records make
hundreds of short-lived dicts that reference counting frees anyway; with the default thresholds a
scan of 20,000 small CSVs ran about 1,400 collections, 0.66 s of the agent's time, half of it in
full collections walking every module, class and schema imported at start-up.

``settle`` is called once what a process needs is imported: those objects are frozen (left out of
every later collection; they live as long as the process does anyway), and the young generation
is collected every YOUNG_THRESHOLD allocations instead of 700. Cycles are still collected, a
little later: our own code makes few (reference counting frees the rest at once).
"""

from __future__ import annotations

import gc

#: Container allocations (net of frees) between collections of the youngest generation.
YOUNG_THRESHOLD = 10_000
#: Collections of a generation between collections of the next (Python's default is 10).
OLDER_THRESHOLD = 20


def settle() -> None:
    """Freeze what is alive now and space collections out (see the module's text). Idempotent.

    Only at start-up, before any file is read: frozen garbage is never freed (a cycle a file's
    reading left would stay for the process's life). No collection first: the little garbage the
    imports leave stays frozen with them, where a full collection would cost 10 ms of every start."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
