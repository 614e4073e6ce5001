"""Tests for gateway.executors: the upstream proxy (callUrl) and the placeholder simulator."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from mcp_helpers import executor_ctx
from mcp_stub import StubUpstream, make_tools
from net import closed_url
from polling import until

from gateway.context import Endpoint, IntegrationView, KeyEntry, RequestContext
from gateway.executors import ProxyExecutor, SimulatorExecutor, UpstreamPool
from mcp_core.client import UNREACHABLE_MESSAGE
from mcp_core.errors import McpError
from simulator import parse_fixture

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
SECRET = "sk-live-0123456789abcdef-TOPSECRET"
HEADERS = {"Authorization": f"Bearer {SECRET}", "X-Api-Key": "key-ABCDEFGH-12345"}
TOOLS = make_tools(2)
TOOL = TOOLS[0]
ROOT = Path(__file__).resolve().parent.parent


def make_view(
    url: str | None,
    *,
    headers: dict[str, str] | None = None,
    config_id: str | None = "cfg-1",
    tools: list[dict[str, Any]] | None = None,
    fixtures_version: int = 0,
) -> IntegrationView:
    tools = TOOLS if tools is None else tools
    return IntegrationView(
        tenant_id="acme",
        integration_id="crm",
        name="CRM",
        enabled=True,
        description=None,
        config_id=config_id,
        upstream_url=url,
        upstream_headers=dict(HEADERS if headers is None else headers),
        tools=tuple(tools),
        tools_by_name={t["name"]: t for t in tools},
        fixtures_version=fixtures_version,
    )


class NotDispatched:
    """The context's executor in these tests, which call an executor directly."""

    async def call_tool(self, *args: Any) -> dict[str, Any]:
        raise AssertionError("the tests here call their executor directly")


def make_ctx(
    view: IntegrationView,
    *,
    notify: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    seed: str | None = None,
    endpoint: Endpoint = Endpoint.CALL,
) -> RequestContext:
    return executor_ctx(
        view,
        key=KeyEntry("key-1", view.tenant_id, view.integration_id, "mcp"),
        endpoint=endpoint,
        executor=NotDispatched(),
        simulator_seed=seed,
        notify=notify,
    )


def echo(arguments: dict[str, Any]) -> dict[str, Any]:
    """What the stub's tools/call answers."""
    text = json.dumps(arguments, sort_keys=True)
    return {"content": [{"type": "text", "text": text}], "isError": False}


async def serve(aiohttp_server: ServerFactory, stub: StubUpstream) -> str:
    server = await aiohttp_server(stub.app())
    return str(server.make_url("/mcp"))


def tool_calls(stub: StubUpstream) -> list[dict[str, Any]]:
    return [m for m in stub.received_messages if m["method"] == "tools/call"]


@pytest.fixture
def http(upstream_http: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """The pools here talk through the gateway's own upstream client, as in production."""
    return upstream_http


@pytest.fixture
def pool(upstream_pool: UpstreamPool) -> UpstreamPool:
    return upstream_pool


@pytest.fixture
def proxy(pool: UpstreamPool) -> ProxyExecutor:
    return ProxyExecutor(pool)


async def call_error(executor: ProxyExecutor, view: IntegrationView, **kwargs: Any) -> McpError:
    with pytest.raises(McpError) as info:
        await executor.call_tool(make_ctx(view, **kwargs), TOOL, {"q": "x"}, None)
    return info.value


# ------------------------------------------------------------------ proxy: happy paths


async def test_call_reaches_upstream_with_stored_headers(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS, require_headers=HEADERS)
    url = await serve(aiohttp_server, stub)

    result = await proxy.call_tool(make_ctx(make_view(url)), TOOL, {"q": "hi"}, None)

    assert result == echo({"q": "hi"})
    assert [m["method"] for m in stub.received_messages] == [
        "initialize",
        "notifications/initialized",
        "tools/call",
    ]
    (call,) = tool_calls(stub)
    assert call["params"] == {"name": "tool_0", "arguments": {"q": "hi"}}
    headers = stub.received_headers[-1]
    assert headers["Authorization"] == f"Bearer {SECRET}"
    assert headers["X-Api-Key"] == HEADERS["X-Api-Key"]
    (session_id,) = stub.sessions
    assert headers["Mcp-Session-Id"] == session_id
    assert headers["MCP-Protocol-Version"] == "2025-11-25"


async def test_sse_upstream(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS, sse=True)
    url = await serve(aiohttp_server, stub)

    result = await proxy.call_tool(make_ctx(make_view(url)), TOOL, {"q": "über"}, None)

    assert result == echo({"q": "über"})


async def test_negotiated_older_version_is_used(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS, server_version="2025-03-26")
    url = await serve(aiohttp_server, stub)

    await proxy.call_tool(make_ctx(make_view(url)), TOOL, {"q": "a"}, None)

    assert stub.received_headers[-1]["MCP-Protocol-Version"] == "2025-03-26"


async def test_stateless_upstream(aiohttp_server, pool, proxy):
    stub = StubUpstream(tools=TOOLS, stateful=False)
    url = await serve(aiohttp_server, stub)

    for q in ("a", "b"):
        assert await proxy.call_tool(make_ctx(make_view(url)), TOOL, {"q": q}, None) == echo(
            {"q": q}
        )
    await pool.close()

    assert stub.calls["initialize"] == 1
    assert all("Mcp-Session-Id" not in h for h in stub.received_headers)
    assert stub.calls["DELETE"] == 0


async def test_meta_is_passed_through_without_gateway_keys(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS)
    url = await serve(aiohttp_server, stub)
    meta = {
        "progressToken": "tok-1",
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "example.com/trace": "abc",
    }

    await proxy.call_tool(make_ctx(make_view(url)), TOOL, {"q": "a"}, meta)
    await proxy.call_tool(make_ctx(make_view(url)), TOOL, {"q": "b"}, None)

    with_meta, without = tool_calls(stub)
    assert with_meta["params"]["_meta"] == {"progressToken": "tok-1", "example.com/trace": "abc"}
    assert "_meta" not in without["params"]


async def test_concurrent_first_calls_share_one_initialize(aiohttp_server, proxy):
    # A slow handshake makes sure every call arrives while it is still running.
    stub = StubUpstream(tools=TOOLS, mode="slow", delay_s=0.2, fail_on={"initialize"})
    url = await serve(aiohttp_server, stub)
    view = make_view(url)

    results = await asyncio.gather(
        *(proxy.call_tool(make_ctx(view), TOOL, {"q": str(i)}, None) for i in range(30))
    )

    assert results == [echo({"q": str(i)}) for i in range(30)]
    assert stub.calls["initialize"] == 1
    assert stub.calls["notifications/initialized"] == 1
    assert stub.calls["tools/call"] == 30
    (session_id,) = stub.sessions
    assert {h["Mcp-Session-Id"] for h in stub.received_headers[1:]} == {session_id}

    await proxy.call_tool(make_ctx(view), TOOL, {"q": "later"}, None)
    assert stub.calls["initialize"] == 1


async def test_failed_handshake_fails_every_waiter_once_then_retries(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS, mode="http-500", fail_on={"initialize"})
    url = await serve(aiohttp_server, stub)
    view = make_view(url)

    outcomes = await asyncio.gather(
        *(proxy.call_tool(make_ctx(view), TOOL, {"q": "x"}, None) for _ in range(10)),
        return_exceptions=True,
    )

    assert all(isinstance(o, McpError) and o.data["status"] == 500 for o in outcomes)
    assert stub.calls["initialize"] == 1
    stub.mode = "ok"  # the upstream recovers: the next call opens a session
    assert await proxy.call_tool(make_ctx(view), TOOL, {"q": "x"}, None) == echo({"q": "x"})
    assert stub.calls["initialize"] == 2


async def test_expired_session_is_reinitialized_and_the_call_retried(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS)
    url = await serve(aiohttp_server, stub)
    view = make_view(url)
    await proxy.call_tool(make_ctx(view), TOOL, {"q": "a"}, None)
    (old,) = stub.sessions

    stub.expire_sessions()
    result = await proxy.call_tool(make_ctx(view), TOOL, {"q": "b"}, None)

    assert result == echo({"q": "b"})
    assert stub.calls["initialize"] == 2
    assert stub.calls["tools/call"] == 3  # a, b answered 404, b again
    (new,) = stub.sessions
    assert new != old
    assert stub.received_headers[-1]["Mcp-Session-Id"] == new


async def test_concurrent_calls_on_an_expired_session_share_one_reinitialize(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS)
    url = await serve(aiohttp_server, stub)
    view = make_view(url)
    await proxy.call_tool(make_ctx(view), TOOL, {"q": "a"}, None)
    stub.expire_sessions()

    results = await asyncio.gather(
        *(proxy.call_tool(make_ctx(view), TOOL, {"q": str(i)}, None) for i in range(10))
    )

    assert results == [echo({"q": str(i)}) for i in range(10)]
    assert stub.calls["initialize"] == 2


async def test_session_404_twice_fails_after_exactly_one_retry(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS, mode="session-expired", fail_on={"tools/call"})
    url = await serve(aiohttp_server, stub)

    error = await call_error(proxy, make_view(url))

    assert error.code == -32603
    assert error.data == {"upstream": "http-status", "status": 404}
    assert stub.calls["initialize"] == 2
    assert stub.calls["tools/call"] == 2


# ------------------------------------------------------------------ proxy: failures


async def test_upstream_down_is_connect_quickly(proxy):
    view = make_view(closed_url())

    started = time.monotonic()
    error = await call_error(proxy, view)

    assert time.monotonic() - started < 3.0  # refused at once, not after the pool's 5 s timeout
    assert error.code == -32603
    # One neutral phrase for every failure to connect: errors must not map ports (issue #18).
    assert error.message == f"Upstream MCP server unreachable: {UNREACHABLE_MESSAGE}"
    assert error.data == {"upstream": "connect"}


async def test_a_header_the_gateway_cannot_send_is_refused_before_connecting(aiohttp_server, proxy):
    # Stored before the schema refused it, or a control character HTTP cannot carry.
    stub = StubUpstream(tools=TOOLS)
    url = await serve(aiohttp_server, stub)

    error = await call_error(proxy, make_view(url, headers={"X-Test": "a\x01b-1234567890"}))

    assert error.data == {"upstream": "not-allowed"}
    assert "1234567890" not in error.message
    assert stub.received_headers == []


async def test_connection_reset_is_connect(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS, mode="reset", fail_on={"tools/call"})
    url = await serve(aiohttp_server, stub)

    error = await call_error(proxy, make_view(url))

    assert error.message.startswith("Upstream MCP server unreachable: ")
    assert error.data == {"upstream": "connect"}


@pytest.mark.parametrize("slow_method", ["tools/call", "initialize"])
async def test_slow_upstream_times_out(aiohttp_server, pool, slow_method):
    stub = StubUpstream(tools=TOOLS, mode="slow", delay_s=10.0, fail_on={slow_method})
    url = await serve(aiohttp_server, stub)
    proxy = ProxyExecutor(pool, timeout_s=0.5)

    started = time.monotonic()
    error = await call_error(proxy, make_view(url))
    elapsed = time.monotonic() - started

    # Not before the bound, and cut short long before the upstream's 10 s (a margin a loaded
    # machine cannot miss; the message says which bound fired).
    assert 0.45 <= elapsed < 5.0
    assert error.code == -32603
    assert error.message == "Upstream MCP server timed out after 0.5 s"
    assert error.data == {"upstream": "timeout"}


async def test_shared_handshake_has_the_pools_bound(aiohttp_server, http):
    stub = StubUpstream(tools=TOOLS, mode="slow", delay_s=10.0, fail_on={"initialize"})
    url = await serve(aiohttp_server, stub)
    pool = UpstreamPool(http, timeout_s=0.3)
    try:
        started = time.monotonic()
        error = await call_error(ProxyExecutor(pool, timeout_s=5.0), make_view(url))
        assert time.monotonic() - started < 4.0  # the pool's 0.3 s, not the executor's 5 s
    finally:
        await pool.close()

    assert error.message == "Upstream MCP server timed out after 0.3 s"
    assert error.data == {"upstream": "timeout"}


async def test_timeout_bounds_a_trickling_sse_stream(aiohttp_server, pool):
    async def handler(request: web.Request) -> web.StreamResponse:
        message = await request.json()
        if "id" not in message:
            return web.Response(status=202)
        if message["method"] == "initialize":
            return web.json_response(
                {"jsonrpc": "2.0", "id": message["id"], "result": {"protocolVersion": "2025-11-25"}}
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(100):  # keep-alives, never an answer
            await resp.write(b": still here\n\n")
            await asyncio.sleep(0.05)
        return resp

    app = web.Application()
    app.router.add_post("/mcp", handler)
    server = await aiohttp_server(app)
    proxy = ProxyExecutor(pool, timeout_s=0.3)

    started = time.monotonic()
    error = await call_error(proxy, make_view(str(server.make_url("/mcp"))))

    assert time.monotonic() - started < 3.0  # the stream would trickle on for 5 s
    assert error.data == {"upstream": "timeout"}


async def test_garbage_is_invalid_response(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS, mode="garbage", fail_on={"tools/call"})
    url = await serve(aiohttp_server, stub)

    error = await call_error(proxy, make_view(url))

    assert error.message.startswith("Upstream MCP server sent an invalid response")
    assert error.data == {"upstream": "invalid-response"}


async def test_huge_body_is_too_large_with_bounded_memory(aiohttp_server, http):
    stub = StubUpstream(tools=TOOLS, mode="huge", fail_on={"tools/call"})  # > 10 MiB
    url = await serve(aiohttp_server, stub)
    limit = 256 * 1024
    pool = UpstreamPool(http, timeout_s=5.0, max_body_bytes=limit)
    proxy = ProxyExecutor(pool)

    tracemalloc.start()
    try:
        error = await call_error(proxy, make_view(url))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await pool.close()

    assert error.data == {"upstream": "too-large"}
    assert str(limit) in error.message
    assert peak < 4 * 1024 * 1024  # the 10 MiB answer was never held


async def test_sse_body_limit_counts_the_whole_stream(aiohttp_server, http):
    stub = StubUpstream(tools=TOOLS, sse=True, progress_steps=200)
    url = await serve(aiohttp_server, stub)
    pool = UpstreamPool(http, timeout_s=5.0, max_body_bytes=4096)
    ctx = make_ctx(make_view(url))
    try:
        assert await ProxyExecutor(pool).call_tool(ctx, TOOL, {"q": "a"}, None) == echo({"q": "a"})
        with pytest.raises(McpError) as info:  # 200 notifications first: too much
            await ProxyExecutor(pool).call_tool(ctx, TOOL, {"q": "a"}, {"progressToken": 1})
    finally:
        await pool.close()
    assert info.value.data == {"upstream": "too-large"}


async def test_http_500_is_http_status(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS, mode="http-500", fail_on={"tools/call"})
    url = await serve(aiohttp_server, stub)

    error = await call_error(proxy, make_view(url))

    assert error.code == -32603
    assert error.message == "Upstream MCP server answered HTTP 500"
    assert error.data == {"upstream": "http-status", "status": 500}


async def test_rejected_credentials_are_http_status(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS, require_headers={"Authorization": "Bearer other"})
    url = await serve(aiohttp_server, stub)

    error = await call_error(proxy, make_view(url))

    assert error.data == {"upstream": "http-status", "status": 401}


async def test_upstream_jsonrpc_error_is_relayed(aiohttp_server, proxy):
    stub = StubUpstream(
        tools=TOOLS,
        mode="jsonrpc-error",
        fail_on={"tools/call"},
        error_code=-32042,
        error_message="no way",
        error_data={"field": "q", "hint": ["a", 1]},
    )
    url = await serve(aiohttp_server, stub)

    error = await call_error(proxy, make_view(url))

    assert (error.code, error.message, error.data) == (
        -32042,
        "no way",
        {"field": "q", "hint": ["a", 1]},
    )


async def test_upstream_unknown_tool_error_is_relayed(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS)
    url = await serve(aiohttp_server, stub)

    with pytest.raises(McpError) as info:
        await proxy.call_tool(make_ctx(make_view(url)), {"name": "gone"}, {}, None)

    assert (info.value.code, info.value.message) == (-32602, "Unknown tool: gone")
    assert info.value.data is None


async def test_refused_handshake(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS, mode="jsonrpc-error", fail_on={"initialize"})
    url = await serve(aiohttp_server, stub)

    error = await call_error(proxy, make_view(url))

    assert error.code == -32603
    assert error.data == {"upstream": "jsonrpc-error"}


@pytest.mark.parametrize(
    "answer",
    [
        {"result": "not an object"},
        {"result": [1, 2]},
        {"error": {"code": "E42", "message": "bad"}},
        {"error": "flat"},
    ],
)
async def test_malformed_call_answers_are_invalid_response(aiohttp_server, proxy, answer):
    async def handler(request: web.Request) -> web.Response:
        message = await request.json()
        if "id" not in message:
            return web.Response(status=202)
        if message["method"] == "initialize":
            result: Any = {"protocolVersion": "2025-11-25", "capabilities": {}}
            return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": result})
        return web.json_response({"jsonrpc": "2.0", "id": message["id"], **answer})

    app = web.Application()
    app.router.add_post("/mcp", handler)
    server = await aiohttp_server(app)

    error = await call_error(proxy, make_view(str(server.make_url("/mcp"))))

    assert error.code == -32603
    assert error.data == {"upstream": "invalid-response"}


async def test_no_upstream_configured(proxy):
    error = await call_error(proxy, make_view(None))

    assert error.code == -32603
    assert error.message == "This integration has no upstream configured"
    assert error.data == {"upstream": "none"}


# ------------------------------------------------------------------ proxy: notifications


async def test_progress_notifications_reach_the_client_in_order(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS, sse=True, progress_steps=3)
    url = await serve(aiohttp_server, stub)
    events: list[Any] = []

    async def notify(message: dict[str, Any]) -> None:
        events.append(message)

    result = await proxy.call_tool(
        make_ctx(make_view(url), notify=notify), TOOL, {"q": "a"}, {"progressToken": "tok-7"}
    )
    events.append("result")

    assert result == echo({"q": "a"})
    assert events == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "info", "data": "working on it"},
        },
        *(
            {
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {
                    "progressToken": "tok-7",
                    "progress": step,
                    "total": 3,
                    "message": f"step {step}",
                },
            }
            for step in (1, 2, 3)
        ),
        "result",
    ]


async def test_notifications_dropped_without_a_sink_or_when_it_fails(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS, sse=True)
    url = await serve(aiohttp_server, stub)
    view = make_view(url)
    seen: list[dict[str, Any]] = []

    async def broken(message: dict[str, Any]) -> None:
        seen.append(message)
        raise ConnectionResetError("client went away")

    meta = {"progressToken": 1}
    assert await proxy.call_tool(make_ctx(view), TOOL, {"q": "a"}, meta) == echo({"q": "a"})
    result = await proxy.call_tool(make_ctx(view, notify=broken), TOOL, {"q": "b"}, meta)

    assert result == echo({"q": "b"})
    assert len(seen) == 1  # forwarding stopped at the first failure; the call did not


async def test_server_requests_on_the_stream_are_answered(aiohttp_server, proxy):
    answers: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        message = await request.json()
        if "method" not in message:  # our answer to the server's request
            answers.append(message)
            return web.Response(status=202)
        if "id" not in message:
            return web.Response(status=202)
        if message["method"] == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {}}
            return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": result})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for req in (
            {"jsonrpc": "2.0", "id": "s1", "method": "ping"},
            {"jsonrpc": "2.0", "id": "s2", "method": "sampling/createMessage", "params": {}},
        ):
            await resp.write(f"data: {json.dumps(req)}\n\n".encode())
        done = {"jsonrpc": "2.0", "id": message["id"], "result": {"content": []}}
        await resp.write(f"data: {json.dumps(done)}\n\n".encode())
        return resp

    app = web.Application()
    app.router.add_post("/mcp", handler)
    server = await aiohttp_server(app)
    notified: list[dict[str, Any]] = []

    async def notify(message: dict[str, Any]) -> None:
        notified.append(message)

    view = make_view(str(server.make_url("/mcp")))
    result = await proxy.call_tool(make_ctx(view, notify=notify), TOOL, {}, None)

    assert result == {"content": []}
    assert notified == []  # server requests are not the client's business
    assert answers[0] == {"jsonrpc": "2.0", "id": "s1", "result": {}}
    assert answers[1]["id"] == "s2" and answers[1]["error"]["code"] == -32601


# ------------------------------------------------------------------ proxy: secrets


@pytest.mark.parametrize(
    "stub_kwargs",
    [
        {"mode": "http-500"},
        {"mode": "garbage"},
        {"mode": "reset"},
        {"mode": "slow", "delay_s": 5.0},
        {"mode": "huge"},
        {"mode": "session-expired"},
        {"mode": "jsonrpc-error", "error_message": f"bad token Bearer {SECRET}"},
        {
            "mode": "jsonrpc-error",
            "error_message": f"bad key {HEADERS['X-Api-Key']}",
            "error_data": {"echo": [f"Authorization: Bearer {SECRET}"]},
        },
        {"mode": "down"},
    ],
    ids=lambda kw: kw["mode"] + ("+data" if "error_data" in kw else ""),
)
@pytest.mark.parametrize("failing", ["initialize", "tools/call"])
async def test_header_values_never_leak(aiohttp_server, http, caplog, stub_kwargs, failing):
    caplog.set_level(logging.DEBUG)
    if stub_kwargs["mode"] == "down":
        url = closed_url()
    else:
        stub = StubUpstream(tools=TOOLS, fail_on={failing}, **stub_kwargs)
        url = await serve(aiohttp_server, stub)
    pool = UpstreamPool(http, timeout_s=5.0, max_body_bytes=64 * 1024)
    try:
        error = await call_error(ProxyExecutor(pool, timeout_s=0.3), make_view(url))
    finally:
        await pool.close()

    exposed = [error.message, json.dumps(error.data), str(error), repr(error), caplog.text]
    for value in (SECRET, HEADERS["X-Api-Key"]):
        assert all(value not in text for text in exposed)
    if stub_kwargs["mode"] == "jsonrpc-error" and failing == "tools/call":
        assert "[redacted]" in error.message


# ------------------------------------------------------------------ proxy: pool lifecycle


async def test_a_session_evicted_while_in_use_is_ended_after_its_call(aiohttp_server, http):
    # A config that changes gets a new config id, hence a new session; the old ones leave the
    # pool as the least recently used, and one still serving a call is ended only after it.
    stub = StubUpstream(tools=TOOLS, mode="slow", delay_s=0.2, fail_on={"tools/call"})
    url = await serve(aiohttp_server, stub)
    pool = UpstreamPool(http, timeout_s=5.0, max_sessions=1)
    proxy = ProxyExecutor(pool)
    try:
        call = asyncio.create_task(
            proxy.call_tool(make_ctx(make_view(url)), TOOL, {"q": "a"}, None)
        )
        await until(lambda: stub.calls["tools/call"] == 1)
        (old,) = stub.sessions
        stub.mode = "ok"
        await proxy.call_tool(make_ctx(make_view(url, config_id="cfg-2")), TOOL, {"q": "b"}, None)
        assert len(pool) == 1
        assert stub.calls["DELETE"] == 0  # the evicted session still serves a call

        assert await call == echo({"q": "a"})  # finished on the old session
        await until(lambda: stub.calls["DELETE"] == 1)
        assert stub.ended_sessions == {old}
    finally:
        await pool.close()


async def test_sessions_are_per_config_and_header_set(aiohttp_server, proxy):
    stub = StubUpstream(tools=TOOLS)
    url = await serve(aiohttp_server, stub)

    for view in (
        make_view(url),
        make_view(url),
        make_view(url, config_id="cfg-2"),
        make_view(url, headers={"Authorization": "Bearer rotated-token"}),
    ):
        await proxy.call_tool(make_ctx(view), TOOL, {"q": "a"}, None)

    assert stub.calls["initialize"] == 3
    assert len(proxy.pool) == 3


async def test_pool_size_is_capped(aiohttp_server, http):
    stub = StubUpstream(tools=TOOLS)
    url = await serve(aiohttp_server, stub)
    pool = UpstreamPool(http, timeout_s=5.0, max_sessions=2)
    proxy = ProxyExecutor(pool)
    try:
        for i in range(4):
            view = make_view(url, config_id=f"cfg-{i}")
            await proxy.call_tool(make_ctx(view), TOOL, {"q": "a"}, None)
        assert len(pool) == 2
        await until(lambda: stub.calls["DELETE"] == 2)  # the evicted ones were ended
    finally:
        await pool.close()
    assert stub.calls["DELETE"] == 4
    assert stub.sessions == set()


async def test_close_deletes_live_sessions(aiohttp_server, pool, proxy):
    stub = StubUpstream(tools=TOOLS, require_headers=HEADERS)
    url = await serve(aiohttp_server, stub)
    await proxy.call_tool(make_ctx(make_view(url)), TOOL, {"q": "a"}, None)
    await proxy.call_tool(make_ctx(make_view(url, config_id="cfg-2")), TOOL, {"q": "a"}, None)
    assert len(stub.sessions) == 2

    await pool.close()

    assert stub.calls["DELETE"] == 2
    assert stub.sessions == set()
    error = await call_error(proxy, make_view(url))
    assert error.data == {"upstream": "connect"}


async def test_close_is_bounded_when_the_upstream_hangs(http):
    stalled = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            await stalled.wait()
            return web.Response(status=204)
        message = await request.json()
        if "id" not in message:
            return web.Response(status=202)
        result: dict[str, Any] = {"protocolVersion": "2025-11-25", "capabilities": {}}
        if message["method"] == "tools/call":
            result = {"content": []}
        headers = {"Mcp-Session-Id": "s-1"}
        return web.json_response(
            {"jsonrpc": "2.0", "id": message["id"], "result": result}, headers=headers
        )

    app = web.Application()
    app.router.add_route("*", "/mcp", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        pool = UpstreamPool(http, timeout_s=5.0, close_timeout_s=0.2)
        view = make_view(str(server.make_url("/mcp")))
        await ProxyExecutor(pool).call_tool(make_ctx(view), TOOL, {}, None)
        started = time.monotonic()
        await pool.close()
        assert time.monotonic() - started < 3.0  # the DELETE would wait for ever
    finally:
        stalled.set()
        await server.close()


# ------------------------------------------------------------------ simulator (testUrl)

SIM_TOOL = {
    "name": "get_price",
    "inputSchema": {
        "type": "object",
        "properties": {"sku": {"type": "string"}},
        "required": ["sku"],
    },
    "outputSchema": {
        "type": "object",
        "required": ["sku", "price"],
        "properties": {"sku": {"type": "string"}, "price": {"type": "number", "minimum": 0}},
    },
}


def sim_view(fixture_body: dict[str, Any] | None = None, version: int = 0) -> IntegrationView:
    fixtures = {}
    if fixture_body is not None:
        fixture, problems = parse_fixture(fixture_body, SIM_TOOL)
        assert fixture is not None, problems
        fixtures[SIM_TOOL["name"]] = fixture
    view = make_view(None, tools=[SIM_TOOL], fixtures_version=version)
    return dataclasses.replace(view, fixtures=fixtures)


async def test_simulator_results_are_deterministic_and_schema_valid():
    executor = SimulatorExecutor()
    ctx = make_ctx(sim_view(), endpoint=Endpoint.TEST)
    first = await executor.call_tool(ctx, SIM_TOOL, {"sku": "A-1"}, None)
    again = await SimulatorExecutor().call_tool(ctx, SIM_TOOL, {"sku": "A-1"}, None)
    assert json.dumps(first) == json.dumps(again)
    assert first.get("isError") is not True
    jsonschema.validate(first["structuredContent"], SIM_TOOL["outputSchema"])
    assert json.loads(first["content"][0]["text"]) == first["structuredContent"]
    seeded = await executor.call_tool(
        make_ctx(sim_view(), seed="s2", endpoint=Endpoint.TEST), SIM_TOOL, {"sku": "A-1"}, None
    )
    assert seeded != first


async def test_simulator_reports_bad_arguments_as_an_error_result():
    result = await SimulatorExecutor().call_tool(
        make_ctx(sim_view(), endpoint=Endpoint.TEST), SIM_TOOL, {"sku": 5}, None
    )
    assert result["isError"] is True
    assert "sku" in result["content"][0]["text"]


async def test_fixture_rules_script_results_errors_and_latency():
    body = {
        "rules": [
            {"match": {"sku": "BOOM"}, "error": {"code": -32603, "message": "scripted failure"}},
            {
                "match": {"sku": "SLOW"},
                "latencyMs": 1000,
                "result": {
                    "content": [{"type": "text", "text": "slow"}],
                    "structuredContent": {"sku": "SLOW", "price": 2},
                },
            },
            {
                "match": {},
                "result": {
                    "content": [{"type": "text", "text": "default"}],
                    "structuredContent": {"sku": "any", "price": 1.5},
                },
            },
        ]
    }
    executor = SimulatorExecutor()
    ctx = make_ctx(sim_view(body, version=3), endpoint=Endpoint.TEST)
    with pytest.raises(McpError) as raised:
        await executor.call_tool(ctx, SIM_TOOL, {"sku": "BOOM"}, None)
    assert (raised.value.code, raised.value.message) == (-32603, "scripted failure")
    default = await executor.call_tool(ctx, SIM_TOOL, {"sku": "X"}, None)
    assert default["structuredContent"] == {"sku": "any", "price": 1.5}

    # The scripted latency is a sleep: other calls are answered meanwhile.
    started = time.monotonic()
    slow = asyncio.create_task(executor.call_tool(ctx, SIM_TOOL, {"sku": "SLOW"}, None))
    quick = await executor.call_tool(ctx, SIM_TOOL, {"sku": "Y"}, None)
    assert time.monotonic() - started < 0.7 and quick["content"][0]["text"] == "default"
    assert (await slow)["content"][0]["text"] == "slow"
    assert time.monotonic() - started >= 0.95


async def test_simulator_never_reaches_the_upstream(aiohttp_server):
    stub = StubUpstream(tools=TOOLS)
    url = await serve(aiohttp_server, stub)
    view = make_view(url)

    await SimulatorExecutor().call_tool(
        make_ctx(view, endpoint=Endpoint.TEST), TOOL, {"q": "a"}, {"progressToken": 1}
    )

    assert stub.calls == {}
    assert stub.received_headers == []


async def test_upstream_cookies_are_never_sent_back(aiohttp_server, client, api) -> None:
    """The gateway's HTTP client keeps no cookies: upstreams of different tenants may share a
    host, so a cookie one of them set must not ride along on any later call."""
    stub = StubUpstream(
        tools=[{"name": "search", "inputSchema": {"type": "object"}}],
        set_cookie="upstream_session=tenant-a-secret; Path=/",
    )
    server = await aiohttp_server(stub.app())
    # A host name, not an address: cookie jars refuse cookies from bare IP addresses.
    url = f"http://localhost:{server.port}/mcp"
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    _, config = await api.call("POST", "/crm/configs", 201, json={"upstreamUrl": url})
    _, settings = await api.call(
        "PATCH",
        "/crm/mcp",
        200,
        json={"enabled": True, "configId": config["configId"], "exposedToolIds": ["search"]},
    )
    modern = "2026-07-28"
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "search",
            "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": modern,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {
        "Authorization": f"Bearer {settings['apiKey']}",
        "MCP-Protocol-Version": modern,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "search",
        "Accept": "application/json, text/event-stream",
    }
    for _ in range(2):
        async with client.post(
            "/v1/tenants/acme/integrations/crm/mcp:call", json=body, headers=headers
        ) as resp:
            assert resp.status == 200
            assert "result" in await resp.json()
    assert stub.calls["tools/call"] == 2
    assert all("Cookie" not in sent for sent in stub.received_headers)
