"""`GET /metrics` (Prometheus): every family is exposed on every role, the counters move for
the requests that should move them, and no secret, tenant or tool name ever appears in it.

Metrics live in the process's default registry, shared by every app a test run builds, so the
tests compare values before and after (never absolute values).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient
from conftest import REDIS_URL, Api, make_settings
from flaky_limiter import FlakyPrimary
from mcp_stub import StubUpstream
from prometheus_client import REGISTRY

import gateway.executors.pool
import gateway.executors.proxy
import mcp_core.client
from gateway.invalidation import RedisChangeFeed, decode, decode_message, encode
from gateway.observability import metrics
from gateway.ratelimit import FailoverLimiter, LocalLimiter
from gateway.ratelimit.buckets import BucketSpec, Limits
from gateway.server import build_app
from mcp_core.client import UPSTREAM_ERROR_REASONS as CLIENT_ERROR_REASONS
from settings_api import keys
from settings_api.changes import Change
from settings_api.config import Settings

MODERN = "2026-07-28"
FAMILIES = (
    "mcpgw_http_requests_total",
    "mcpgw_http_request_duration_seconds_bucket",
    "mcpgw_http_requests_in_flight",
    "mcpgw_rate_limited_total",
    "mcpgw_rate_limiter_degraded",
    "mcpgw_auth_failures_total",
    "mcpgw_upstream_request_duration_seconds_bucket",
    "mcpgw_upstream_errors_total",
    "mcpgw_cache_hits_total",
    "mcpgw_cache_misses_total",
    "mcpgw_invalidation_lag_seconds_bucket",
    "mcpgw_build_info",
)
UPSTREAM_SECRET = "Bearer upstream-secret-metrics-XYZ"
TOOLS = [
    {"name": "search_contacts", "inputSchema": {"type": "object"}},
    {"name": "create_contact", "inputSchema": {"type": "object"}},
]
BURST = 6


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # A small all-requests bucket, so a 429 is a few requests away.
    return make_settings(
        tmp_path, database_url, MCPGW_REQUEST_LIMIT_BURST=str(BURST), MCPGW_REQUEST_LIMIT_RPS="0.01"
    )


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests_total(**labels: str) -> float:
    """Sum of mcpgw_http_requests_total over the series matching `labels`."""
    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == "mcpgw_http_requests_total" and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
    return total


def modern(
    method: str, key: str, params: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    params = dict(params or {})
    params["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    headers = {
        "Authorization": f"Bearer {key}",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
        "Accept": "application/json, text/event-stream",
    }
    if method == "tools/call":
        headers["Mcp-Name"] = params["name"]
    return body, headers


async def mcp(
    client: TestClient,
    method: str,
    key: str,
    params: dict[str, Any] | None = None,
    url: str = "/v1/tenants/acme/integrations/crm/mcp:call",
) -> tuple[int, Any]:
    body, headers = modern(method, key, params)
    async with client.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def scrape(client: TestClient) -> str:
    async with client.get("/metrics") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        return await resp.text()


async def enabled_key(api: Api, upstream_url: str | None = None) -> str:
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    config: dict[str, Any] = {"tools": TOOLS}
    if upstream_url:
        config.update(upstreamUrl=upstream_url, upstreamHeaders={"Authorization": UPSTREAM_SECRET})
    _, created = await api.call("POST", "/crm/configs", 201, json=config)
    return await api.enable(created["configId"], ["search_contacts"])


@pytest.mark.parametrize("role", ["all", "gateway", "settings"])
async def test_every_role_serves_every_family(
    aiohttp_client: Any, tmp_path: Path, role: str
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    client = await aiohttp_client(build_app(settings, role))
    async with client.get("/healthz") as resp:
        assert resp.status == 200
    text = await scrape(client)
    for family in FAMILIES:
        assert f"\n{family}" in text, family
    assert (
        'mcpgw_http_requests_total{endpoint="other",http_method="GET",outcome="ok",'
        'route="healthz",rpc_method="-"}'
    ) in text
    # OpenMetrics when the scraper asks for it.
    async with client.get("/metrics", headers={"Accept": "application/openmetrics-text"}) as resp:
        assert resp.content_type == "application/openmetrics-text"
        assert (await resp.text()).rstrip().endswith("# EOF")


async def test_counters_move_and_no_secret_is_exposed(
    client: TestClient, api: Api, aiohttp_server: Any, token: Callable[..., str]
) -> None:
    stub = StubUpstream(tools=TOOLS, mode="http-500")
    upstream_url = str((await aiohttp_server(stub.app())).make_url("/mcp"))

    settings_ok = value(
        "mcpgw_http_requests_total",
        endpoint="settings",
        http_method="PUT",
        route="putIntegration",
        rpc_method="-",
        outcome="ok",
    )
    key = await enabled_key(api, upstream_url)
    assert (
        value(
            "mcpgw_http_requests_total",
            endpoint="settings",
            http_method="PUT",
            route="putIntegration",
            rpc_method="-",
            outcome="ok",
        )
        == settings_ok + 1
    )
    assert (
        value(
            "mcpgw_http_request_duration_seconds_count",
            endpoint="settings",
            http_method="PATCH",
            route="patchMcpSettings",
            rpc_method="-",
            outcome="ok",
        )
        >= 1
    )

    # tools/list twice: the second is answered from the caches.
    labels = {
        "endpoint": "call",
        "http_method": "POST",
        "route": "mcp",
        "rpc_method": "tools/list",
        "outcome": "ok",
    }
    before = value("mcpgw_http_requests_total", **labels)
    key_hits = value("mcpgw_cache_hits_total", cache="key")
    view_hits = value("mcpgw_cache_hits_total", cache="integration")
    key_misses = value("mcpgw_cache_misses_total", cache="key")
    for _ in range(2):
        status, body = await mcp(client, "tools/list", key)
        assert status == 200 and body["result"]["tools"][0]["name"] == "search_contacts"
    assert value("mcpgw_http_requests_total", **labels) == before + 2
    assert value("mcpgw_http_request_duration_seconds_count", **labels) >= 2
    assert value("mcpgw_cache_hits_total", cache="key") >= key_hits + 1
    assert value("mcpgw_cache_hits_total", cache="integration") >= view_hits + 1
    assert value("mcpgw_cache_misses_total", cache="key") >= key_misses  # counted, not reset

    # A 401: an unknown key.
    unknown = value("mcpgw_auth_failures_total", reason="unknown")
    failed = requests_total(endpoint="call", outcome="auth_failed")
    status, body = await mcp(client, "tools/list", keys.mint().raw)
    assert status == 401
    assert value("mcpgw_auth_failures_total", reason="unknown") == unknown + 1
    assert requests_total(endpoint="call", outcome="auth_failed") == failed + 1

    # An upstream failure: the stub answers HTTP 500.
    errors = value("mcpgw_upstream_errors_total", reason="http-status")
    calls = value("mcpgw_upstream_request_duration_seconds_count", outcome="error")
    status, body = await mcp(
        client, "tools/call", key, {"name": "search_contacts", "arguments": {}}
    )
    assert status == 200 and body["error"]["data"]["upstream"] == "http-status"
    assert value("mcpgw_upstream_errors_total", reason="http-status") == errors + 1
    assert value("mcpgw_upstream_request_duration_seconds_count", outcome="error") == calls + 1

    # The key's all-requests bucket (BURST) runs out: -32029 errors (at 200, in every era).
    limited = value("mcpgw_rate_limited_total", endpoint="test")
    answers = [
        await mcp(client, "tools/list", key, url="/v1/tenants/acme/integrations/crm/mcp:test")
        for _ in range(BURST)
    ]
    refused = [b for s, b in answers if s == 200 and b.get("error", {}).get("code") == -32029]
    assert refused
    assert value("mcpgw_rate_limited_total", endpoint="test") == limited + len(refused)
    assert requests_total(endpoint="test", outcome="rate_limited") >= len(refused)
    # A refused tools/call is an error result at 200: counted as rate limited all the same.
    limited = value("mcpgw_rate_limited_total", endpoint="test")
    status, body = await mcp(
        client,
        "tools/call",
        key,
        {"name": "search_contacts", "arguments": {}},
        url="/v1/tenants/acme/integrations/crm/mcp:test",
    )
    assert status == 200 and body["result"]["isError"] is True, body
    assert value("mcpgw_rate_limited_total", endpoint="test") == limited + 1

    # Nothing identifying or secret in the scrape.
    text = await scrape(client)
    for secret in (
        key,
        key[:12],
        token("acme"),
        UPSTREAM_SECRET,
        "upstream-secret-metrics",
        "acme",
        "crm",
        "search_contacts",
        upstream_url,
    ):
        assert secret not in text, secret


async def test_unknown_json_rpc_methods_share_one_label(client: TestClient, api: Api) -> None:
    key = await enabled_key(api)
    method = f"x/{uuid.uuid4().hex}"
    status, _ = await mcp(client, method, key)
    assert status == 404
    assert (
        value(
            "mcpgw_http_requests_total",
            endpoint="call",
            http_method="POST",
            route="mcp",
            rpc_method="other",
            outcome="not_found",
        )
        >= 1
    )
    assert method not in await scrape(client)


async def test_normal_client_probes_are_counted_as_not_offered(client: TestClient) -> None:
    """The legacy GET stream and OAuth discovery are refused, but not failures."""
    for path, status, labels in (
        (
            "/v1/tenants/acme/integrations/crm/mcp:call",
            405,
            {"endpoint": "call", "route": "mcp", "rpc_method": "none"},
        ),
        (
            "/.well-known/oauth-protected-resource",
            404,
            {"endpoint": "other", "route": "well-known", "rpc_method": "-"},
        ),
    ):
        async with client.get(path) as resp:
            assert resp.status == status
        counted = value(
            "mcpgw_http_requests_total", http_method="GET", outcome="not_offered", **labels
        )
        assert counted >= 1


async def test_in_flight_gauge_counts_requests_being_handled(client: TestClient) -> None:
    # The scrape itself is in flight while it renders.
    text = await scrape(client)
    line = next(
        x
        for x in text.splitlines()
        if x.startswith('mcpgw_http_requests_in_flight{endpoint="other"}')
    )
    assert float(line.split()[-1]) >= 1


def limits() -> Limits:
    return Limits(call=BucketSpec(10.0, 10), request=BucketSpec(10.0, 10))


async def test_limiter_degraded_gauge_follows_failover() -> None:
    primary = FlakyPrimary()
    now = [0.0]
    limiter = FailoverLimiter(
        primary,
        LocalLimiter(limits()),
        "open",  # type: ignore[arg-type]
        retry_interval_s=1.0,
        clock=lambda: now[0],
    )
    await limiter.check("k", tools_call=False)
    assert value("mcpgw_rate_limiter_degraded") == 1
    primary.down = False
    now[0] += 2
    await limiter.check("k", tools_call=False)
    assert value("mcpgw_rate_limiter_degraded") == 0


def test_change_messages_carry_their_publication_time() -> None:
    change = Change("acme", "crm", ("k1",))
    assert decode_message(encode(change, published_at_ms=1_764_000_000_123)) == (
        change,
        1_764_000_000.123,
    )
    sent = json.loads(encode(change))
    assert abs(sent["at"] / 1000 - time.time()) < 5
    # Messages of older versions (no "at") still apply, without a lag measurement.
    old = json.dumps({"t": "acme", "i": "crm", "r": ["k1"]})
    assert decode(old) == change and decode_message(old) == (change, None)
    assert decode_message(b"[1]") == (None, None)


async def test_invalidation_lag_is_observed_on_the_receiving_replica() -> None:
    channel = f"test:{uuid.uuid4().hex}"
    one, two = redis.from_url(REDIS_URL), redis.from_url(REDIS_URL)
    sender, receiver = RedisChangeFeed(one, channel=channel), RedisChangeFeed(two, channel=channel)
    applied = asyncio.Event()

    async def on_change(change: Change) -> None:
        applied.set()

    receiver.subscribe(on_change)
    count = value("mcpgw_invalidation_lag_seconds_count")
    task = asyncio.create_task(receiver.run())
    try:
        await asyncio.wait_for(receiver.connected.wait(), 2)
        await sender.publish(Change("acme", "crm"))
        await asyncio.wait_for(applied.wait(), 2)
        for _ in range(100):
            if value("mcpgw_invalidation_lag_seconds_count") > count:
                break
            await asyncio.sleep(0.01)
        assert value("mcpgw_invalidation_lag_seconds_count") == count + 1
        assert value("mcpgw_invalidation_lag_seconds_bucket", le="1.0") >= 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await one.aclose()
        await two.aclose()


def test_request_histogram_buckets_are_cumulative_and_inclusive() -> None:
    """The request families: a value on a bucket's bound counts in that bucket ("le"),
    buckets are cumulative, and the count and sum agree with what was observed."""
    labels = ("other", "GET", "histogram-test", "-", "ok")
    names = dict(
        zip(("endpoint", "http_method", "route", "rpc_method", "outcome"), labels, strict=True)
    )
    for seconds in (0.001, 0.0011, 0.0025, 40.0):
        metrics.observe_request(labels, seconds)

    def bucket(le: str) -> float:
        return value("mcpgw_http_request_duration_seconds_bucket", le=le, **names)

    assert bucket("0.001") == 1
    assert bucket("0.0025") == 3
    assert bucket("30.0") == 3
    assert bucket("+Inf") == 4
    assert value("mcpgw_http_request_duration_seconds_count", **names) == 4
    assert value("mcpgw_http_request_duration_seconds_sum", **names) == pytest.approx(40.0046)
    assert value("mcpgw_http_requests_total", **names) == 4


def _reasons_in(path: Path, pattern: str) -> set[str]:
    return set(re.findall(pattern, path.read_text()))


def test_every_upstream_error_reason_has_its_own_label() -> None:
    """Each reason an upstream call can fail with (the client's list, every reason spelled where
    an UpstreamError is raised, the proxy's own refusals) moves its own series, never `other`."""
    raised = r'UpstreamError\(\s*"([a-z-]+)"'
    client_files = sorted(Path(mcp_core.client.__file__).parent.glob("*.py"))
    spelled: set[str] = set()
    for path in [*client_files, Path(gateway.executors.pool.__file__)]:
        spelled |= _reasons_in(path, raised)
    assert spelled, "the pattern no longer finds where UpstreamErrors are raised"
    assert spelled <= set(CLIENT_ERROR_REASONS)
    proxy = Path(gateway.executors.proxy.__file__)
    proxy_reasons = _reasons_in(proxy, r'"upstream": "([a-z-]+)"') | _reasons_in(
        proxy, r'upstream_failed\("([a-z-]+)"\)'
    )
    assert {"busy", "none", "secrets-unreadable"} <= proxy_reasons
    for reason in sorted({*CLIENT_ERROR_REASONS, *proxy_reasons}):
        assert reason in metrics.UPSTREAM_ERROR_REASONS, reason
        before = value("mcpgw_upstream_errors_total", reason=reason)
        other = value("mcpgw_upstream_errors_total", reason="other")
        metrics.upstream_failed(reason)
        assert value("mcpgw_upstream_errors_total", reason=reason) == before + 1
        assert value("mcpgw_upstream_errors_total", reason="other") == other
