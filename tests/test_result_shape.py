"""One result shape on both URLs: the same `tools/call` on callUrl (bound to the example
upstream, through the real proxy) and on testUrl (the real simulator) answers with the same
fields, `isError: false`, and the same text encoding of `structuredContent`; the gateway's own
refusals of bad arguments are identical on both."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import make_settings
from mcp_helpers import (
    CALL,
    TENANT,
    TEST,
    FakeLimiter,
    FakeResolver,
    legacy,
    modern,
    open_session,
)

from gateway.context import Endpoint, IntegrationView
from gateway.endpoint import setup_mcp_routes
from gateway.example_upstream import TOOLS, ExampleUpstream
from gateway.executors import ProxyExecutor, SimulatorExecutor, UpstreamPool
from gateway.observability.middleware import edge_middleware
from gateway.state import GATEWAY, GatewayState
from mcp_core.results import structured_text
from settings_api.http import SETTINGS
from settings_api.tools import normalize_tools
from simulator.fixtures import parse_fixture

SCRIPTED = {
    "content": [{"type": "text", "text": "no lost deals"}],
    "structuredContent": {"deals": [], "totalAmount": 0},
}


@pytest.fixture
async def mcp(
    aiohttp_client: Any, aiohttp_server: Any, upstream_http: aiohttp.ClientSession, tmp_path: Path
) -> AsyncIterator[TestClient]:
    upstream = await aiohttp_server(ExampleUpstream().app())
    tools, errors = normalize_tools(TOOLS)
    assert errors == []
    by_name = {t["name"]: t for t in tools}
    # A tenant's scripted answer that leaves `isError` out, as the spec allows.
    scripted, problems = parse_fixture(
        {"rules": [{"match": {"stage": "closed_lost"}, "result": SCRIPTED}]}, by_name["list_deals"]
    )
    assert problems == [] and scripted is not None
    resolver = FakeResolver()
    resolver.views[(TENANT, "crm")] = IntegrationView(
        tenant_id=TENANT,
        integration_id="crm",
        name="CRM",
        enabled=True,
        description=None,
        config_id="cfg-crm",
        upstream_url=str(upstream.make_url("/mcp")),
        upstream_headers={},
        tools=tuple(tools),
        tools_by_name=by_name,
        fixtures={"list_deals": scripted},
    )
    pool = UpstreamPool(upstream_http, timeout_s=10.0)
    simulator = SimulatorExecutor()
    app = web.Application(middlewares=[edge_middleware])
    app[SETTINGS] = make_settings(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    limiter = FakeLimiter()
    app[GATEWAY] = GatewayState(
        resolver=resolver,
        limiter=limiter,
        sessions=limiter,
        executors={Endpoint.CALL: ProxyExecutor(pool), Endpoint.TEST: simulator},
    )
    setup_mcp_routes(app)
    try:
        yield await aiohttp_client(app)
    finally:
        await pool.close()
        simulator.close()


async def call_both_eras(mcp: TestClient, url: str, params: dict[str, Any]) -> list[Any]:
    """The answers (status, body) to one `tools/call`, modern then legacy."""
    modern_resp, modern_body = await modern(mcp, "tools/call", params, url=url)
    session = await open_session(mcp, url=url)
    legacy_resp, legacy_body = await legacy(mcp, "tools/call", params, session=session, url=url)
    return [(modern_resp.status, modern_body), (legacy_resp.status, legacy_body)]


def nested(depth: int) -> Any:
    """A list nested `depth` levels deep (past the gateway's bound on arguments)."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def shape(result: dict[str, Any]) -> dict[str, Any]:
    """What an eval harness reads of a result, values aside."""
    return {
        "fields": sorted(result),
        "isError": result["isError"],
        "content": [block["type"] for block in result["content"]],
        "meta": sorted(result.get("_meta", {})),
    }


async def test_a_successful_call_has_one_shape_on_both_urls(mcp: TestClient) -> None:
    params = {"name": "search_contacts", "arguments": {"query": "a", "limit": 2}}
    on_call = await call_both_eras(mcp, CALL, params)
    on_test = await call_both_eras(mcp, TEST, params)
    for (call_status, call_body), (test_status, test_body) in zip(on_call, on_test, strict=True):
        assert call_status == test_status == 200, (call_body, test_body)
        call_result, test_result = call_body["result"], test_body["result"]
        assert shape(call_result) == shape(test_result)
        assert call_result["isError"] is False
        for result in (call_result, test_result):
            text = result["content"][0]["text"]
            assert text == structured_text(result["structuredContent"])
            assert json.loads(text) == result["structuredContent"]


async def test_a_scripted_result_without_is_error_gets_it(mcp: TestClient) -> None:
    params = {"name": "list_deals", "arguments": {"stage": "closed_lost"}}
    for status, body in await call_both_eras(mcp, TEST, params):
        assert status == 200
        result = body["result"]
        assert result["isError"] is False
        assert result["structuredContent"] == SCRIPTED["structuredContent"]


@pytest.mark.parametrize(
    "params",
    [
        {"name": "delete_everything", "arguments": {}},
        {"name": "search_contacts", "arguments": [1]},
        {"arguments": {"query": "a"}},
        {"name": "search_contacts", "arguments": {"query": "a", "deep": nested(40)}},
    ],
)
async def test_the_gateways_own_refusals_are_identical_on_both_urls(
    mcp: TestClient, params: dict[str, Any]
) -> None:
    on_call = await call_both_eras(mcp, CALL, params)
    on_test = await call_both_eras(mcp, TEST, params)
    assert on_call == on_test
    for _, body in on_call:
        assert body["error"]["code"] == -32602
