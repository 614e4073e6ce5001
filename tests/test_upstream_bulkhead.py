"""Bulkheads between tenants on the upstream path (issue #18): one tenant's slow upstream costs
only that tenant.

- callUrl: each integration has at most MCPGW_UPSTREAM_MAX_INFLIGHT calls in flight; the next
  ones are refused at once with a JSON-RPC error (`data.upstream` "busy"), never queued, and
  another tenant's call is not held up;
- the data plane's shared HTTP client has no process-wide cap to queue on;
- catalog reads (POST /configs, :syncTools) are bounded per tenant the same way (429);
- the variable is validated like every other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import Api, make_settings
from mcp_helpers import modern_headers, modern_message
from mcp_stub import StubUpstream
from polling import until

from gateway.context import Endpoint
from gateway.server import build_app
from gateway.state import GATEWAY
from settings_api.config import ConfigError, load_settings
from settings_api.http import HTTP_CLIENT

MAX_INFLIGHT = 4
SLOW_S = 2.5
TOOLS = [{"name": "search_contacts", "inputSchema": {"type": "object"}}]
ENV = {
    "MCPGW_UPSTREAM_MAX_INFLIGHT": str(MAX_INFLIGHT),
    "MCPGW_UPSTREAM_TIMEOUT_S": "10",
    # The egress policy refuses loopback upstreams unless allowed; the stubs run on 127.0.0.1.
    "MCPGW_UPSTREAM_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    "MCPGW_RATE_LIMIT_RPS": "1000",
    "MCPGW_RATE_LIMIT_BURST": "1000",
    "MCPGW_REQUEST_LIMIT_RPS": "1000",
    "MCPGW_REQUEST_LIMIT_BURST": "1000",
}


@pytest.fixture
async def gateway(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", **ENV)
    return await aiohttp_client(build_app(settings))


async def upstream(aiohttp_server: Any, stub: StubUpstream) -> str:
    return str((await aiohttp_server(stub.app())).make_url("/mcp"))


async def enabled_key(api: Api, integration: str, upstream_url: str) -> str:
    await api.call("PUT", f"/{integration}", 201, json={"name": integration})
    _, config = await api.call(
        "POST", f"/{integration}/configs", 201, json={"upstreamUrl": upstream_url}
    )
    return await api.enable(config["configId"], ["search_contacts"], integration)


async def call_tool(
    client: TestClient, tenant: str, integration: str, key: str
) -> tuple[float, int, Any]:
    message = modern_message("tools/call", {"name": "search_contacts", "arguments": {}})
    headers = modern_headers(message, key)
    started = time.monotonic()
    async with client.post(
        f"/v1/tenants/{tenant}/integrations/{integration}/mcp:call",
        json=message,
        headers=headers,
    ) as resp:
        body = await resp.json(content_type=None)
        return time.monotonic() - started, resp.status, body


@pytest.mark.slow  # waits on slow upstreams
async def test_one_tenants_slow_upstream_does_not_delay_another(
    gateway: TestClient, aiohttp_server: Any, auth: Callable[..., dict[str, str]]
) -> None:
    slow = StubUpstream(tools=TOOLS, mode="slow", delay_s=SLOW_S, fail_on={"tools/call"})
    fast = StubUpstream(tools=TOOLS)
    evil_key = await enabled_key(
        Api(gateway, auth("evil"), "evil"), "crm", await upstream(aiohttp_server, slow)
    )
    good_key = await enabled_key(
        Api(gateway, auth("good"), "good"), "crm", await upstream(aiohttp_server, fast)
    )

    started = time.monotonic()
    flood = [
        asyncio.create_task(call_tool(gateway, "evil", "crm", evil_key))
        for _ in range(MAX_INFLIGHT + 3)
    ]
    # The excess is refused at once, not queued behind the slow calls.
    await until(lambda: sum(task.done() for task in flood) == 3, timeout_s=1.5)
    refused = [task for task in flood if task.done()]
    await until(lambda: slow.calls["tools/call"] == MAX_INFLIGHT, timeout_s=5.0)
    for task in refused:
        took, status, body = task.result()
        assert status == 200 and took < 1.0, (took, status, body)
        error = body["error"]
        assert error["code"] == -32603
        assert error["data"] == {"upstream": "busy", "limit": MAX_INFLIGHT}
        assert "MCPGW_UPSTREAM_MAX_INFLIGHT" in error["message"]

    # The other tenant's call goes straight through while the slow ones are still in flight.
    took, status, body = await call_tool(gateway, "good", "crm", good_key)
    assert status == 200 and body["result"]["isError"] is False, body
    assert took < 1.0, took
    assert not any(task.done() for task in flood if task not in refused)

    answers = await asyncio.gather(*flood)
    assert time.monotonic() - started >= SLOW_S
    assert sum("result" in body for _, _, body in answers) == MAX_INFLIGHT
    assert slow.calls["tools/call"] == MAX_INFLIGHT  # the refused ones never reached it
    # The slots are given back, and nothing is kept for an idle integration.
    executor = gateway.app[GATEWAY].executors[Endpoint.CALL]
    assert len(executor.bulkhead) == 0  # type: ignore[attr-defined]


async def test_upstream_calls_never_wait_for_a_process_wide_connection_cap(
    gateway: TestClient,
    aiohttp_server: Any,
) -> None:
    # aiohttp's default cap (100 connections in use) was one queue for every tenant: past it,
    # each tenant's call waited for another tenant's slow upstream to answer.
    active = peak = 0
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await release.wait()
        active -= 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/", handler)
    url = str((await aiohttp_server(app)).make_url("/"))
    # The app's one client of every upstream request, both planes'.
    http = gateway.app[HTTP_CLIENT]

    async def post() -> int:
        async with http.post(url, data=b"{}", allow_redirects=False) as resp:
            return resp.status

    try:
        calls = [asyncio.create_task(post()) for _ in range(120)]
        await until(lambda: peak == 120, timeout_s=5.0)
        release.set()
        assert await asyncio.gather(*calls) == [200] * 120
    finally:
        release.set()


@pytest.mark.slow  # waits on slow upstreams
async def test_one_tenants_slow_catalog_reads_are_bounded_and_hold_up_no_one_else(
    gateway: TestClient, aiohttp_server: Any, auth: Callable[..., dict[str, str]]
) -> None:
    slow = StubUpstream(tools=TOOLS, mode="slow", delay_s=SLOW_S, fail_on={"initialize"})
    fast = StubUpstream(tools=TOOLS)
    slow_url = await upstream(aiohttp_server, slow)
    evil = Api(gateway, auth("evil"), "evil")
    good = Api(gateway, auth("good"), "good")
    await evil.call("PUT", "/crm", 201, json={"name": "CRM"})
    await good.call("PUT", "/crm", 201, json={"name": "CRM"})

    reads = [
        asyncio.create_task(evil.call("POST", "/crm/configs", json={"upstreamUrl": slow_url}))
        for _ in range(MAX_INFLIGHT + 1)
    ]
    await until(lambda: slow.calls["initialize"] == MAX_INFLIGHT, timeout_s=5.0)
    await until(lambda: any(task.done() for task in reads), timeout_s=1.0)
    [refused] = [task for task in reads if task.done()]
    status, problem = refused.result()
    assert status == 429, problem
    assert problem["limit"] == MAX_INFLIGHT
    assert "MCPGW_UPSTREAM_MAX_INFLIGHT" in problem["detail"]

    started = time.monotonic()
    await good.call(
        "POST", "/crm/configs", 201, json={"upstreamUrl": await upstream(aiohttp_server, fast)}
    )
    assert time.monotonic() - started < 1.0

    assert sorted(status for status, _ in await asyncio.gather(*reads)) == (
        [201] * MAX_INFLIGHT + [429]
    )
    # Slots are given back: the tenant can read catalogs again.
    slow.mode = "ok"
    await evil.call("POST", "/crm/configs", 201, json={"upstreamUrl": slow_url})


@pytest.mark.parametrize("raw", ["0", "-3", "many", "2.5"])
def test_a_bad_max_inflight_is_reported(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_UPSTREAM_MAX_INFLIGHT": raw})
    assert any(p.startswith("MCPGW_UPSTREAM_MAX_INFLIGHT=") for p in caught.value.problems)


def test_max_inflight_defaults_to_32(tmp_path: Path) -> None:
    assert load_settings({"MCPGW_DATA_DIR": str(tmp_path)}).upstream_max_inflight == 32
    assert (
        load_settings(
            {"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_UPSTREAM_MAX_INFLIGHT": "7"}
        ).upstream_max_inflight
        == 7
    )
