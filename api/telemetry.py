"""Prometheus metrics: the API's own requests (a registry per app), and the pipeline's
counters read from the database at scrape time (``sink_status``, ``ticks_rejected``,
``feed_status``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from typing_extensions import override

from api.asgi import HttpMiddleware

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestMetrics:
    """Request count by route template, method and status, and latency (to the response
    headers) by route and method."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sentinel_api_requests",
            "HTTP requests served, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sentinel_api_request_duration_seconds",
            "Time to the response headers, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)


class MetricsMiddleware(HttpMiddleware):
    """Counts and times every HTTP answer in ``metrics``."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    @override
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        seen: dict[str, Any] = {}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and "status" not in seen:
                seen["status"] = message["status"]
                seen["seconds"] = time.perf_counter() - started
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            seen.setdefault("status", 500)
            raise
        finally:
            route = scope.get("route")
            # Route templates, never raw paths: one series per endpoint, not per symbol.
            name = getattr(route, "path", None) or "unmatched"
            seconds = seen.get("seconds", time.perf_counter() - started)
            self.metrics.observe(name, scope["method"], int(seen.get("status", 500)), seconds)


class _Snapshot(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _epoch(t: datetime | None) -> float | None:
    return t.timestamp() if t is not None else None


def pipeline_families(
    database_up: bool,
    sinks: Sequence[Mapping[str, Any]],
    rejects: Sequence[Mapping[str, Any]],
    feeds: Sequence[Mapping[str, Any]],
) -> list[Metric]:
    up = GaugeMetricFamily("sentinel_database_up", "1 when the API reached the database.")
    up.add_metric([], 1.0 if database_up else 0.0)
    return [up, *_sink_families(sinks), _rejects_family(rejects), *_feed_families(feeds)]


def _sink_families(sinks: Sequence[Mapping[str, Any]]) -> list[Metric]:
    labels = ["table", "worker"]
    written = CounterMetricFamily(
        "sentinel_sink_rows_written", "Rows inserted by each sink partition.", labels=labels
    )
    skipped = CounterMetricFamily(
        "sentinel_sink_rows_skipped", "Rows already stored (idempotent re-delivery).", labels=labels
    )
    failed = CounterMetricFamily(
        "sentinel_sink_rows_failed", "Rows the database refused, left out alone.", labels=labels
    )
    retries = CounterMetricFamily(
        "sentinel_sink_retries", "Write attempts retried after an outage.", labels=labels
    )
    updated = GaugeMetricFamily(
        "sentinel_sink_updated_timestamp_seconds", "When a sink last reported.", labels=labels
    )
    for s in sinks:
        key = [str(s["table_name"]), str(s["worker"])]
        written.add_metric(key, float(s["rows_written"]))
        skipped.add_metric(key, float(s["rows_skipped"]))
        failed.add_metric(key, float(s["rows_failed"]))
        retries.add_metric(key, float(s["retries"]))
        updated.add_metric(key, _epoch(s["updated_at"]) or 0.0)
    return [written, skipped, failed, retries, updated]


def _rejects_family(rejects: Sequence[Mapping[str, Any]]) -> Metric:
    rejected = GaugeMetricFamily(
        "sentinel_ticks_rejected_last_hour",
        "Messages and trades refused by the parser in the last hour, by reason.",
        labels=["reason"],
    )
    for r in rejects:
        rejected.add_metric([str(r["reason"])], float(r["n"]))
    return rejected


def _feed_families(feeds: Sequence[Mapping[str, Any]]) -> list[Metric]:
    connected = GaugeMetricFamily(
        "sentinel_feed_connected", "1 when the live feed is connected.", labels=["source"]
    )
    reconnects = CounterMetricFamily(
        "sentinel_feed_reconnects", "Reconnections of the live feed.", labels=["source"]
    )
    last_message = GaugeMetricFamily(
        "sentinel_feed_last_message_timestamp_seconds",
        "When the feed last received a message.",
        labels=["source"],
    )
    for f in feeds:
        src = [str(f["source"])]
        connected.add_metric(src, 1.0 if f["connected"] else 0.0)
        reconnects.add_metric(src, float(f["reconnects"]))
        if (when := _epoch(f["last_message_at"])) is not None:
            last_message.add_metric(src, when)
    return [connected, reconnects, last_message]


def exposition(metrics: RequestMetrics, pipeline: Sequence[Metric]) -> bytes:
    """The request metrics (of every worker, under several uvicorn workers) and the
    pipeline's."""
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(_Snapshot(pipeline))
    return generate_latest(_request_registry(metrics)) + generate_latest(snapshot)


def _request_registry(metrics: RequestMetrics) -> CollectorRegistry:
    """``metrics``' own registry, or, when ``PROMETHEUS_MULTIPROC_DIR`` is set (several
    uvicorn workers: ``sentinel up`` sets it), every worker's values summed from the
    files prometheus_client keeps there, so that any worker's answer counts them all."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return metrics.registry
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path)
    return registry
