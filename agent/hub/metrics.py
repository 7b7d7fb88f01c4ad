"""The hub's Prometheus metrics: events and files catalogued, commit time, consumer lag, redeliveries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core.errors import ConfigError
from .service import Hub


class _HubCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        s = self._hub.stats
        yield CounterMetricFamily(
            "fair_hub_events", "Events written to the catalogue (new ids)", value=s.events
        )
        yield CounterMetricFamily(
            "fair_hub_duplicate_events", "Events whose id was applied before", value=s.duplicates
        )
        yield CounterMetricFamily("fair_hub_files", "File records written to the catalogue", value=s.files)
        yield CounterMetricFamily(
            "fair_hub_rejected_events", "Messages that were not events, set aside", value=s.rejected
        )
        yield CounterMetricFamily(
            "fair_hub_redeliveries", "Events JetStream delivered more than once", value=s.redeliveries
        )
        yield CounterMetricFamily("fair_hub_batches", "Catalogue transactions committed", value=s.batches)
        yield CounterMetricFamily(
            "fair_hub_commit_seconds", "Time spent in catalogue transactions", value=s.commit_seconds_total
        )
        yield GaugeMetricFamily(
            "fair_hub_last_commit_seconds", "The last catalogue transaction's time", value=s.last_commit_s
        )
        yield GaugeMetricFamily(
            "fair_hub_consumer_lag", "Events in the stream not yet delivered to the hubs", value=s.lag
        )


class HubMetricsServer:
    def __init__(self, server: Any) -> None:
        self._server = server
        self.port: int = server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(hub: Hub, address: str, port: int) -> HubMetricsServer:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(_HubCollector(hub))
    try:
        server, _ = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve the hub's metrics on {address}:{port}: {exc.strerror or exc}"
        ) from exc
    return HubMetricsServer(server)
