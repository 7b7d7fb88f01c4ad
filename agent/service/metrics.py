"""Prometheus metrics of a running service, served over HTTP when enabled (off by default).

Counters and gauges are read from the service's own tallies at scrape time, so the hot path pays
nothing for them; the two histograms (batch latency, hash-slot wait) are observed as they happen.
Names follow Prometheus conventions: ``fair_agent_<what>_<unit>[_total]``.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__
from ..core.errors import ConfigError, RetryKind
from ..ship.announcer import AnnounceStats
from ..ship.shipper import ShipStats
from .snapshot import ServiceSnapshot

log = logging.getLogger("fair_agent.metrics")

#: Batches take from milliseconds (a few small files) to many minutes (a large export).
BATCH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
WAIT_BUCKETS = (0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120)


@dataclass(frozen=True, slots=True)
class MetricsEndpoint:
    address: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/metrics"


class Metrics:
    def __init__(self) -> None:
        # Histograms' *_created series say nothing a start time would not.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        # process_* (CPU, memory, open files), as every exporter has them.
        ProcessCollector(registry=self.registry)
        self.batch_seconds = Histogram(
            "fair_agent_batch_duration_seconds",
            "Time from a batch's start to its ledger commit (or its hand-back for a retry)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.slot_wait_seconds = Histogram(
            "fair_agent_hash_slot_wait_seconds",
            "Time a group of files waited to be hashed: for a hashing thread (the hashing semaphore), "
            "or 0 where the event loop's thread hashed it (small files in memory)",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self._server: object | None = None

    def watch(self, snapshot: Callable[[], ServiceSnapshot]) -> None:
        """Serve what ``snapshot`` says at every scrape (it is called on the server's thread)."""
        self.registry.register(_ServiceCollector(snapshot))

    def serve(self, address: str, port: int) -> MetricsEndpoint:
        try:
            server, _thread = start_http_server(port, addr=address, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {address}:{port}: {exc.strerror or exc}; "
                "choose another [metrics] port (or 0 for any free one)"
            ) from exc
        self._server = server
        endpoint = MetricsEndpoint(address, server.server_port)
        log.info(f"metrics at {endpoint.url}", extra={"port": endpoint.port})
        return endpoint

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]


class _ServiceCollector(Collector):
    def __init__(self, snapshot: Callable[[], ServiceSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        service = self._snapshot()
        tally = service.tally
        yield _counter(
            "fair_agent_files_ingested", "Files ingested (new versions written)", tally.files_ingested
        )
        yield _counter("fair_agent_ingested_bytes", "Bytes of the files ingested", tally.bytes_ingested)
        yield _counter("fair_agent_batches", "Batches committed with at least one new file", tally.batches)
        yield _counter("fair_agent_dead_letters", "Files dead-lettered", tally.dead_lettered)
        retries = CounterMetricFamily(
            "fair_agent_retries", "Retries scheduled, by kind of retryable failure", labels=["kind"]
        )
        for kind in RetryKind:
            retries.add_metric([kind.value], tally.retries_by_kind.get(kind, 0))
        yield retries
        yield _by_type(
            "fair_agent_validation_failures",
            "Sessions rejected because a file failed its dataset type's validation",
            tally.validation_failures,
        )
        yield _by_type(
            "fair_agent_drift_alerts", "Sessions whose metadata drifted from the baseline", tally.drift_alerts
        )
        yield _gauge("fair_agent_queue_depth", "Batches waiting for a worker", service.queue_depth)
        yield _gauge("fair_agent_helper_processes", "Helper processes sharing a burst", service.helpers)
        yield _gauge(
            "fair_agent_batches_in_flight",
            "Batches being processed or waiting to retry",
            len(service.in_flight),
        )
        yield _gauge("fair_agent_sessions_pending", "Sessions waiting to be complete", len(service.pending))
        yield _gauge(
            "fair_agent_last_successful_batch_timestamp_seconds",
            "Unix time of the last batch committed with new files (0: none yet)",
            tally.last_success_unix,
        )
        yield _gauge("fair_agent_start_time_seconds", "Unix time the service started", service.started_unix)
        watchers = GaugeMetricFamily(
            "fair_agent_watcher_up",
            "1 while a root's change notifications work, 0 while they fail",
            labels=["root"],
        )
        polled = GaugeMetricFamily(
            "fair_agent_root_polled",
            "1 for a root watched by polling (a network share, or over the inotify budget), 0 by events",
            labels=["root"],
        )
        for root in service.roots:
            watchers.add_metric([root.name], 1 if root.watcher_error is None else 0)
            polled.add_metric([root.name], 1 if root.mode == "polling" else 0)
        yield watchers
        yield polled
        yield _gauge(
            "fair_agent_inotify_watches", "inotify watches held for all roots", service.inotify_watches
        )
        if service.store is not None:
            yield from _store_metrics(service.store)
        if service.bus is not None:
            yield from _bus_metrics(service.bus)
        info = GaugeMetricFamily(
            "fair_agent_build_info", "The agent's version and Python", labels=["version", "python"]
        )
        info.add_metric([__version__, platform.python_version()], 1)
        yield info


def _store_metrics(stats: ShipStats) -> Iterator[Metric]:
    backlog = stats.backlog
    yield _gauge(
        "fair_agent_store_up", "1 while the object store answers, 0 while it fails", stats.store_error is None
    )
    yield _counter(
        "fair_agent_store_files_shipped", "Files stored and verified in the object store", stats.files
    )
    yield _counter("fair_agent_store_bytes_sent", "Bytes sent to the object store", stats.bytes_sent)
    yield _counter(
        "fair_agent_store_failures", "Passes that stopped because the store failed", stats.failures
    )
    yield _gauge(
        "fair_agent_store_backlog_files", "Files waiting to be shipped", backlog.files if backlog else 0
    )
    yield _gauge(
        "fair_agent_store_backlog_bytes", "Bytes waiting to be shipped", backlog.bytes if backlog else 0
    )
    oldest = (backlog.oldest_age_s() if backlog else None) or 0.0
    yield _gauge(
        "fair_agent_store_backlog_oldest_seconds", "Age of the oldest file waiting to be shipped", oldest
    )


def _bus_metrics(stats: AnnounceStats) -> Iterator[Metric]:
    counts = stats.counts
    yield _gauge(
        "fair_agent_bus_up", "1 while the event bus takes events, 0 while it fails", stats.bus_error is None
    )
    yield _counter("fair_agent_bus_events_published", "Events the bus acknowledged", stats.published)
    yield _counter("fair_agent_bus_receipts", "Events the hub receipted", stats.receipts)
    yield _gauge("fair_agent_bus_events_pending", "Events not yet published", counts.pending if counts else 0)
    yield _gauge(
        "fair_agent_bus_events_awaiting_receipt",
        "Events published without the hub's receipt yet",
        counts.awaiting_receipt if counts else 0,
    )
    oldest = counts.oldest_pending_at if counts else None
    yield _gauge(
        "fair_agent_bus_oldest_pending_seconds",
        "Age of the oldest event not yet published",
        max(0.0, time.time() - datetime.fromisoformat(oldest).timestamp()) if oldest else 0.0,
    )


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _by_type(name: str, documentation: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=["dataset_type"])
    for dataset_type, count in sorted(counts.items()):
        family.add_metric([dataset_type], count)
    return family
