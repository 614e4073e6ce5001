"""Prometheus metrics of this process (prometheus-client's default registry).

Every label is bounded: endpoints, route names from the route table, a fixed list of MCP
methods, outcomes and reasons. Never a key id, tenant, integration or tool name.

Hot path: the families every request moves (request count and latency, upstream call
latency, cache hits and misses) are plain numbers that a collector turns into Prometheus
families at scrape time: recording a request is a dict lookup, a bisect and three additions,
with no lock (prometheus-client's own children take one per `inc`/`observe`). They are only
ever moved and read on the event loop's thread. The rarer families are prometheus-client's,
with their label children bound once and kept in module-level dicts.

The families (see docs/operations.md for the PromQL that derives ratios from them):

- `mcpgw_http_requests_total`, `mcpgw_http_request_duration_seconds`
  {endpoint, http_method, route, rpc_method, outcome}
- `mcpgw_http_requests_in_flight` {endpoint}
- `mcpgw_rate_limited_total` {endpoint}; `mcpgw_rate_limiter_degraded`
- `mcpgw_auth_failures_total` {reason}
- `mcpgw_upstream_request_duration_seconds` {outcome}; `mcpgw_upstream_errors_total` {reason}
- `mcpgw_cache_hits_total`, `mcpgw_cache_misses_total` {cache}
- `mcpgw_invalidation_lag_seconds`
- `mcpgw_build_info` {version}
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from settings_api import __version__

# `*_created` series double the scrape for no use here.
disable_created_metrics()

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

ENDPOINTS = ("call", "test", "settings", "other")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# JSON-RPC methods that get their own label value; anything else is "other". "batch": a
# JSON-RPC batch; "invalid": unparsable body; "none": no body read (refused before that) or a
# message without a method; "-": not an MCP endpoint.
RPC_METHODS = frozenset({
    "initialize", "ping", "server/discover", "tools/list", "tools/call", "resources/list",
    "resources/templates/list", "resources/read", "prompts/list", "prompts/get",
    "completion/complete", "logging/setLevel", "notifications/initialized",
    "notifications/cancelled", "notifications/progress", "notifications/roots/list_changed",
})
AUTH_FAILURE_REASONS = ("missing", "malformed", "unknown", "revoked", "wrong-integration",
                        "disabled", "throttled", "other")
UPSTREAM_ERROR_REASONS = ("connect", "timeout", "http-status", "invalid-response", "too-large",
                          "jsonrpc-error", "busy", "none", "other")
CACHES = ("key", "integration")

_REQUEST_LABELS = ("endpoint", "http_method", "route", "rpc_method", "outcome")
IN_FLIGHT = Gauge("mcpgw_http_requests_in_flight", "Requests being handled", ("endpoint",))
RATE_LIMITED = Counter("mcpgw_rate_limited", "Requests refused by the per-key rate limit (429)",
                       ("endpoint",))
LIMITER_DEGRADED = Gauge("mcpgw_rate_limiter_degraded",
                         "1 while the rate limiter cannot reach Redis and fails over")
AUTH_FAILURES = Counter("mcpgw_auth_failures", "MCP requests refused at authentication, by "
                        "reason", ("reason",))
UPSTREAM_ERRORS = Counter("mcpgw_upstream_errors", "Failed upstream tools/call, by reason",
                          ("reason",))
INVALIDATION_LAG = Histogram(
    "mcpgw_invalidation_lag_seconds", "From a change's publication to its application on this "
    "replica (wall clocks of two hosts: skew adds up)", buckets=LAG_BUCKETS)
BUILD_INFO = Gauge("mcpgw_build_info", "The running version", ("version",))
BUILD_INFO.labels(__version__).set(1)

# Pre-bound children. Bounded label sets are bound eagerly, so every series exists (at 0)
# from the start and rate() sees its first increment.
# Requests in flight per endpoint: plain counts the request middleware moves (no lock per
# request), read by the gauge at scrape time.
IN_FLIGHT_COUNTS = dict.fromkeys(ENDPOINTS, 0)
for _endpoint in ENDPOINTS:
    IN_FLIGHT.labels(_endpoint).set_function(lambda e=_endpoint: IN_FLIGHT_COUNTS[e])
RATE_LIMITED_BY_ENDPOINT = {e: RATE_LIMITED.labels(e) for e in ENDPOINTS}
AUTH_FAILURES_BY_REASON = {r: AUTH_FAILURES.labels(r) for r in AUTH_FAILURE_REASONS}
UPSTREAM_ERRORS_BY_REASON = {r: UPSTREAM_ERRORS.labels(r) for r in UPSTREAM_ERROR_REASONS}
# (endpoint, http_method, route, rpc_method, outcome) → [count, sum of seconds, then one count
# per latency bucket (not cumulative) and one past the last]; bounded by the product of
# bounded label sets (in practice a few hundred).
_REQUESTS: dict[tuple[str, str, str, str, str], list[float]] = {}
# upstream call outcome → the same layout (a hot family too: callUrl moves it every request)
UPSTREAM_OUTCOMES = ("ok", "error", "cancelled")
_UPSTREAM: dict[str, list[float]] = {
    o: [0, 0.0] + [0] * (len(LATENCY_BUCKETS) + 1) for o in UPSTREAM_OUTCOMES}
# cache → [hits, misses]
_CACHE_LOOKUPS: dict[str, list[int]] = {c: [0, 0] for c in CACHES}


def observe_request(labels: tuple[str, str, str, str, str], seconds: float) -> None:
    counts = _REQUESTS.get(labels)
    if counts is None:
        counts = _REQUESTS[labels] = [0, 0.0] + [0] * (len(LATENCY_BUCKETS) + 1)
    _observe(counts, seconds)


def _observe(counts: list[float], seconds: float) -> None:
    counts[0] += 1
    counts[1] += seconds
    # Prometheus buckets are "le": a value equal to a bound counts in that bound's bucket.
    counts[2 + bisect_left(LATENCY_BUCKETS, seconds)] += 1


def auth_failed(reason: str) -> None:
    (AUTH_FAILURES_BY_REASON.get(reason) or AUTH_FAILURES_BY_REASON["other"]).inc()


def upstream_failed(reason: str) -> None:
    (UPSTREAM_ERRORS_BY_REASON.get(reason) or UPSTREAM_ERRORS_BY_REASON["other"]).inc()


def upstream_done(outcome: str, seconds: float) -> None:
    _observe(_UPSTREAM[outcome], seconds)


def cache_lookup(cache: str, hit: bool) -> None:
    _CACHE_LOOKUPS[cache][0 if hit else 1] += 1


def limiter_degraded(degraded: bool) -> None:
    LIMITER_DEGRADED.set(1 if degraded else 0)


def invalidation_applied(lag_s: float) -> None:
    INVALIDATION_LAG.observe(max(0.0, lag_s))


def render(accept: str | None) -> tuple[bytes, str]:
    """The registry in the format `accept` asks for (Prometheus text by default, OpenMetrics
    when asked): (body, content type)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(REGISTRY), content_type


class _HotFamilies:
    """The plain-number families above, as Prometheus families at scrape time."""

    def describe(self) -> list[Metric]:
        return self._families(empty=True)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(empty=False))

    def _families(self, *, empty: bool) -> list[Metric]:
        requests = CounterMetricFamily(
            "mcpgw_http_requests", "HTTP requests answered, by endpoint "
            "(call|test|settings|other), route, JSON-RPC method (MCP endpoints) and outcome",
            labels=_REQUEST_LABELS)
        duration = HistogramMetricFamily(
            "mcpgw_http_request_duration_seconds", "Time from the request's arrival to its "
            "answer (the whole stream for SSE)", labels=_REQUEST_LABELS)
        hits = CounterMetricFamily("mcpgw_cache_hits", "Gateway cache lookups answered from "
                                   "memory", labels=("cache",))
        misses = CounterMetricFamily("mcpgw_cache_misses", "Gateway cache lookups that went to "
                                     "the store", labels=("cache",))
        upstream = HistogramMetricFamily(
            "mcpgw_upstream_request_duration_seconds", "callUrl tools/call round trips to the "
            "upstream MCP server (handshake and retry included)", labels=("outcome",))
        if not empty:
            for labels, counts in list(_REQUESTS.items()):
                requests.add_metric(labels, counts[0])
                duration.add_metric(labels, _buckets(counts), counts[1])
            for outcome, counts in _UPSTREAM.items():
                upstream.add_metric((outcome,), _buckets(counts), counts[1])
            for cache, (hit, miss) in _CACHE_LOOKUPS.items():
                hits.add_metric((cache,), hit)
                misses.add_metric((cache,), miss)
        return [requests, duration, upstream, hits, misses]


_BOUNDS = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]


def _buckets(counts: list[float]) -> list[tuple[str, float]]:
    """Cumulative ("le") buckets from per-bucket counts."""
    cumulative, buckets = 0.0, []
    for bound, count in zip(_BOUNDS, counts[2:], strict=True):
        cumulative += count
        buckets.append((bound, cumulative))
    return buckets


REGISTRY.register(_HotFamilies())  # type: ignore[arg-type]
