"""What the web page and its JSON API ask the catalogue: every query parameterised, bounded, and
served by an index (see the catalogue's schema)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from ..search import SEARCH_SQL, WHERE, Filters, params_of, record

#: Results per page, and the deepest page served (OFFSET grows with the page).
PAGE_SIZE = 50
MAX_PAGE = 200
FACETS = ("dataset_type", "instrument", "agent", "validation")
#: Each facet lists its most frequent values only.
FACET_VALUES = 12


#: Every facet's counts and the total in one pass over the matches (grouping sets; the empty set
#: is the total). Run beside SEARCH_SQL, on another connection.
FACETS_SQL = (
    f"SELECT {', '.join(FACETS)}, {', '.join(f'grouping({f}) AS g_{f}' for f in FACETS)}, count(*) AS n "
    f"FROM files WHERE {WHERE} GROUP BY GROUPING SETS ({', '.join(f'({f})' for f in FACETS)}, ())"
)
#: The session page's queries ($1 agent, $2 root, $3 session).
SESSION_SQL = (
    "SELECT crate, crate_omitted, updated_at FROM sessions WHERE agent = $1 AND root = $2 AND session = $3"
)
SESSION_FILES_SQL = (
    "SELECT path, version, name, sha256, size, format, dataset_type, instrument, acquired_at, validation, "
    "drift, storage_uri, verified_at, removed, extraction_error FROM files "
    "WHERE agent = $1 AND root = $2 AND session = $3 AND current ORDER BY path"
)


class WebQueries:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def search(self, filters: Filters, page: int = 1) -> dict[str, Any]:
        """One page of current files, newest acquisition first; the total and the facet counts
        among all matches (two queries at once, on two connections)."""
        page = max(1, min(page, MAX_PAGE))
        params = params_of(filters)

        async def results() -> list[Any]:
            async with self._pool.acquire() as db:
                return list(await db.fetch(SEARCH_SQL, *params, PAGE_SIZE, (page - 1) * PAGE_SIZE))

        async def counts() -> list[Any]:
            async with self._pool.acquire() as db:
                return list(await db.fetch(FACETS_SQL, *params))

        rows, grouped = await asyncio.gather(results(), counts())
        facets: dict[str, list[dict[str, Any]]] = {facet: [] for facet in FACETS}
        total = 0
        for row in grouped:
            open_ = [f for f in FACETS if row[f"g_{f}"] == 0]
            if not open_:
                total = row["n"]
            elif row[open_[0]] is not None:
                facets[open_[0]].append({"value": row[open_[0]], "count": row["n"]})
        for values in facets.values():
            values.sort(key=lambda v: (-v["count"], str(v["value"])))
            del values[FACET_VALUES:]
        return {
            "page": page,
            "pageSize": PAGE_SIZE,
            "total": total,
            "results": [record(r) for r in rows],
            "facets": facets,
        }

    async def session(self, agent: str, root: str, session: str) -> dict[str, Any] | None:
        async with self._pool.acquire() as db:
            head = await db.fetchrow(SESSION_SQL, agent, root, session)
            if head is None:
                return None
            rows = await db.fetch(SESSION_FILES_SQL, agent, root, session)
        crate = head["crate"]
        files = [_plain(dict(r)) for r in rows]
        for f in files:
            # The catalogue's word: a second copy is stored and verified, and the catalogue holds it.
            f["safe_to_delete"] = bool(f["storage_uri"] and f["verified_at"] and not f["removed"])
        return {
            "agent": agent,
            "root": root,
            "session": session,
            "updated_at": head["updated_at"].isoformat(),
            "files": files,
            "crate_omitted": head["crate_omitted"],
            **_about(crate),
        }

    async def crate(self, agent: str, root: str, session: str) -> Any:
        async with self._pool.acquire() as db:
            return await db.fetchval(
                "SELECT crate FROM sessions WHERE agent = $1 AND root = $2 AND session = $3",
                agent,
                root,
                session,
            )

    async def agents(self, quiet_after_s: float, now: datetime) -> list[dict[str, Any]]:
        """Each agent: its last event, its own account of its backlog, and 30 days of activity."""
        since = now - timedelta(days=30)
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                "SELECT agent, first_event_at, last_event_at, events, pending, awaiting_receipt, "
                "oldest_pending_at, status_at FROM agents ORDER BY agent"
            )
            activity = await db.fetch(
                "SELECT agent, date_trunc('day', committed_at) AS day, count(*) AS n FROM files "
                "WHERE committed_at >= $1 GROUP BY agent, day ORDER BY agent, day",
                since,
            )
        days: dict[str, dict[str, int]] = {}
        for a in activity:
            days.setdefault(a["agent"], {})[a["day"].date().isoformat()] = a["n"]
        agents = []
        for r in rows:
            heard = max(t for t in (r["last_event_at"], r["status_at"]) if t is not None)
            quiet_for = (now - heard).total_seconds()
            agents.append(
                {
                    **_plain(dict(r)),
                    "quiet": quiet_for > quiet_after_s,
                    "quiet_for_s": round(quiet_for),
                    "activity": [
                        {
                            "day": (since + timedelta(days=i + 1)).date().isoformat(),
                            "files": days.get(r["agent"], {}).get(
                                (since + timedelta(days=i + 1)).date().isoformat(), 0
                            ),
                        }
                        for i in range(30)
                    ],
                }
            )
        return agents


def _about(crate: Any) -> dict[str, Any]:
    """The people, instrument and licence a session's crate names."""
    if not isinstance(crate, dict):
        return {"people": [], "instruments": [], "license": None}
    graph = [e for e in crate.get("@graph", []) if isinstance(e, dict)]

    def types(entity: dict[str, Any]) -> set[str]:
        kind = entity.get("@type", [])
        return {kind} if isinstance(kind, str) else set(kind)

    root = next((e for e in graph if e.get("@id") == "./"), {})
    licence = root.get("license")
    licence_id = licence.get("@id") if isinstance(licence, dict) else licence
    if isinstance(licence_id, str) and licence_id.startswith("#"):
        licence_id = None  # a local entity: the agent's "no licence chosen yet"
    return {
        "people": sorted({str(e.get("name") or e.get("@id")) for e in graph if "Person" in types(e)}),
        "instruments": sorted(
            {str(e.get("name") or e.get("@id")) for e in graph if "IndividualProduct" in types(e)}
        ),
        "license": licence_id,
    }


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
