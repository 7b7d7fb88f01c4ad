"""One small hierarchy of failures, each with one meaning and a category.

A *retryable* failure may go away by itself (a file still being written, a busy database); the
pipeline backs off and tries again. A *terminal* one needs a person (a file nobody may read, a
corrupt archive); it goes to the dead-letter table with a reason that says what to do.
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    RETRYABLE = "retryable"
    TERMINAL = "terminal"


class RetryKind(StrEnum):
    """Kinds of retryable failure; each may have its own retry budget (see RetrySettings)."""

    #: A file still being written (it changed while it was read).
    CHANGING = "changing"
    #: Reading failed: an I/O error, a flaky network share, a file gone for a moment.
    IO = "io"
    #: Writing a sidecar or crate failed: disk full, read-only filesystem, permission denied.
    OUTPUT = "output"
    #: The ledger stayed locked by another writer.
    LEDGER = "ledger"


class AgentError(Exception):
    """Base of every failure the agent reports about its input or its own state."""

    category: Category = Category.TERMINAL
    #: What the person at the instrument can do about it; shown in ``.fair.error.json``.
    advice: str = ""

    def __init__(self, message: str, *, advice: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if advice is not None:
            self.advice = advice

    def __str__(self) -> str:
        return self.message


class RetryableError(AgentError):
    category = Category.RETRYABLE
    #: Which retry policy applies.
    retry_kind = RetryKind.IO


class TerminalError(AgentError):
    category = Category.TERMINAL


class ConfigError(TerminalError):
    """The configuration cannot be used; the agent refuses to start."""


class StateLockedError(TerminalError):
    """Another agent holds the state directory; this one refuses to start."""


class RootUnavailableError(ConfigError):
    """A watch root is not there (yet): a share not mounted, a disk not attached. May pass."""


class FileChangedError(RetryableError):
    """The file's size, mtime or identity changed while it was read: it is still being written."""

    retry_kind = RetryKind.CHANGING

    advice = "Wait until the instrument has finished writing; the agent tries again by itself."


class FileVanishedError(RetryableError):
    """The file was listed but was gone when the agent came to read it."""


class FileReadError(RetryableError):
    """An I/O error while reading (a flaky network share, a disk hiccup); worth another try."""


class AbortedError(RetryableError):
    """Work stopped because the agent is shutting down; the next start does it again."""


class FileUnreadableError(TerminalError):
    """The agent may not read the file (permission denied or a similar refusal by the OS)."""

    advice = "Give the agent's user read permission on the file (and its folder), then run replay."


class NotRegularFileError(TerminalError):
    """The path is a FIFO, socket or device: there are no bytes to ingest."""


class OutputWriteError(RetryableError):
    """A sidecar or crate could not be written next to the data (disk full, read-only, denied)."""

    retry_kind = RetryKind.OUTPUT

    advice = "Check free space and the agent's write permission on the data folder."

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"cannot write {what!r} next to the data: {reason}")
        self.reason = reason

    def about(self, what: str) -> OutputWriteError:
        """The same failure, said of another output (each file of a batch names its own sidecar)."""
        return OutputWriteError(what, self.reason)


class SidecarNameTooLongError(TerminalError):
    """The file's name is so long that its sidecar's name would not fit the filesystem's limit."""

    advice = (
        "Rename the file to a shorter name (at most 245 bytes: the sidecar adds '.fair.json' and a "
        "name may have 255); the agent ingests it under its new name."
    )


class OutputConflictError(TerminalError):
    """A file the agent did not write sits where its sidecar must go; it is never overwritten."""

    advice = "Rename or move the file that has the sidecar's name; the agent tries again then."


class LedgerBusyError(RetryableError):
    """The ledger is locked by another writer for longer than the busy timeout."""

    retry_kind = RetryKind.LEDGER


class UnexpectedError(TerminalError):
    """A failure the agent has no specific name for; recorded with the original class and message."""


class LedgerError(TerminalError):
    """The ledger cannot be opened or is not a fair-agent ledger; the agent refuses to start."""


class SessionRejectedError(TerminalError):
    """A session its rules reject as a whole; nothing is written for it but an error file beside it.

    ``details`` lists, file by file, what is wrong, for the ``.fair.error.json``.
    """

    def __init__(self, message: str, *, details: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class ValidationFailedError(SessionRejectedError):
    """Fields the session's rule requires are missing or wrong."""

    advice = (
        "Fix what is listed (usually the folder name or the instrument's export settings), then "
        "export or copy the session again; the agent tries again when a file changes. If the rule "
        "itself is wrong, ask the data manager to fix it and run `fair-agent replay --session FOLDER`."
    )


class DriftQuarantinedError(SessionRejectedError):
    """The session's metadata no longer has the shape its dataset type's baseline expects."""

    advice = (
        "The instrument's export changed (new, missing or retyped fields). If the change is "
        "deliberate, run `fair-agent drift --accept DATASET_TYPE`, then "
        "`fair-agent replay --session FOLDER`; otherwise restore the export template and export again."
    )


#: Dead letters of these classes are a session's rejection by its rules, held as one unit.
REJECTION_CLASS_NAMES = frozenset(cls.__name__ for cls in (ValidationFailedError, DriftQuarantinedError))
