"""Prometheus metrics: requests and latency by route, decisions by reason, ledger position.

Each app has its own registry. With several workers, set ``PROMETHEUS_MULTIPROC_DIR`` (``consentry
serve --workers N`` does) and ``/metrics`` adds up every worker's counters.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _Ledger(Collector):
    def __init__(self, head: Callable[[], int | None], snapshot: Callable[[], int | None]) -> None:
        self._head = head
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        head = self._head()
        if head is not None:
            yield GaugeMetricFamily(
                "consentry_ledger_head_seq",
                "Position (seq) of the last event in the ledger",
                value=head,
            )
        snap = self._snapshot()
        if snap is not None:
            yield GaugeMetricFamily(
                "consentry_snapshot_seq",
                "Ledger position this worker's decision snapshot has caught up to",
                value=snap,
            )


class Metrics:
    """The service's counters; ``observe`` and ``decision`` are cheap enough for hot paths."""

    def __init__(
        self,
        ledger_head: Callable[[], int | None],
        snapshot_seq: Callable[[], int | None],
    ) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "consentry_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "consentry_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "consentry_decisions",
            "Decisions made, by reason (allow reasons name the basis)",
            ["reason", "decision"],
            registry=self.registry,
        )
        self._ledger = _Ledger(ledger_head, snapshot_seq)
        self.registry.register(self._ledger)
        self._collectors: list[Collector] = [self._ledger]
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        self._decision_children: dict[str, Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(method, route, str(status))
        child.inc()
        lkey = (method, route)
        hist = self._latency_children.get(lkey)
        if hist is None:
            hist = self._latency_children[lkey] = self.latency.labels(method, route)
        hist.observe(seconds)

    def decision(self, reason: str, allowed: bool, count: int = 1) -> None:
        child = self._decision_children.get(reason)
        if child is None:
            child = self._decision_children[reason] = self.decisions.labels(
                reason, "allow" if allowed else "deny"
            )
        child.inc(count)

    def add_collector(self, collector: Collector) -> None:
        """Expose ``collector`` too (it reads what it reports when scraped)."""
        self.registry.register(collector)
        self._collectors.append(collector)

    def exposition(self) -> bytes:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            for collector in self._collectors:
                registry.register(collector)
            return generate_latest(registry)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task or body buffering) timing every request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - start)
