"""How values go into SQLite: paths as TEXT (raw bytes when not valid UTF-8), times as ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime

DbText = str | bytes


def to_db(text: str) -> DbText:
    """Paths go in as TEXT; a name that is not valid UTF-8 goes in as its raw bytes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
    return text


def from_db(value: DbText) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def below(folder: str) -> tuple[str, str]:
    """Bounds of the text paths below ``folder`` ('0' follows '/'); none for a name stored as bytes."""
    return (folder + "/", folder + "0") if isinstance(to_db(folder), str) else ("", "")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
