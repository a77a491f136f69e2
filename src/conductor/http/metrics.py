"""Prometheus metrics for one conductor app, in its own ``CollectorRegistry``.

One registry per app (never prometheus-client's global one) so tests can build many apps
in one process. The hot path pays a dict lookup and an ``inc``/``observe``: label children
are cached here instead of going through ``labels()`` (which validates and locks) on every
request. Breaker states and the in-flight count are read only when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...llm import (
    EmbeddedModelLoading,
    ModelNotFound,
    ProviderBusy,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0)
CIRCUIT_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

_REASON_CLASSES: tuple[tuple[type[ProviderError], str], ...] = (
    (EmbeddedModelLoading, "loading"),
    (ProviderUnavailable, "unavailable"),
    (ProviderTimeout, "timeout"),
    (ProviderBusy, "busy"),
    (ModelNotFound, "model_not_found"),
    (ProviderResponseError, "bad_response"),
)


def reason_class(error: ProviderError) -> str:
    """A small, fixed label set for why a provider failed (label cardinality stays bounded)."""
    for cls, label in _REASON_CLASSES:
        if isinstance(error, cls):
            return label
    return "error"


class _StateCollector(Collector):
    """Scrape-time gauges: circuit state per provider and requests in flight."""

    def __init__(
        self,
        circuits: Callable[[], Iterable[tuple[str, str]]],
        in_flight: Callable[[], int],
    ) -> None:
        self._circuits = circuits
        self._in_flight = in_flight

    def collect(self) -> Iterator[Metric]:
        circuit = GaugeMetricFamily(
            "demi_provider_circuit_state",
            "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open",
            labels=["provider"],
        )
        for name, state in self._circuits():
            circuit.add_metric([name], CIRCUIT_VALUES.get(state, 2.0))
        yield circuit
        yield GaugeMetricFamily(
            "demi_in_flight_requests", "HTTP requests being served now", value=self._in_flight()
        )


_STAT_GAUGES = (
    ("quality_score", "demi_provider_quality_score",
     "Routing quality score per provider (EWMAs of success, TTFT, tokens/s; 0-1)"),
    ("success_ewma", "demi_provider_success_ewma",
     "Moving average of request success per provider (0-1)"),
    ("ttft_ewma_s", "demi_provider_ttft_ewma_seconds",
     "Moving average of time to first token of real requests per provider"),
    ("tokens_per_s_ewma", "demi_provider_tokens_per_second_ewma",
     "Moving average of generation speed per provider"),
)


class _RoutingCollector(Collector):
    """Scrape-time routing state: per-provider scores, sticky table counts, canary share."""

    def __init__(self, report: Callable[[], dict[str, Any]]) -> None:
        self._report = report

    def collect(self) -> Iterator[Metric]:
        report = self._report()
        for key, name, doc in _STAT_GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=["provider"])
            for provider, row in report["providers"].items():
                value = row["stats"].get(key)
                if value is not None:
                    gauge.add_metric([provider], float(value))
            yield gauge
        yield from _slot_metrics(report)
        sticky = report.get("sticky")
        if sticky is not None:
            yield CounterMetricFamily("demi_sticky_lookups",
                                      "Requests that could continue a remembered conversation",
                                      value=sticky["lookups"])
            yield CounterMetricFamily("demi_sticky_hits",
                                      "Requests sent back to the provider of their conversation",
                                      value=sticky["hits"])
            yield GaugeMetricFamily("demi_sticky_hit_ratio", "Sticky hits / lookups",
                                    value=sticky["hit_rate"] or 0.0)
            yield GaugeMetricFamily("demi_sticky_entries", "Conversations remembered",
                                    value=sticky["entries"])
        canary = report.get("canary")
        if canary is not None and canary["provider"]:
            share = GaugeMetricFamily("demi_canary_percent",
                                      "Share of requests that start at the canary",
                                      labels=["provider"])
            share.add_metric([canary["provider"]], float(canary["percent"]))
            yield share
            rolled = GaugeMetricFamily("demi_canary_rolled_back",
                                       "1 while the canary is rolled back", labels=["provider"])
            rolled.add_metric([canary["provider"]], float(canary["rollback"] is not None))
            yield rolled


def _slot_metrics(report: dict[str, Any]) -> Iterator[Metric]:
    """Requests in flight, caps and spillovers per provider; DEMI's slot queue."""
    in_flight = GaugeMetricFamily("demi_provider_in_flight",
                                  "Requests a provider is answering now", labels=["provider"])
    caps = GaugeMetricFamily("demi_provider_max_concurrency",
                             "Most requests DEMI sends a provider at once (only capped ones)",
                             labels=["provider"])
    spills = CounterMetricFamily("demi_spillovers",
                                 "Requests passed over a provider at its cap (labelled by it)",
                                 labels=["provider"])
    for provider, row in report["providers"].items():
        in_flight.add_metric([provider], float(row["in_flight"]))
        if row["max_concurrency"] is not None:
            caps.add_metric([provider], float(row["max_concurrency"]))
        spills.add_metric([provider], float(row["spillovers"]))
    yield in_flight
    yield caps
    yield spills
    queue = report["queue"]
    yield GaugeMetricFamily("demi_queue_waiting", "Requests waiting for a free slot",
                            value=queue["waiting"])
    yield CounterMetricFamily("demi_queue_refused",
                              "Requests refused (429/503) because every slot was taken",
                              value=queue["refused"])


class _HedgeCollector(Collector):
    """Scrape-time counters kept by the LLM layer: hedged first tokens and hedge wins."""

    def __init__(self, hedges: Callable[[], tuple[int, int]]) -> None:
        self._hedges = hedges

    def collect(self) -> Iterator[Metric]:
        hedged, wins = self._hedges()
        yield CounterMetricFamily(
            "demi_hedged_requests", "Requests that also asked a second provider because the "
            "first was slow to start", value=hedged,
        )
        yield CounterMetricFamily(
            "demi_hedge_wins", "Hedged requests the second provider won", value=wins,
        )


class Metrics:
    """The conductor's counters and histograms, with cached label children."""

    def __init__(
        self,
        circuits: Callable[[], Iterable[tuple[str, str]]],
        in_flight: Callable[[], int],
        routing: Callable[[], dict[str, Any]] | None = None,
        hedges: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if hedges is not None:
            self.registry.register(_HedgeCollector(hedges))
        self._requests = Counter(
            "demi_http_requests", "HTTP requests by endpoint, serving provider and status",
            ["endpoint", "provider", "status"], registry=self.registry,
        )
        self._fallbacks = Counter(
            "demi_fallbacks", "Replies served by a provider other than the preferred one",
            ["provider"], registry=self.registry,
        )
        self._failures = Counter(
            "demi_provider_failures", "Provider failures seen while serving requests",
            ["provider", "reason"], registry=self.registry,
        )
        self._exhausted = Counter(
            "demi_all_providers_failed", "Requests that no provider could serve",
            registry=self.registry,
        )
        self._interrupted = Counter(
            "demi_stream_interruptions", "Replies that broke after text was sent",
            ["provider"], registry=self.registry,
        )
        self._continued = Counter(
            "demi_stream_continuations",
            "Broken streams continued by another provider (labelled by the one continuing)",
            ["provider"], registry=self.registry,
        )
        self._ttft = Histogram(
            "demi_time_to_first_token_seconds",
            "Seconds from the request to the first text, failover included",
            ["provider"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self._latency = Histogram(
            "demi_request_duration_seconds", "Seconds from the request to the last byte",
            ["provider"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.registry.register(_StateCollector(circuits, in_flight))
        if routing is not None:
            self.registry.register(_RoutingCollector(routing))
        self._children: dict[Any, Any] = {}
        self._request_children: dict[tuple[str, str, int], Any] = {}

    def _child(self, metric: Any, key: tuple[str, ...]) -> Any:
        cache_key = (id(metric), *key)
        child = self._children.get(cache_key)
        if child is None:
            child = self._children[cache_key] = metric.labels(*key)
        return child

    # -- hot path ----------------------------------------------------------------------
    def request(self, endpoint: str, provider: str, status: int) -> None:
        key = (endpoint, provider, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self._requests.labels(
                endpoint, provider, str(status)
            )
        child.inc()

    def reply_opened(
        self, provider: str, fallback: bool, ttft: float | None,
        errors: Iterable[ProviderError],
    ) -> None:
        if fallback:
            self._child(self._fallbacks, (provider,)).inc()
        for err in errors:
            self._child(self._failures, (err.provider, reason_class(err))).inc()
        if ttft is not None:
            self._child(self._ttft, (provider,)).observe(ttft)

    def reply_finished(
        self, provider: str, seconds: float, continued_by: Iterable[str] = (),
    ) -> None:
        self._child(self._latency, (provider,)).observe(seconds)
        for name in continued_by:
            self._child(self._continued, (name,)).inc()

    # -- failures ----------------------------------------------------------------------
    def all_failed(self, errors: Iterable[ProviderError]) -> None:
        self._exhausted.inc()
        for err in errors:
            self._child(self._failures, (err.provider, reason_class(err))).inc()

    def interrupted(self, provider: str, cause: BaseException | None) -> None:
        self._child(self._interrupted, (provider,)).inc()
        reason = reason_class(cause) if isinstance(cause, ProviderError) else "bad_response"
        self._child(self._failures, (provider, reason)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
