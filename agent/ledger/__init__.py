"""The SQLite ledger: which file versions were ingested, in which batch, and what failed.

Storage only: it takes and gives the core's values (roots, file records, dead letters, drift
baselines) and imports nothing of the agent's above the core. Open it with
``async with Ledger.open(path) as ledger`` (or ``Ledger.open_readonly``).
"""

from .drift import DriftReport, DriftUpdate
from .rows import BatchCommit, CurrentFile, DeadLetterRow, FileVersion
from .store import Ledger

__all__ = [
    "BatchCommit",
    "CurrentFile",
    "DeadLetterRow",
    "DriftReport",
    "DriftUpdate",
    "FileVersion",
    "Ledger",
]
