"""The upstream client in both eras (docs/mcp-endpoints.md, "callUrl: the upstream proxy"):
2026-07-28 with an upstream that answers `server/discover` for it, the legacy handshake with
one that does not, the era remembered per replica and probed again when the upstream changes.

The modern upstream is the gateway's own testUrl (a real 2026-07-28 server that checks every
request-metadata header against the body); the legacy-only one is tests/mcp_stub.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from mcp_helpers import KEY, TEST, TOOLS, FakeExecutor, build_mcp_app, executor_ctx, make_view
from mcp_stub import StubUpstream, make_tools
from net import closed_url

from gateway.context import Endpoint, IntegrationView, RequestContext
from gateway.executors import ProxyExecutor, UpstreamPool
from gateway.state import GATEWAY
from gateway.transport.headers import param_headers
from mcp_core.client import StatelessUpstream, UpstreamError, fetch_tool_catalog
from mcp_core.errors import McpError
from mcp_core.headers import encode_value
from mcp_core.versions import LOG_LEVEL_META, PROTOCOL_VERSION_META, Era

ServerFactory = Callable[..., Awaitable[TestServer]]
MODERN = "2026-07-28"
UPSTREAM_HEADERS = {"Authorization": f"Bearer {KEY}"}
REGIONAL = TOOLS[2]  # its `region` and `shard` arguments are mirrored into Mcp-Param-* headers


@dataclasses.dataclass
class Inner:
    """The gateway serving as a modern upstream: its URL, what its testUrl ran, and the
    (Mcp-Method, MCP-Protocol-Version) of every request it received."""

    url: str
    executor: FakeExecutor
    seen: list[tuple[str | None, str | None]]
    server: TestServer


async def serve_inner(aiohttp_server: ServerFactory, tmp_path: Path, **kwargs: Any) -> Inner:
    seen: list[tuple[str | None, str | None]] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(
            (request.headers.get("Mcp-Method"), request.headers.get("MCP-Protocol-Version"))
        )
        return await handler(request)  # type: ignore[no-any-return]

    app = build_mcp_app(tmp_path)
    app.middlewares.append(record)
    server = await aiohttp_server(app, **kwargs)
    executor = app[GATEWAY].executors[Endpoint.TEST]
    assert isinstance(executor, FakeExecutor)
    return Inner(str(server.make_url(TEST)), executor, seen, server)


@pytest.fixture
async def inner(aiohttp_server: ServerFactory, tmp_path: Path) -> Inner:
    return await serve_inner(aiohttp_server, tmp_path)


@pytest.fixture
def proxy(upstream_pool: UpstreamPool) -> ProxyExecutor:
    return ProxyExecutor(upstream_pool)


def view_of(url: str, config_id: str = "cfg-1", tools: Any = TOOLS) -> IntegrationView:
    return dataclasses.replace(
        make_view("crm", tuple(tools)),
        upstream_url=url,
        upstream_headers=UPSTREAM_HEADERS,
        config_id=config_id,
    )


def ctx_of(view: IntegrationView, notify: Any = None) -> RequestContext:
    return executor_ctx(view, notify=notify)


# --- a modern upstream ------------------------------------------------------------------------


async def test_a_modern_upstream_is_called_statelessly_after_one_probe(
    inner: Inner, proxy: ProxyExecutor
) -> None:
    arguments = {"region": "eu-west", "shard": 3, "query": "x"}
    result = await proxy.call_tool(ctx_of(view_of(inner.url)), REGIONAL, arguments, None)
    # The modern exchange's own fields (resultType, serverInfo in _meta) stay on its hop.
    assert result == {
        "content": [
            {
                "type": "text",
                "text": 'test:regional_lookup:{"query": "x", "region": "eu-west", "shard": 3}',
            }
        ],
        "isError": False,
    }
    call = inner.executor.calls[-1]
    assert call["era"] is Era.MODERN and call["version"] == MODERN
    assert call["region_header"] == "eu-west"  # Mcp-Param-Region, checked against the body
    assert inner.seen == [("server/discover", MODERN), ("tools/call", MODERN)]
    # Remembered per replica: another call, even for another config of the same upstream,
    # goes straight to it.
    await proxy.call_tool(ctx_of(view_of(inner.url, "cfg-2")), TOOLS[0], {"query": "y"}, None)
    assert inner.seen[2:] == [("tools/call", MODERN)]


async def test_progress_token_and_log_opt_in_reach_a_modern_upstream(
    inner: Inner, proxy: ProxyExecutor
) -> None:
    notes: list[dict[str, Any]] = []

    async def notify(note: dict[str, Any]) -> None:
        notes.append(note)

    meta = {
        "progressToken": "tok",
        LOG_LEVEL_META: "warning",
        PROTOCOL_VERSION_META: "2025-11-25",  # the client's hop: not passed on
        "vendor/x": 1,
    }
    await proxy.call_tool(ctx_of(view_of(inner.url), notify), TOOLS[0], {"progress": True}, meta)
    sent = inner.executor.calls[-1]["meta"]
    assert sent["progressToken"] == "tok" and sent[LOG_LEVEL_META] == "warning"
    assert sent[PROTOCOL_VERSION_META] == MODERN and sent["vendor/x"] == 1
    assert [n["params"]["progress"] for n in notes] == [1, 2]
    assert all(n["method"] == "notifications/progress" for n in notes)
    assert all(n["params"]["progressToken"] == "tok" for n in notes)


async def test_a_modern_upstreams_error_is_relayed_as_it_answered(
    inner: Inner, proxy: ProxyExecutor
) -> None:
    # The modern transport answers it with HTTP 400: its body is the answer, not the status.
    unknown = {"name": "not_there", "inputSchema": {"type": "object"}}
    with pytest.raises(McpError) as info:
        await proxy.call_tool(ctx_of(view_of(inner.url)), unknown, {}, None)
    assert info.value.code == -32602 and "Unknown tool" in info.value.message


async def test_the_catalog_of_a_modern_upstream_is_read_without_a_session(
    inner: Inner, upstream_http: aiohttp.ClientSession
) -> None:
    tools = await fetch_tool_catalog(upstream_http, inner.url, UPSTREAM_HEADERS, timeout_s=5)
    assert tools == list(TOOLS)
    assert inner.seen == [("server/discover", MODERN), ("tools/list", MODERN)]


# --- a legacy-only upstream ---------------------------------------------------------------------


async def test_a_legacy_upstream_gets_the_handshake_and_no_modern_meta(
    aiohttp_server: ServerFactory, proxy: ProxyExecutor
) -> None:
    tools = make_tools(1)
    stub = StubUpstream(tools=tools)
    url = str((await aiohttp_server(stub.app())).make_url("/mcp"))
    meta = {"progressToken": 5, LOG_LEVEL_META: "info"}
    for config_id in ("cfg-1", "cfg-2"):
        ctx = ctx_of(view_of(url, config_id, tools))
        await proxy.call_tool(ctx, tools[0], {"q": "x"}, meta)
    assert stub.probes == 1  # the era is remembered for the URL
    assert stub.calls["initialize"] == 2  # a session per config
    calls = [m for m in stub.received_messages if m["method"] == "tools/call"]
    assert [c["params"]["_meta"] for c in calls] == [{"progressToken": 5}] * 2


async def test_the_catalog_of_a_legacy_upstream_is_read_in_a_session(
    aiohttp_server: ServerFactory, upstream_http: aiohttp.ClientSession
) -> None:
    stub = StubUpstream(tools=make_tools(3), page_size=2)
    url = str((await aiohttp_server(stub.app())).make_url("/mcp"))
    tools = await fetch_tool_catalog(upstream_http, url, {}, timeout_s=5)
    assert [t["name"] for t in tools] == ["tool_0", "tool_1", "tool_2"]
    assert stub.probes == 1
    assert stub.calls["initialize"] == 1 and stub.calls["DELETE"] == 1


async def test_a_probe_left_unanswered_falls_back_to_the_handshake(
    aiohttp_server: ServerFactory, upstream_http: aiohttp.ClientSession
) -> None:
    @web.middleware
    async def hang_modern(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("MCP-Protocol-Version") == MODERN:
            await asyncio.sleep(60)  # as some legacy servers treat a request they cannot place
        return await handler(request)  # type: ignore[no-any-return]

    stub = StubUpstream(tools=make_tools(1))
    app = stub.app()
    app.middlewares.append(hang_modern)
    url = str((await aiohttp_server(app)).make_url("/mcp"))
    tools = await fetch_tool_catalog(upstream_http, url, {}, timeout_s=2)
    assert [t["name"] for t in tools] == ["tool_0"]
    assert stub.calls["initialize"] == 1


# --- an upstream that changes era -------------------------------------------------------------


async def test_an_upstream_replaced_by_a_legacy_one_is_probed_again(
    aiohttp_server: ServerFactory, tmp_path: Path, proxy: ProxyExecutor
) -> None:
    first = await serve_inner(aiohttp_server, tmp_path)
    view = view_of(first.url)
    await proxy.call_tool(ctx_of(view), TOOLS[0], {"query": "a"}, None)
    port = first.server.port
    await first.server.close()
    stub = StubUpstream(tools=list(TOOLS))
    await aiohttp_server(stub.app(TEST), port=port)
    result = await proxy.call_tool(ctx_of(view), TOOLS[0], {"query": "b"}, None)
    assert result == {"content": [{"type": "text", "text": '{"query": "b"}'}], "isError": False}
    # The modern call refused like a probe, then the probe itself; then the handshake.
    assert stub.probes == 2
    assert [m["method"] for m in stub.received_messages] == [
        "initialize",
        "notifications/initialized",
        "tools/call",
    ]


# --- the probe's verdicts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "modern"),
    [
        (200, {"result": {"supportedVersions": [MODERN, "2025-11-25"]}}, True),
        (200, {"result": {"supportedVersions": ["2025-11-25"]}}, False),
        (
            400,
            {"error": {"code": -32022, "message": "no", "data": {"supported": ["2025-06-18"]}}},
            False,
        ),
        (400, {"error": {"code": -32600, "message": "Bad Request: no session"}}, False),
        (200, {"error": {"code": -32601, "message": "Method not found"}}, False),
        (404, None, False),
        (405, None, False),
        (500, None, False),
    ],
)
async def test_discover_verdicts(
    aiohttp_server: ServerFactory,
    upstream_http: aiohttp.ClientSession,
    status: int,
    body: dict[str, Any] | None,
    modern: bool,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        message = await request.json()
        assert request.headers["Mcp-Method"] == message["method"] == "server/discover"
        assert request.headers["MCP-Protocol-Version"] == MODERN
        assert message["params"]["_meta"][PROTOCOL_VERSION_META] == MODERN
        if body is None:
            return web.Response(status=status, text="nope")
        return web.json_response({"jsonrpc": "2.0", "id": message["id"], **body}, status=status)

    app = web.Application()
    app.router.add_post("/mcp", answer)
    url = str((await aiohttp_server(app)).make_url("/mcp"))
    assert await StatelessUpstream(upstream_http, url, {}).discover() is modern


async def test_discover_refuses_a_modern_only_upstream_of_other_versions(
    aiohttp_server: ServerFactory, upstream_http: aiohttp.ClientSession
) -> None:
    async def answer(request: web.Request) -> web.Response:
        message = await request.json()
        error = {"code": -32022, "message": "no", "data": {"supported": ["2030-01-01"]}}
        return web.json_response(
            {"jsonrpc": "2.0", "id": message["id"], "error": error}, status=400
        )

    app = web.Application()
    app.router.add_post("/mcp", answer)
    url = str((await aiohttp_server(app)).make_url("/mcp"))
    with pytest.raises(UpstreamError) as info:
        await StatelessUpstream(upstream_http, url, {}).discover()
    assert info.value.reason == "invalid-response"


async def test_discover_does_not_fall_back_when_the_upstream_is_unreachable(
    upstream_http: aiohttp.ClientSession,
) -> None:
    with pytest.raises(UpstreamError) as info:
        await StatelessUpstream(upstream_http, closed_url(), {}).discover()
    assert info.value.reason == "connect"


# --- request-metadata headers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [  # the transport specification's examples
        ("us-west1", "us-west1"),
        ("Hello, 世界", "=?base64?SGVsbG8sIOS4lueVjA==?="),
        (" padded ", "=?base64?IHBhZGRlZCA=?="),
        ("line1\nline2", "=?base64?bGluZTEKbGluZTI=?="),
        ("=?base64?literal?=", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="),
    ],
)
def test_header_values_are_encoded_as_the_transport_says(value: str, encoded: str) -> None:
    assert encode_value(value) == encoded


def test_param_headers_mirror_the_annotated_arguments_present() -> None:
    assert param_headers(REGIONAL, {"region": "éu", "shard": 2, "query": "q"}) == {
        "Mcp-Param-Region": "=?base64?w6l1?=",
        "Mcp-Param-Shard": "2",
    }
    assert param_headers(REGIONAL, {"query": "q"}) == {}
    assert param_headers(TOOLS[0], {"query": "q"}) == {}


async def test_a_modern_upstreams_tools_with_invalid_header_annotations_are_left_out(
    aiohttp_server: ServerFactory,
    upstream_http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def tool(name: str, **region: Any) -> dict[str, Any]:
        properties = {"region": {"type": "string", **region}, "q": {"type": "string"}}
        return {"name": name, "inputSchema": {"type": "object", "properties": properties}}

    nested = tool("nested")
    nested["inputSchema"]["properties"]["where"] = {
        "type": "object",
        "properties": {"zone": {"type": "integer", "x-mcp-header": "Zone"}},
    }
    twice = tool("twice", **{"x-mcp-header": "Region"})
    twice["inputSchema"]["properties"]["q"]["x-mcp-header"] = "region"
    tools = [
        tool("plain"),
        tool("valid", **{"x-mcp-header": "Region"}),
        nested,
        tool("empty", **{"x-mcp-header": ""}),
        tool("spaced", **{"x-mcp-header": "Cloud Region"}),
        tool("newline", **{"x-mcp-header": "Region\r\nX-Evil: 1"}),
        tool("number", type="number", **{"x-mcp-header": "Region"}),
        twice,
    ]
    url = await serve_modern_catalog(aiohttp_server, tools)
    with caplog.at_level("WARNING", logger="mcp_core.client.catalog"):
        listed = await fetch_tool_catalog(upstream_http, url, {}, timeout_s=5)
    assert [t["name"] for t in listed] == ["plain", "valid", "nested"]
    warned = [r.getMessage() for r in caplog.records]
    for name, reason in [
        ("empty", "not an HTTP header-name token"),
        ("spaced", "not an HTTP header-name token"),
        ("newline", "not an HTTP header-name token"),
        ("number", "type 'number'"),
        ("twice", "used twice"),
    ]:
        assert any(f"{name!r}" in line and reason in line for line in warned), (name, warned)


async def test_a_legacy_upstreams_catalog_is_kept_whole(
    aiohttp_server: ServerFactory, upstream_http: aiohttp.ClientSession
) -> None:
    # x-mcp-header means nothing before 2026-07-28: a legacy upstream's tools stay as they are.
    tools = make_tools(1)
    tools[0]["inputSchema"]["properties"]["q"]["x-mcp-header"] = ""
    url = str((await aiohttp_server(StubUpstream(tools=tools).app())).make_url("/mcp"))
    assert await fetch_tool_catalog(upstream_http, url, {}, timeout_s=5) == tools


async def serve_modern_catalog(aiohttp_server: ServerFactory, tools: list[dict[str, Any]]) -> str:
    """A 2026-07-28 upstream that answers `server/discover` and `tools/list` (one page)."""

    async def answer(request: web.Request) -> web.Response:
        message = await request.json()
        result: dict[str, Any] = {"resultType": "complete"}
        if message["method"] == "server/discover":
            result |= {"supportedVersions": [MODERN], "capabilities": {"tools": {}}}
        else:
            result |= {"tools": tools}
        return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": result})

    app = web.Application()
    app.router.add_post("/mcp", answer)
    return str((await aiohttp_server(app)).make_url("/mcp"))
