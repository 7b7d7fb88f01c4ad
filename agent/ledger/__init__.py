"""The SQLite ledger: which file versions were ingested, in which batch, and what failed."""

from .drift import DriftReport, DriftUpdate
from .store import BatchCommit, CurrentFile, DeadLetter, DeadLetterRow, FileVersion, Ledger

__all__ = [
    "BatchCommit",
    "CurrentFile",
    "DeadLetter",
    "DeadLetterRow",
    "DriftReport",
    "DriftUpdate",
    "FileVersion",
    "Ledger",
]
