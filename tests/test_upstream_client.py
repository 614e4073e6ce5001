"""Tests for mcp_core.client: reading an upstream MCP server's tool catalog."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from mcp_stub import StubUpstream, make_tools
from net import closed_url

from mcp_core.client import UpstreamError, UpstreamSession, fetch_tool_catalog
from mcp_core.sse import SseEvent, SseParser
from mcp_core.versions import CLIENT_VERSIONS

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
SECRET = "sk-live-0123456789abcdef-TOPSECRET"


@pytest.fixture
def http(upstream_http: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """The catalog reads here go through the gateway's own upstream client, as in production."""
    return upstream_http


async def serve(aiohttp_server: ServerFactory, stub: StubUpstream) -> str:
    server = await aiohttp_server(stub.app())
    return str(server.make_url("/mcp"))


async def fetch(
    http: aiohttp.ClientSession, url: str, timeout_s: float = 5.0, **kwargs: Any
) -> list[dict[str, Any]]:
    headers = kwargs.pop("headers", {})
    return await fetch_tool_catalog(http, url, headers, timeout_s=timeout_s, **kwargs)


# ------------------------------------------------------------------ happy paths


async def test_reads_all_pages_in_order(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(7), page_size=3)
    url = await serve(aiohttp_server, stub)

    tools = await fetch(http, url)

    assert [t["name"] for t in tools] == [f"tool_{i}" for i in range(7)]
    assert tools == stub.tools  # every field kept as the upstream sent it
    assert stub.calls["tools/list"] == 3
    cursors = [
        (m.get("params") or {}).get("cursor")
        for m in stub.received_messages
        if m["method"] == "tools/list"
    ]
    assert cursors == [None, "offset-3", "offset-6"]


async def test_handshake_headers_and_session_lifecycle(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(4), page_size=2)
    url = await serve(aiohttp_server, stub)

    await fetch(http, url)

    assert [m["method"] for m in stub.received_messages] == [
        "initialize",
        "notifications/initialized",
        "tools/list",
        "tools/list",
    ]
    init = stub.received_messages[0]
    assert init["params"]["protocolVersion"] == CLIENT_VERSIONS[0]
    assert init["params"]["capabilities"] == {}
    assert init["params"]["clientInfo"]["name"] == "mcp-gateway"
    assert "id" not in stub.received_messages[1]

    first, *later = stub.received_headers
    assert "Mcp-Session-Id" not in first
    assert "MCP-Protocol-Version" not in first
    (session_id,) = stub.ended_sessions
    for headers in stub.received_headers:
        assert "application/json" in headers["Accept"]
        assert "text/event-stream" in headers["Accept"]
        assert headers["Content-Type"] == "application/json"
    for headers in later:
        assert headers["Mcp-Session-Id"] == session_id
        assert headers["MCP-Protocol-Version"] == CLIENT_VERSIONS[0]
    # DELETE ended the session at the end.
    assert stub.calls["DELETE"] == 1
    assert stub.sessions == set()


async def test_negotiated_older_version_is_sent_afterwards(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(1), server_version="2025-03-26")
    url = await serve(aiohttp_server, stub)

    await fetch(http, url)

    assert all(h["MCP-Protocol-Version"] == "2025-03-26" for h in stub.received_headers[1:])


async def test_stateless_upstream_gets_no_session_header_and_no_delete(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(3), page_size=2, stateful=False)
    url = await serve(aiohttp_server, stub)

    tools = await fetch(http, url)

    assert len(tools) == 3
    assert all("Mcp-Session-Id" not in h for h in stub.received_headers)
    assert stub.calls["DELETE"] == 0


async def test_sse_answers(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(5), page_size=2, sse=True)
    url = await serve(aiohttp_server, stub)

    tools = await fetch(http, url)

    assert [t["name"] for t in tools] == [f"tool_{i}" for i in range(5)]
    assert stub.calls["tools/list"] == 3
    assert stub.calls["DELETE"] == 1


async def test_caller_headers_are_sent_upstream(aiohttp_server, http):
    stub = StubUpstream(
        tools=make_tools(2), require_headers={"Authorization": f"Bearer {SECRET}", "X-Team": "a"}
    )
    url = await serve(aiohttp_server, stub)
    headers = {"Authorization": f"Bearer {SECRET}", "X-Team": "a"}

    assert len(await fetch(http, url, headers=headers)) == 2
    assert all(h["Authorization"] == f"Bearer {SECRET}" for h in stub.received_headers)
    assert stub.calls["DELETE"] == 1 and stub.sessions == set()


async def test_caller_headers_cannot_override_transport_headers(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(1))
    url = await serve(aiohttp_server, stub)

    headers = {"accept": "text/plain", "content-type": "text/plain", "mcp-session-id": "forged"}
    assert len(await fetch(http, url, headers=headers)) == 1


async def test_empty_catalog(aiohttp_server, http):
    url = await serve(aiohttp_server, StubUpstream(tools=[]))
    assert await fetch(http, url) == []


# ------------------------------------------------------------------ failures


async def test_missing_credentials_is_http_status(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(1), require_headers={"Authorization": "Bearer right"})
    url = await serve(aiohttp_server, stub)

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url, headers={"Authorization": f"Bearer {SECRET}"})

    assert info.value.reason == "http-status"
    assert info.value.status == 401
    assert "401" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


async def test_http_500(aiohttp_server, http):
    url = await serve(aiohttp_server, StubUpstream(tools=make_tools(1), mode="http-500"))

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url)

    assert info.value.reason == "http-status"
    assert "500" in info.value.message


async def test_http_500_on_tools_list_still_ends_session(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(1), mode="http-500", fail_on={"tools/list"})
    url = await serve(aiohttp_server, stub)

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url)

    assert info.value.reason == "http-status"
    assert stub.calls["DELETE"] == 1 and stub.sessions == set()


async def test_failed_initialized_notification_is_http_status(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(1), mode="http-500", fail_on={"notifications/initialized"})
    url = await serve(aiohttp_server, stub)

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url)

    assert info.value.reason == "http-status"
    assert stub.calls["tools/list"] == 0


async def test_garbage_is_invalid_response(aiohttp_server, http):
    url = await serve(aiohttp_server, StubUpstream(tools=make_tools(1), mode="garbage"))

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url)

    assert info.value.reason == "invalid-response"


async def test_slow_upstream_times_out_promptly(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(1), mode="slow", delay_s=10.0)
    url = await serve(aiohttp_server, stub)

    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        await fetch(http, url, timeout_s=0.3)
    elapsed = time.monotonic() - started

    assert info.value.reason == "timeout"
    assert elapsed < 5.0  # cut at the bound, long before the upstream's 10 s


async def test_timeout_bounds_the_whole_operation(aiohttp_server, http):
    # Each page answers within the timeout, the sum of them (3 s) does not.
    stub = StubUpstream(
        tools=make_tools(20), page_size=1, mode="slow", delay_s=0.15, fail_on={"tools/list"}
    )
    url = await serve(aiohttp_server, stub)

    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        await fetch(http, url, timeout_s=0.4)

    assert info.value.reason == "timeout"
    assert time.monotonic() - started < 2.0


async def test_jsonrpc_error(aiohttp_server, http):
    stub = StubUpstream(
        tools=make_tools(1), mode="jsonrpc-error", error_code=-32042, error_message="no way"
    )
    url = await serve(aiohttp_server, stub)

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url)

    assert info.value.reason == "jsonrpc-error"
    assert "-32042" in info.value.message
    assert "no way" in info.value.message


async def test_huge_body_is_too_large(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(1), mode="huge", fail_on={"tools/list"})
    url = await serve(aiohttp_server, stub)

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url)

    assert info.value.reason == "too-large"
    assert stub.calls["DELETE"] == 1


async def test_huge_body_on_initialize_is_too_large(aiohttp_server, http):
    url = await serve(aiohttp_server, StubUpstream(tools=make_tools(1), mode="huge"))

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url)

    assert info.value.reason == "too-large"


async def test_small_body_limit_applies_to_sse(aiohttp_server, http):
    url = await serve(aiohttp_server, StubUpstream(tools=make_tools(50), sse=True))

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url, max_body_bytes=2048)

    assert info.value.reason == "too-large"


async def test_unreachable_port_is_connect(http):
    with pytest.raises(UpstreamError) as info:
        await fetch(
            http,
            closed_url(),
            headers={"Authorization": f"Bearer {SECRET}"},
        )

    assert info.value.reason == "connect"
    assert SECRET not in str(info.value)


async def test_repeated_cursor(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(4), page_size=2, mode="repeat-cursor")
    url = await serve(aiohttp_server, stub)

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url)

    assert info.value.reason in ("invalid-response", "too-many-pages")
    assert stub.calls["tools/list"] <= 3
    assert stub.calls["DELETE"] == 1


async def test_too_many_pages(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(5), page_size=1)
    url = await serve(aiohttp_server, stub)

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url, max_pages=3)

    assert info.value.reason == "too-many-pages"
    assert stub.calls["tools/list"] == 3


async def test_unsupported_negotiated_version(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(1), server_version="1999-01-01")
    url = await serve(aiohttp_server, stub)

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url)

    assert info.value.reason == "invalid-response"


@pytest.mark.parametrize(
    "tools",
    [
        [{"name": "a"}, {"name": "a"}],  # duplicate
        [{"title": "no name"}],
        [{"name": 7}],
        ["not-a-dict"],
    ],
)
async def test_malformed_tools_are_invalid_response(aiohttp_server, http, tools):
    url = await serve(aiohttp_server, StubUpstream(tools=tools))

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url)

    assert info.value.reason == "invalid-response"


async def test_secret_echoed_by_upstream_is_redacted(aiohttp_server, http):
    stub = StubUpstream(
        tools=make_tools(1), mode="jsonrpc-error", error_message=f"bad token {SECRET}"
    )
    url = await serve(aiohttp_server, stub)

    with pytest.raises(UpstreamError) as info:
        await fetch(http, url, headers={"Authorization": f"Bearer {SECRET}"})

    assert info.value.reason == "jsonrpc-error"
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert "[redacted]" in info.value.message


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", b"<html></html>"),
        ("application/json", b"[]"),
        ("application/json", b'{"jsonrpc": "2.0", "id": 1}'),
        ("application/json", b'{"jsonrpc": "2.0", "id": 99, "result": {}}'),
        ("application/json", b'{"jsonrpc": "2.0", "id": true, "result": {}}'),
        ("application/json", b'{"jsonrpc": "2.0", "id": 1, "result": "x"}'),
        ("application/json", b'{"jsonrpc": "2.0", "id": 1, "result": {"x": NaN}}'),
        ("text/event-stream", b"data: not json\n\n"),
        ("text/event-stream", b": only a comment\n\n"),
    ],
)
async def test_wrong_shapes_are_invalid_response(aiohttp_server, http, content_type, body):
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_post("/mcp", handler)
    server = await aiohttp_server(app)

    with pytest.raises(UpstreamError) as info:
        await fetch(http, str(server.make_url("/mcp")))

    assert info.value.reason == "invalid-response"


async def test_redirects_are_not_followed(aiohttp_server, http):
    async def handler(_request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("http://127.0.0.1:1/elsewhere")

    app = web.Application()
    app.router.add_post("/mcp", handler)
    server = await aiohttp_server(app)

    with pytest.raises(UpstreamError) as info:
        await fetch(http, str(server.make_url("/mcp")))

    assert info.value.reason == "http-status"
    assert info.value.status == 307


# ------------------------------------------------------------------ reusable pieces


async def test_session_tools_call_relays_progress_over_sse(aiohttp_server, http):
    stub = StubUpstream(tools=make_tools(2), sse=True)
    url = await serve(aiohttp_server, stub)
    seen: list[dict[str, Any]] = []

    async def on_message(message: dict[str, Any]) -> None:
        seen.append(message)

    upstream = UpstreamSession(http, url, {})
    async with asyncio.timeout(5):
        await upstream.initialize()
        result = await upstream.request(
            "tools/call", {"name": "tool_1", "arguments": {"q": "hi"}}, on_message=on_message
        )
        await upstream.terminate()

    assert result == {"content": [{"type": "text", "text": '{"q": "hi"}'}], "isError": False}
    assert [m["method"] for m in seen] == ["notifications/message"]
    assert stub.sessions == set()


def test_sse_parser_handles_any_chunking_and_line_endings():
    stream = (
        "\ufeff: comment\r\n"
        "id: 7\r\n"
        "data:\r\n"
        "\r\n"
        "event: message\r"
        'data: {"a":\r'
        "data:  1}\r"
        "\r"
        "event: other\n"
        "data: x\n"
        "\n"
        "data: tail-without-blank-line"
    ).encode()
    expected = [
        SseEvent(event="message", data="", id="7"),
        SseEvent(event="message", data='{"a":\n 1}', id="7"),
        SseEvent(event="other", data="x", id="7"),
        SseEvent(event="message", data="tail-without-blank-line", id="7"),
    ]
    for size in (1, 2, 3, 5, 64, len(stream)):
        parser = SseParser()
        events: list[SseEvent] = []
        for i in range(0, len(stream), size):
            events.extend(parser.feed(stream[i : i + size]))
        events.extend(parser.finish())
        assert events == expected, size
