"""What a search of the catalogue asks, shared by `fair-agent catalogue search` and the web page:
the filters, the one WHERE clause they make, and the records it returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

RESULT_COLUMNS = (
    "agent",
    "root",
    "session",
    "path",
    "version",
    "sha256",
    "size",
    "format",
    "dataset_type",
    "instrument",
    "acquired_at",
    "validation",
    "drift",
    "storage_uri",
    "verified_at",
    "dataset",
)


@dataclass(frozen=True, slots=True)
class Filters:
    text: str | None = None
    experiment: str | None = None
    instrument: str | None = None
    dataset_type: str | None = None
    agent: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    validation: str | None = None

    def active(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


WHERE = (
    "current AND NOT removed "
    "AND ($1::text IS NULL OR search @@ websearch_to_tsquery('simple', $1)) "
    "AND ($2::text IS NULL OR dataset ->> 'experiment_id' = $2 OR session = $2 "
    "OR starts_with(session, $2 || '_')) "
    "AND ($3::text IS NULL OR instrument = $3) "
    "AND ($4::text IS NULL OR dataset_type = $4) "
    "AND ($5::text IS NULL OR agent = $5) "
    "AND ($6::timestamptz IS NULL OR coalesce(acquired_at, committed_at) >= $6) "
    "AND ($7::timestamptz IS NULL OR coalesce(acquired_at, committed_at) < $7) "
    "AND ($8::text IS NULL OR validation = $8)"
)


#: The search page's queries ($1..$8 the filters; $9, $10 limit and offset), also timed by bench_web.
SEARCH_SQL = (
    f"SELECT {', '.join(RESULT_COLUMNS)} FROM files WHERE {WHERE} "
    "ORDER BY coalesce(acquired_at, committed_at) DESC NULLS LAST, agent, root, path LIMIT $9 OFFSET $10"
)
#: The search page's queries ($1..$8 the filters; $9, $10 limit and offset), also timed by bench_web.
SEARCH_SQL = (
    f"SELECT {', '.join(RESULT_COLUMNS)} FROM files WHERE {WHERE} "
    "ORDER BY coalesce(acquired_at, committed_at) DESC NULLS LAST, agent, root, path LIMIT $9 OFFSET $10"
)


def params_of(f: Filters) -> tuple[Any, ...]:
    """The filters as the queries' $1..$8."""
    return (f.text, f.experiment, f.instrument, f.dataset_type, f.agent, f.since, f.until, f.validation)


def record(row: Any) -> dict[str, Any]:
    """A result as JSON-ready values (times in ISO 8601)."""
    return {k: (row[k].isoformat() if isinstance(row[k], datetime) else row[k]) for k in RESULT_COLUMNS}
