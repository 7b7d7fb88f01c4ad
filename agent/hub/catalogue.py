"""The catalogue: PostgreSQL, written only by the hub, in one transaction per batch of events.

Every write is idempotent. An event's message id is recorded with its effects in the same
transaction, and an id seen before is skipped entirely, so a redelivered or duplicated event changes
nothing; the rows themselves are keyed by (agent, root, session, path, version) besides. The schema
is versioned in ``schema_migrations``; a hub that finds a newer schema refuses to run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..core.errors import ConfigError
from ..core.eventmodels import AgentStatus, BatchEvent, StoredEvent
from .search import SEARCH_SQL, Filters, params_of, record

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "agents, sessions, files, events",
        """
        CREATE TABLE agents (
            agent text PRIMARY KEY,
            first_event_at timestamptz NOT NULL,
            last_event_at timestamptz NOT NULL,
            events bigint NOT NULL DEFAULT 0
        );
        CREATE TABLE sessions (
            agent text NOT NULL,
            root text NOT NULL,
            session text NOT NULL,
            crate jsonb,
            crate_omitted text,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (agent, root, session)
        );
        -- Every version of every file; ``current`` marks the newest of each path.
        CREATE TABLE files (
            agent text NOT NULL,
            root text NOT NULL,
            session text NOT NULL,
            path text NOT NULL,
            version integer NOT NULL,
            current boolean NOT NULL DEFAULT true,
            removed boolean NOT NULL DEFAULT false,
            name text,
            sha256 text NOT NULL,
            size bigint,
            format text,
            dataset_type text,
            dataset jsonb NOT NULL DEFAULT '{}',
            validation text,
            drift text,
            acquired_at timestamptz,
            acquired_end timestamptz,
            instrument text,
            extraction_error text,
            batch_id text,
            committed_at timestamptz,
            storage_uri text,
            verified_at timestamptz,
            catalogued_at timestamptz NOT NULL DEFAULT now(),
            search tsvector GENERATED ALWAYS AS (
                to_tsvector('simple', translate(path, '/_.-', '    '))
                || to_tsvector('simple', coalesce(dataset_type, '') || ' ' || coalesce(instrument, ''))
                || jsonb_to_tsvector('simple', dataset, '["string", "numeric"]')
            ) STORED,
            PRIMARY KEY (agent, root, session, path, version)
        );
        CREATE INDEX files_search ON files USING gin (search);
        CREATE INDEX files_dataset ON files USING gin (dataset jsonb_path_ops);
        CREATE INDEX files_newest ON files ((coalesce(acquired_at, committed_at)) DESC) WHERE current;
        CREATE INDEX files_by_path ON files (agent, root, path);
        CREATE INDEX files_by_type ON files (dataset_type) WHERE current;
        CREATE INDEX files_by_instrument ON files (instrument) WHERE current;
        CREATE INDEX files_by_experiment ON files ((dataset ->> 'experiment_id')) WHERE current;
        -- The message ids already applied: a redelivery or a re-publish is skipped.
        CREATE TABLE events (
            msg_id text PRIMARY KEY,
            agent text NOT NULL,
            kind text NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
)
MIGRATIONS += (
    (
        2,
        "agents' own account of their announcing",
        """
        ALTER TABLE agents ADD COLUMN pending integer;
        ALTER TABLE agents ADD COLUMN awaiting_receipt integer;
        ALTER TABLE agents ADD COLUMN oldest_pending_at timestamptz;
        ALTER TABLE agents ADD COLUMN status_at timestamptz;
        CREATE INDEX files_by_agent_day ON files (agent, committed_at);
        """,
    ),
)
LATEST_VERSION = MIGRATIONS[-1][0]


class Catalogue:
    """The catalogue over an asyncpg pool."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @property
    def pool(self) -> Any:
        """The connection pool (the web page's queries share it)."""
        return self._pool

    @classmethod
    async def connect(cls, dsn: str, *, password: str | None = None, size: int = 4) -> Catalogue:
        import asyncpg

        async def as_json(connection: Any) -> None:
            # Binary format (a version byte, then the text): COPY, which bulk loads use, needs it.
            await connection.set_type_codec(
                "jsonb",
                encoder=lambda value: b"\x01" + json.dumps(value).encode(),
                decoder=lambda data: json.loads(data[1:]),
                schema="pg_catalog",
                format="binary",
            )

        try:
            pool = await asyncpg.create_pool(
                dsn, password=password, min_size=1, max_size=size, init=as_json, command_timeout=60
            )
        except asyncpg.InvalidPasswordError as exc:
            raise ConfigError(f"the catalogue at {_safe(dsn)} refused the password: {exc}") from exc
        except (OSError, asyncpg.PostgresError) as exc:
            from .service import CentreUnavailableError

            raise CentreUnavailableError(f"cannot connect to the catalogue at {_safe(dsn)}: {exc}") from exc
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self) -> int:
        """Bring the schema up to date (one transaction per migration); returns its version."""
        async with self._pool.acquire() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            # Two hubs starting at once: one migrates, the other waits for it.
            async with db.transaction():
                await db.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                current = await db.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
                if current > LATEST_VERSION:
                    raise ConfigError(
                        f"the catalogue has schema version {current}, newer than this hub understands "
                        f"({LATEST_VERSION}); upgrade fair-agent"
                    )
                for version, name, sql in MIGRATIONS:
                    if version > current:
                        await db.execute(sql)
                        await db.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                        )
        return LATEST_VERSION

    async def write(self, events: Sequence[BatchEvent | StoredEvent]) -> list[str]:
        """Apply the events in one transaction; returns the ids that were new (the rest were
        applied before)."""
        if not events:
            return []
        async with self._pool.acquire() as db, db.transaction():
            fresh = set(
                await db.fetchval(
                    "WITH inserted AS (INSERT INTO events (msg_id, agent, kind) "
                    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING "
                    "RETURNING msg_id) SELECT coalesce(array_agg(msg_id), '{}') FROM inserted",
                    [e.id for e in events],
                    [e.agent for e in events],
                    [e.kind for e in events],
                )
            )
            new = [e for e in events if e.id in fresh]
            await self._write_batches(db, [e for e in new if isinstance(e, BatchEvent)])
            await self._write_stored(db, [e for e in new if isinstance(e, StoredEvent)])
            await self._touch_agents(db, new)
        return [e.id for e in new]

    async def _write_batches(self, db: Any, events: list[BatchEvent]) -> None:
        rows = [
            (
                e.agent,
                e.root,
                e.session,
                f.path,
                f.version,
                f.path.rsplit("/", 1)[-1],
                f.sha256,
                f.size,
                f.format,
                f.datasetType,
                json.dumps(f.dataset, default=str),
                f.validation,
                f.drift,
                _time(f.acquiredStart),
                _time(f.acquiredEnd),
                f.instrument,
                f.extractionError,
                e.batchId,
                _time(e.committedAt),
            )
            for e in events
            for f in e.files
        ]
        if rows:
            await db.executemany(
                "INSERT INTO files (agent, root, session, path, version, name, sha256, size, format, "
                "dataset_type, dataset, validation, drift, acquired_at, acquired_end, instrument, "
                "extraction_error, batch_id, committed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                "$10, $11::text::jsonb, $12, $13, $14, $15, $16, $17, $18, $19) "
                "ON CONFLICT (agent, root, session, path, version) DO UPDATE SET name = excluded.name, "
                "size = excluded.size, format = excluded.format, dataset_type = excluded.dataset_type, "
                "dataset = excluded.dataset, validation = excluded.validation, drift = excluded.drift, "
                "acquired_at = excluded.acquired_at, acquired_end = excluded.acquired_end, "
                "instrument = excluded.instrument, extraction_error = excluded.extraction_error, "
                "batch_id = excluded.batch_id, committed_at = excluded.committed_at, removed = false",
                rows,
            )
            # Of every path written, only the newest version is current, whatever the order the
            # versions arrived in (two hubs, a redelivery).
            await db.execute(
                "UPDATE files f SET current = NOT EXISTS (SELECT 1 FROM files g WHERE g.agent = f.agent "
                "AND g.root = f.root AND g.path = f.path AND g.version > f.version) "
                "FROM unnest($1::text[], $2::text[], $3::text[]) AS n(agent, root, path) "
                "WHERE f.agent = n.agent AND f.root = n.root AND f.path = n.path",
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[3] for r in rows],
            )
        removed = [(e.agent, e.root, e.session, path) for e in events for path in e.removed]
        if removed:
            await db.executemany(
                "UPDATE files SET removed = true "
                "WHERE agent = $1 AND root = $2 AND session = $3 AND path = $4",
                removed,
            )
        crates = [
            (e.agent, e.root, e.session, json.dumps(e.crate) if e.crate else None, e.crateOmitted)
            for e in events
            if e.crate is not None or e.crateOmitted
        ]
        sessions = {(e.agent, e.root, e.session) for e in events}
        await db.executemany(
            "INSERT INTO sessions (agent, root, session, updated_at) VALUES ($1, $2, $3, now()) "
            "ON CONFLICT (agent, root, session) DO UPDATE SET updated_at = now()",
            sorted(sessions),
        )
        if crates:
            await db.executemany(
                "UPDATE sessions SET crate = $4::text::jsonb, crate_omitted = $5 "
                "WHERE agent = $1 AND root = $2 AND session = $3",
                crates,
            )

    async def _write_stored(self, db: Any, events: list[StoredEvent]) -> None:
        rows = [
            (e.agent, e.root, e.session, f.path, f.version, f.sha256, f.uri, _time(f.verifiedAt))
            for e in events
            for f in e.files
        ]
        if rows:
            # A stored event may be committed by one hub before another commits the batch that
            # announced the file: the row is made then, and the batch fills it in.
            await db.executemany(
                "INSERT INTO files (agent, root, session, path, version, sha256, storage_uri, verified_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (agent, root, session, path, version) "
                "DO UPDATE SET storage_uri = excluded.storage_uri, verified_at = excluded.verified_at",
                rows,
            )

    async def _touch_agents(self, db: Any, events: list[BatchEvent | StoredEvent]) -> None:
        counts: dict[str, int] = {}
        for e in events:
            counts[e.agent] = counts.get(e.agent, 0) + 1
        await db.executemany(
            "INSERT INTO agents (agent, first_event_at, last_event_at, events) "
            "VALUES ($1, now(), now(), $2) ON CONFLICT (agent) "
            "DO UPDATE SET last_event_at = now(), events = agents.events + excluded.events",
            sorted(counts.items()),
        )

    async def record_status(self, status: AgentStatus) -> None:
        """An agent's latest account of its backlog (an agent not seen before is added)."""
        async with self._pool.acquire() as db:
            await db.execute(
                "INSERT INTO agents (agent, first_event_at, last_event_at, events, pending, "
                "awaiting_receipt, oldest_pending_at, status_at) "
                "VALUES ($1, now(), now(), 0, $2, $3, $4, $5) "
                "ON CONFLICT (agent) DO UPDATE SET pending = excluded.pending, "
                "awaiting_receipt = excluded.awaiting_receipt, "
                "oldest_pending_at = excluded.oldest_pending_at, status_at = excluded.status_at",
                status.agent,
                status.pending,
                status.awaitingReceipt,
                _time(status.oldestPendingAt),
                _time(status.sentAt),
            )

    async def search(self, filters: Filters, limit: int = 50) -> list[dict[str, Any]]:
        """Current files matching every given filter, newest acquisition first."""
        async with self._pool.acquire() as db:
            rows = await db.fetch(SEARCH_SQL, *params_of(filters), limit, 0)
        return [record(row) for row in rows]

    async def count_files(self) -> int:
        async with self._pool.acquire() as db:
            return int(await db.fetchval("SELECT count(*) FROM files"))


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _safe(dsn: str) -> str:
    """The DSN without a password, should one have been written into it."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
