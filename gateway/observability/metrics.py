"""Prometheus metrics of this process (prometheus-client's default registry).

Every label is bounded: endpoints, route names from the route table, a fixed list of MCP
methods, outcomes and reasons. Never a key id, tenant, integration or tool name. Every family
is a prometheus-client `Counter`, `Gauge` or `Histogram`; label children are bound once and
kept in module-level dicts (binding one takes a lock and builds its label tuple).

The families (see docs/operations.md for the PromQL that derives ratios from them):

- `mcpgw_http_requests_total`, `mcpgw_http_request_duration_seconds`
  {endpoint, http_method, route, rpc_method, outcome}
- `mcpgw_http_requests_in_flight` {endpoint}
- `mcpgw_rate_limited_total` {endpoint}; `mcpgw_rate_limiter_degraded`
- `mcpgw_auth_failures_total` {reason}
- `mcpgw_upstream_request_duration_seconds` {outcome}; `mcpgw_upstream_errors_total` {reason}
- `mcpgw_cache_hits_total`, `mcpgw_cache_misses_total` {cache}
- `mcpgw_invalidation_lag_seconds`
- `mcpgw_call_log_written_total`, `mcpgw_call_log_dropped_total` {reason}
- `mcpgw_build_info` {version}
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from mcp_core.client.errors import UPSTREAM_ERROR_REASONS as CLIENT_ERROR_REASONS
from mcp_core.version import __version__

# `*_created` series double the scrape for no use here.
disable_created_metrics()

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

ENDPOINTS = ("call", "test", "settings", "other")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# JSON-RPC methods that get their own label value; anything else is "other". "batch": a
# JSON-RPC batch; "invalid": unparsable body; "none": no body read (refused before that) or a
# message without a method; "-": not an MCP endpoint.
RPC_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
    }
)
AUTH_FAILURE_REASONS = (
    "missing",
    "malformed",
    "unknown",
    "revoked",
    "expired",
    "wrong-resource",
    "wrong-integration",
    "disabled",
    "throttled",
    "other",
)
# Every reason the upstream client raises, then the proxy's own refusals (its bulkhead full, no
# upstream configured, header values that cannot be decrypted).
UPSTREAM_ERROR_REASONS = (
    *CLIENT_ERROR_REASONS,
    "busy",
    "none",
    "secrets-unreadable",
    "other",
)
CACHES = ("key", "integration", "token")
# Why a recorded tools/call never reached the call log (gateway/call_log/buffer.py).
CALL_LOG_DROP_REASONS = ("buffer_full", "store_unavailable")

_REQUEST_LABELS = ("endpoint", "http_method", "route", "rpc_method", "outcome")
REQUESTS = Counter(
    "mcpgw_http_requests",
    "HTTP requests answered, by endpoint "
    "(call|test|settings|other), route, JSON-RPC method (MCP endpoints) and "
    "outcome",
    _REQUEST_LABELS,
)
REQUEST_DURATION = Histogram(
    "mcpgw_http_request_duration_seconds",
    "Time from the request's arrival to its answer (the whole stream for SSE)",
    _REQUEST_LABELS,
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("mcpgw_http_requests_in_flight", "Requests being handled", ("endpoint",))
RATE_LIMITED = Counter(
    "mcpgw_rate_limited", "Requests refused by the per-key rate limit (429)", ("endpoint",)
)
LIMITER_DEGRADED = Gauge(
    "mcpgw_rate_limiter_degraded", "1 while the rate limiter cannot reach Redis and fails over"
)
AUTH_FAILURES = Counter(
    "mcpgw_auth_failures", "MCP requests refused at authentication, by reason", ("reason",)
)
UPSTREAM_DURATION = Histogram(
    "mcpgw_upstream_request_duration_seconds",
    "callUrl tools/call round trips to the upstream MCP server (handshake and retry included)",
    ("outcome",),
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "mcpgw_upstream_errors", "Failed upstream tools/call, by reason", ("reason",)
)
CACHE_HITS = Counter("mcpgw_cache_hits", "Gateway cache lookups answered from memory", ("cache",))
CACHE_MISSES = Counter(
    "mcpgw_cache_misses", "Gateway cache lookups that went to the store", ("cache",)
)
INVALIDATION_LAG = Histogram(
    "mcpgw_invalidation_lag_seconds",
    "From a change's publication to its application on this "
    "replica (wall clocks of two hosts: skew adds up)",
    buckets=LAG_BUCKETS,
)
CALLS_WRITTEN = Counter("mcpgw_call_log_written", "tools/call entries written to the call log")
CALLS_DROPPED = Counter(
    "mcpgw_call_log_dropped",
    "tools/call entries never written to the call log: the replica's buffer was full, or the "
    "store refused their batch",
    ("reason",),
)
BUILD_INFO = Gauge("mcpgw_build_info", "The running version", ("version",))
BUILD_INFO.labels(__version__).set(1)

# Pre-bound children. Bounded label sets are bound eagerly, so every series exists (at 0)
# from the start and rate() sees its first increment.
IN_FLIGHT_BY_ENDPOINT = {e: IN_FLIGHT.labels(e) for e in ENDPOINTS}
RATE_LIMITED_BY_ENDPOINT = {e: RATE_LIMITED.labels(e) for e in ENDPOINTS}
AUTH_FAILURES_BY_REASON = {r: AUTH_FAILURES.labels(r) for r in AUTH_FAILURE_REASONS}
UPSTREAM_ERRORS_BY_REASON = {r: UPSTREAM_ERRORS.labels(r) for r in UPSTREAM_ERROR_REASONS}
UPSTREAM_OUTCOMES = ("ok", "error", "cancelled")
UPSTREAM_DURATION_BY_OUTCOME = {o: UPSTREAM_DURATION.labels(o) for o in UPSTREAM_OUTCOMES}
CALLS_DROPPED_BY_REASON = {r: CALLS_DROPPED.labels(r) for r in CALL_LOG_DROP_REASONS}
CACHE_LOOKUPS = {c: (CACHE_HITS.labels(c), CACHE_MISSES.labels(c)) for c in CACHES}
# The request families' children, bound on a label set's first request: the product of the
# label sets is bounded (in practice a few hundred), too many to bind eagerly.
_REQUEST_SERIES: dict[tuple[str, str, str, str, str], tuple[Counter, Histogram]] = {}


def observe_request(labels: tuple[str, str, str, str, str], seconds: float) -> None:
    """Count one answered request with these labels and observe its duration."""
    series = _REQUEST_SERIES.get(labels)
    if series is None:
        series = _REQUEST_SERIES[labels] = (
            REQUESTS.labels(*labels),
            REQUEST_DURATION.labels(*labels),
        )
    series[0].inc()
    series[1].observe(seconds)


def auth_failed(reason: str) -> None:
    (AUTH_FAILURES_BY_REASON.get(reason) or AUTH_FAILURES_BY_REASON["other"]).inc()


def upstream_failed(reason: str) -> None:
    (UPSTREAM_ERRORS_BY_REASON.get(reason) or UPSTREAM_ERRORS_BY_REASON["other"]).inc()


def upstream_done(outcome: str, seconds: float) -> None:
    UPSTREAM_DURATION_BY_OUTCOME[outcome].observe(seconds)


def cache_lookup(cache: str, hit: bool) -> None:
    CACHE_LOOKUPS[cache][0 if hit else 1].inc()


def limiter_degraded(degraded: bool) -> None:
    LIMITER_DEGRADED.set(1 if degraded else 0)


def invalidation_applied(lag_s: float) -> None:
    INVALIDATION_LAG.observe(max(0.0, lag_s))


def calls_written(count: int) -> None:
    CALLS_WRITTEN.inc(count)


def calls_dropped(reason: str, count: int) -> None:
    CALLS_DROPPED_BY_REASON[reason].inc(count)


def render(accept: str | None) -> tuple[bytes, str]:
    """The registry in the format `accept` asks for (Prometheus text by default, OpenMetrics
    when asked): (body, content type)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(REGISTRY), content_type
