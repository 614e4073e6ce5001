"""The MCP endpoints' limits count what they promise (issue #18): every member of a batch is
charged like its own POST, a request is charged when it starts even if its body never arrives,
and that body has a deadline. Plus the transport's smaller loopholes: several `Origin` headers,
a legacy session judged by the version it negotiated, and numbers that are no double.

Live apps (tests/test_mcp_transport.py's `build_mcp_app`) with the real limiters, in-process
and on the real Redis at 127.0.0.1:6379 (MCPGW_TEST_REDIS_URL overrides).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import REDIS_URL, make_settings
from mcp_helpers import (
    CALL,
    KEY,
    auth,
    build_mcp_app,
    error_of,
    executor_of,
    legacy,
    modern_headers,
    modern_message,
    open_session,
    problem_of,
    rate_limited_data,
    send,
)
from multidict import CIMultiDict
from redis.asyncio import Redis

from gateway.context import Endpoint
from gateway.data_plane import mcp_limits
from gateway.ratelimit import FailoverLimiter, LocalLimiter, create_limiter
from gateway.server import build_app
from gateway.state import GATEWAY
from settings_api.config import ConfigError, load_settings
from settings_api.http import SETTINGS

RATE_LIMITED = -32029


@pytest.fixture(params=["local", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The limiter backend: "local", or a Redis key prefix of this test's own."""
    if request.param == "local":
        yield "local"
        return
    client = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    prefix = f"mcpgwtest-{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = [key async for key in client.scan_iter(f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def limited_app(tmp_path: Path, backend: str = "local", **env: str) -> web.Application:
    """`build_mcp_app` with the real limiter of `backend`, at the limits `env` sets (the
    shipped defaults otherwise: tools/call 10/s burst 20, requests 50/s burst 100)."""
    app = build_mcp_app(tmp_path, **env)
    limits = mcp_limits(app[SETTINGS])
    if backend == "local":
        app[GATEWAY].limiter = app[GATEWAY].sessions = LocalLimiter(limits)
        return app
    client = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    # As the gateway runs it: Redis, with the in-process buckets behind it.
    limiter = create_limiter(limits, client, prefix=backend)
    assert isinstance(limiter, FailoverLimiter)
    app[GATEWAY].limiter = app[GATEWAY].sessions = limiter

    async def close(app: web.Application) -> None:
        await client.aclose()

    app.on_cleanup.append(close)
    return app


def tools_call(id: int, name: str = "search_contacts") -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": name, "arguments": {"query": f"q{id}"}},
    }


# --- batches --------------------------------------------------------------------------------


async def test_a_batch_of_50_tools_calls_is_charged_call_by_call(
    aiohttp_client: Any, tmp_path: Path, backend: str
) -> None:
    mcp = await aiohttp_client(limited_app(tmp_path, backend))
    session = await open_session(mcp, "2025-03-26")
    batch = [tools_call(i) for i in range(50)]
    resp, body = await send(mcp, batch, {**auth(), "Mcp-Session-Id": session})
    assert resp.status == 200, body
    assert [answer["id"] for answer in body] == list(range(50))  # every slot answered, in order
    served = [answer for answer in body if "result" in answer]
    refused = [answer for answer in body if "error" in answer]
    assert len(served) == 20  # the tools/call burst
    assert [answer["id"] for answer in served] == list(range(20))
    for answer in refused:
        error = error_of(answer, RATE_LIMITED)
        assert error["data"]["retryAfterSeconds"] >= 1
        assert "Rate limit" in error["message"]
    assert len(executor_of(mcp, Endpoint.CALL).calls) == 20
    limiter = mcp.app[GATEWAY].limiter
    if isinstance(limiter, FailoverLimiter):  # answered by Redis, not the fallback
        assert limiter.fallback.bucket_count == 0
    assert resp.headers["RateLimit-Limit"] == "20"
    assert resp.headers["RateLimit-Remaining"] == "0"

    # The bucket is empty: the next batch runs nothing, a lone tools/call gets an error result.
    resp, body = await send(mcp, batch, {**auth(), "Mcp-Session-Id": session})
    assert resp.status == 200 and all(error_of(a, RATE_LIMITED) for a in body)
    resp, body = await legacy(
        mcp, "tools/call", {"name": "search_contacts"}, session=session, version="2025-03-26"
    )
    rate_limited_data(resp.status, resp.headers, body)
    assert len(executor_of(mcp, Endpoint.CALL).calls) == 20


async def test_every_batch_member_takes_a_request_token(
    aiohttp_client: Any, tmp_path: Path, backend: str
) -> None:
    mcp = await aiohttp_client(limited_app(tmp_path, backend, MCPGW_REQUEST_LIMIT_BURST="10"))
    pings = [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(20)]
    pings.insert(5, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    resp, body = await send(mcp, pings, auth())  # pings need no session
    assert resp.status == 200, body
    # 10 tokens: the first 9 pings and the notification; each ping after gets its own refusal.
    assert [a["id"] for a in body if "result" in a] == list(range(9))
    assert [a["id"] for a in body if "error" in a] == list(range(9, 20))
    assert resp.headers["RateLimit-Limit"] == "10"
    assert resp.headers["RateLimit-Remaining"] == "0"


# --- slow bodies ----------------------------------------------------------------------------


async def raw_exchange(
    server: TestServer, head: bytes, body: bytes = b"", *, later: bytes = b"", wait_s: float = 0.0
) -> tuple[bytes, bool]:
    """Send `head` and `body` (and `later` after `wait_s`) on a fresh connection; the answer's
    bytes, and whether the server closed the connection after it."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head + body)
        await writer.drain()
        if later:
            await asyncio.sleep(wait_s)
            writer.write(later)
            await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in answer.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        answer += await asyncio.wait_for(reader.readexactly(length), 5)
        try:
            closed = await asyncio.wait_for(reader.read(1), 2) == b""
        except TimeoutError:
            closed = False
        return answer, closed
    finally:
        writer.close()


def post_head(content_length: int | None, key: str = KEY) -> bytes:
    framing = (
        f"Content-Length: {content_length}"
        if content_length is not None
        else "Transfer-Encoding: chunked"
    )
    return (
        f"POST {CALL} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def header(answer: bytes, name: str) -> str | None:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        field, _, value = line.partition(b":")
        if field.strip().lower() == name.lower().encode():
            return value.strip().decode()
    return None


async def test_a_body_that_never_arrives_gets_408_in_time_and_is_charged(
    aiohttp_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = limited_app(
        tmp_path,
        MCPGW_BODY_TIMEOUT_S="0.5",
        MCPGW_REQUEST_LIMIT_RPS="0.01",
        MCPGW_REQUEST_LIMIT_BURST="3",
    )
    server = await aiohttp_server(app)
    started = time.monotonic()
    # Content-Length 100 and one byte sent; a chunked body without its last chunk.
    answers = await asyncio.gather(
        raw_exchange(server, post_head(100), b"{"),
        raw_exchange(server, post_head(None), b"1\r\n{\r\n"),
    )
    assert time.monotonic() - started < 3
    for answer, closed in answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert header(answer, "Content-Type").startswith("application/problem+json")
        problem = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert problem["status"] == 408 and problem["type"].endswith("/request-timeout")
        assert "0.5 s" in problem["detail"]
        assert closed  # the rest of that body cannot be mistaken for a next request
    # Both were counted before their bodies were awaited: one token of three is left.
    assert sorted(header(answer, "RateLimit-Remaining") for answer, _ in answers) == ["1", "2"]
    async with TestClient(server) as mcp:
        resp, _ = await legacy(mcp, "ping")
        assert resp.status == 200 and resp.headers["RateLimit-Remaining"] == "0"
        resp, body = await legacy(mcp, "ping")
        rate_limited_data(resp.status, resp.headers, body)
        resp, body = await send(mcp, None, auth(), raw=b"{nope")  # not JSON-RPC: the problem
        await problem_of(resp, body, 429, "too-many-requests")
    assert executor_of_app(app).calls == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def executor_of_app(app: web.Application) -> Any:
    return app[GATEWAY].executors[Endpoint.CALL]


@pytest.mark.slow  # waits out a slow call
async def test_a_slow_but_timely_tools_call_is_charged_to_both_buckets(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    app = limited_app(
        tmp_path, MCPGW_BODY_TIMEOUT_S="2", MCPGW_RATE_LIMIT_RPS="0.01", MCPGW_RATE_LIMIT_BURST="1"
    )
    server = await aiohttp_server(app)
    message = modern_message("tools/call", {"name": "search_contacts", "arguments": {}})
    raw = json.dumps(message).encode()
    extra = "".join(
        f"{name}: {value}\r\n"
        for name, value in modern_headers(message).items()
        if name != "Authorization"
    ).encode()
    head = post_head(len(raw)).replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n")
    first, _ = await raw_exchange(server, head, raw[:10], later=raw[10:], wait_s=0.2)
    assert first.startswith(b"HTTP/1.1 200"), first[:300]
    assert header(first, "RateLimit-Limit") == "1"  # the tighter bucket: tools/call
    assert header(first, "RateLimit-Remaining") == "0"
    second, _ = await raw_exchange(server, head, raw[:10], later=raw[10:], wait_s=0.2)
    # Refused, and answered once its body arrived: an error result of that call.
    assert second.startswith(b"HTTP/1.1 200"), second[:300]
    answer = json.loads(second.split(b"\r\n\r\n", 1)[1])
    rate_limited_data(200, {"Retry-After": header(second, "Retry-After") or ""}, answer)
    assert len(executor_of_app(app).calls) == 1


def test_body_timeout_setting(tmp_path: Path) -> None:
    env = {"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_JWT_SECRET": "j" * 40}
    assert load_settings(env).body_timeout_s == 15.0
    assert load_settings({**env, "MCPGW_BODY_TIMEOUT_S": "2.5"}).body_timeout_s == 2.5
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(ConfigError, match="MCPGW_BODY_TIMEOUT_S"):
            load_settings({**env, "MCPGW_BODY_TIMEOUT_S": bad})


# --- transport loopholes --------------------------------------------------------------------


async def test_two_origin_headers_are_403(aiohttp_client: Any, tmp_path: Path) -> None:
    mcp = await aiohttp_client(limited_app(tmp_path))
    allowed = "http://gw.test:8080"  # MCPGW_PUBLIC_URL's origin
    headers = CIMultiDict(
        [
            *auth().items(),
            ("Content-Type", "application/json"),
            ("Origin", allowed),
            ("Origin", "https://evil.test"),
        ]
    )
    async with mcp.post(
        CALL, data=b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}', headers=headers
    ) as resp:
        problem = await problem_of(resp, await resp.json(content_type=None), 403, "forbidden")
    assert "one Origin" in problem["detail"]
    resp, body = await send(
        mcp, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {**auth(), "Origin": allowed}
    )
    assert resp.status == 200, body


async def test_a_session_is_judged_by_its_negotiated_version(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    mcp = await aiohttp_client(limited_app(tmp_path))
    session = await open_session(mcp, "2025-11-25")
    batch = [tools_call(1), tools_call(2)]
    # Leaving the header out does not make a 2025-11-25 session a 2025-03-26 one.
    resp, body = await send(mcp, batch, {**auth(), "Mcp-Session-Id": session})
    assert resp.status == 400
    assert "2025-11-25" in error_of(body, -32600)["data"]
    resp, body = await send(
        mcp, batch, {**auth(), "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-03-26"}
    )
    assert resp.status == 400
    assert "does not match the session" in error_of(body, -32600)["message"]
    assert executor_of(mcp, Endpoint.CALL).calls == []
    resp, body = await legacy(
        mcp, "tools/call", {"name": "search_contacts"}, session=session, version=None
    )
    assert resp.status == 200, body
    assert executor_of(mcp, Endpoint.CALL).calls[-1]["version"] == "2025-11-25"
    # A 2025-03-26 session still takes batches, with or without the header.
    old = await open_session(mcp, "2025-03-26")
    resp, body = await send(mcp, batch, {**auth(), "Mcp-Session-Id": old})
    assert resp.status == 200 and [a["id"] for a in body] == [1, 2]


@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"123.4E+5000"])
async def test_a_number_beyond_a_double_is_refused(
    aiohttp_client: Any, tmp_path: Path, number: bytes
) -> None:
    mcp = await aiohttp_client(limited_app(tmp_path))
    message = modern_message(
        "tools/call", {"name": "search_contacts", "arguments": {"query": "x", "n": 0}}
    )
    raw = json.dumps(message).encode().replace(b'"n": 0', b'"n": ' + number)
    resp, body = await send(mcp, None, modern_headers(message), raw=raw)
    assert resp.status == 400
    error = error_of(body, -32700)
    assert "out of range" in error["data"]
    assert executor_of(mcp, Endpoint.CALL).calls == []
    # Large finite numbers still pass.
    ok = json.dumps(message).encode().replace(b'"n": 0', b'"n": 1e308')
    resp, body = await send(mcp, None, modern_headers(message), raw=ok)
    assert resp.status == 200, body
    assert executor_of(mcp, Endpoint.CALL).calls[-1]["arguments"]["n"] == 1e308


@pytest.mark.slow  # waits out the body deadline
async def test_a_settings_api_body_that_never_arrives_gets_408_in_time(
    aiohttp_server: Any, tmp_path: Path, token: Any
) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'store.db'}", MCPGW_BODY_TIMEOUT_S="0.5"
    )
    server = await aiohttp_server(build_app(settings))
    head = (
        f"PUT /v1/tenants/acme/integrations/crm HTTP/1.1\r\nHost: gw.test\r\n"
        f"Authorization: Bearer {token('acme')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: 100\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer, _ = await raw_exchange(server, head, b"{")
    assert time.monotonic() - started < 3
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    problem = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert problem["type"].endswith("/request-timeout") and "0.5 s" in problem["detail"]
