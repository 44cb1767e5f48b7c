"""Prometheus metrics of the pipeline service (``GET /metrics``, text format, prometheus-client).

Each app has its own :class:`~prometheus_client.CollectorRegistry`, so several services in one
process (tests, the demo) do not mix their numbers. Exposed:

- ``raydrive_runs{status}``: runs in the store by status (counted when scraped);
- ``raydrive_reports_received_total{kind}``: progress reports, run updates, checkpoints and log
  batches accepted (kind ``progress``, ``update``, ``checkpoint``, ``logs``);
- ``raydrive_report_duration_seconds{kind}``: how long the service took to answer them;
- ``raydrive_sse_streams_open``: open progress streams;
- ``raydrive_http_request_duration_seconds{method,route,status}``: every request, by route
  template (``/api/v1/runs/{run_id}``, not the id) and method (``_OTHER`` for any method not
  in HTTP's list), so no request can add label values;
- ``raydrive_db_write_duration_seconds{operation}``: time spent in the store's write methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from raydrive.core.pipeline import RunStatus

__all__ = ["CONTENT_TYPE", "ServiceMetrics", "TimedStore"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_WRITES = frozenset(
    {
        "create_pipeline",
        "delete_pipeline",
        "create_run",
        "update_run",
        "report_progress",
        "delete_run",
        "create_checkpoint",
        "append_logs",
        "apply_reports",
    }
)
# Route template -> report kind, for the report counters.
_REPORTS = {
    ("POST", "/api/v1/runs/{run_id}/progress"): "progress",
    ("PATCH", "/api/v1/runs/{run_id}"): "update",
    ("POST", "/api/v1/runs/{run_id}/checkpoints/"): "checkpoint",
    ("POST", "/api/v1/runs/{run_id}/logs/"): "logs",
}
# Label values come from a fixed set only, so no client can grow /metrics: a method not in
# this list counts as "_OTHER" and a path as its route template (OpenTelemetry's HTTP semantic
# conventions, http.request.method and http.route).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _RunsByStatus(Collector):
    def __init__(self, store: Callable[[], Any]) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("raydrive_runs", "Runs in the store by status.", labels=["status"])
        counts = _count_runs(self._store())
        for status in RunStatus:
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family


def _count_runs(store: Any) -> dict[str, int]:
    counter = getattr(store, "count_runs_by_status", None)
    if counter is not None:
        return dict(counter())
    # A store without a counting query: page through (bounded, so a scrape cannot run away).
    counts: dict[str, int] = {}
    for status in RunStatus:
        n, skip = 0, 0
        while skip < 100_000:
            page = store.list_runs(status, skip, 1000)
            n += len(page)
            if len(page) < 1000:
                break
            skip += 1000
        counts[status.value] = n
    return counts


class ServiceMetrics:
    """The metrics of one service app, and the ASGI middleware that records request latency."""

    def __init__(self, store: Callable[[], Any], open_streams: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reports = Counter(
            "raydrive_reports_received",
            "Reports accepted: progress, run updates, checkpoints, log batches.",
            ["kind"],
            registry=self.registry,
        )
        self.report_latency = Histogram(
            "raydrive_report_duration_seconds",
            "Time to answer a report.",
            ["kind"],
            buckets=_FAST,
            registry=self.registry,
        )
        self.requests = Histogram(
            "raydrive_http_request_duration_seconds",
            "Time to answer a request, by route template.",
            ["method", "route", "status"],
            buckets=_FAST,
            registry=self.registry,
        )
        self.db_writes = Histogram(
            "raydrive_db_write_duration_seconds",
            "Time spent in the store's write methods.",
            ["operation"],
            buckets=_FAST,
            registry=self.registry,
        )
        streams = Gauge("raydrive_sse_streams_open", "Open progress streams.", registry=self.registry)
        streams.set_function(open_streams)
        self.registry.register(_RunsByStatus(store))

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap ``app`` so that every HTTP request is timed by route."""
        metrics = self

        async def timed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    if status < 400:
                        metrics._count_report(scope, start)
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None) or "<unmatched>"
                method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
                metrics.requests.labels(method, template, str(status)).observe(time.perf_counter() - start)

        return timed

    def count_reports(self, kinds: list[str]) -> None:
        """Count the accepted reports of a batch (``progress``, ``update``, ``checkpoint``, ``logs``)."""
        for kind in kinds:
            self.reports.labels(kind).inc()

    def _count_report(self, scope: Scope, start: float) -> None:
        route = getattr(scope.get("route"), "path", "")
        kind = _REPORTS.get((scope["method"], route)) or _REPORTS.get((scope["method"], route + "/"))
        if kind is None and route.endswith("/"):
            kind = _REPORTS.get((scope["method"], route[:-1]))
        if kind is not None:
            self.reports.labels(kind).inc()
            self.report_latency.labels(kind).observe(time.perf_counter() - start)


class TimedStore:
    """A store whose write methods are timed into :attr:`ServiceMetrics.db_writes`.

    Everything else is passed through unchanged, so it stands in for the store it wraps.
    """

    def __init__(self, store: Any, metrics: ServiceMetrics) -> None:
        self.wrapped = store
        self._histogram = metrics.db_writes

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.wrapped, name)
        if name not in _WRITES or not callable(value):
            return value
        observe = self._histogram.labels(name).observe

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                observe(time.perf_counter() - start)

        return timed

    def __repr__(self) -> str:
        return f"TimedStore({self.wrapped!r})"
