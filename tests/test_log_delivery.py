"""Upstream log messages reach a client only as its protocol era allows (issue #20, item 1):
2026-07-28 by the request's `_meta` logLevel opt-in, the 2025 era by the session's
`logging/setLevel`, kept in the session store the replicas share. A stub upstream sends
`notifications/message` at every level on every answer; two gateway apps on one store stand
for two replicas (the same in-process store, or two limiters on one Redis)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, make_mocked_request
from conftest import REDIS_URL
from mcp_helpers import (
    CALL,
    KEY,
    TENANT,
    TOOLS,
    FakeExecutor,
    auth,
    build_mcp_app,
    error_of,
    executor_ctx,
    legacy,
    make_view,
    modern,
    modern_headers,
    modern_message,
    open_session,
    sse_messages,
)
from mcp_stub import StubUpstream
from redis.asyncio import Redis

from gateway.context import Endpoint, KeyEntry, LimiterUnavailable
from gateway.executors.pool import UpstreamPool
from gateway.executors.proxy import ProxyExecutor
from gateway.ratelimit import BucketSpec, Limits, LocalLimiter, create_limiter
from gateway.ratelimit.failover import FailoverLimiter
from gateway.redis_clients import limiter_options
from gateway.session_logging import set_log_level
from gateway.state import GATEWAY
from mcp_core.errors import INTERNAL_ERROR, McpError
from mcp_core.log_levels import LOG_LEVELS

LIMITS = Limits(call=BucketSpec(1000.0, 1000), request=BucketSpec(1000.0, 1000))
SESSION_SECRET = "s" * 40
SEARCH = {"name": "search_contacts", "arguments": {"query": "ada"}}
LOG_LEVEL_META = "io.modelcontextprotocol/logLevel"
Store = LocalLimiter | FailoverLimiter


@pytest.fixture
async def upstream(aiohttp_server: Any) -> str:
    stub = StubUpstream(tools=list(TOOLS), sse=True, log_levels=LOG_LEVELS)
    server = await aiohttp_server(stub.app())
    return str(server.make_url("/mcp"))


@pytest.fixture(params=["local", "redis"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Store, Store]]:
    """Each replica's session store: one in-process store shared, or two on one Redis."""
    if request.param == "local":
        local = LocalLimiter(LIMITS)
        yield local, local
        return
    prefix = f"mcpgwtest-{uuid.uuid4().hex[:12]}"
    clients = [Redis.from_url(REDIS_URL, **limiter_options(2)) for _ in range(2)]
    made = [create_limiter(LIMITS, client, prefix=prefix) for client in clients]
    yield made[0], made[1]
    keys = [key async for key in clients[0].scan_iter(f"{prefix}:*", count=1000)]
    if keys:
        await clients[0].delete(*keys)
    for limiter, client in zip(made, clients, strict=True):
        await limiter.close()
        await client.aclose()


Replica = Callable[[Store], Awaitable[TestClient]]


@pytest.fixture
async def replica(
    aiohttp_client: Any, tmp_path: Path, upstream: str, upstream_http: aiohttp.ClientSession
) -> AsyncIterator[Replica]:
    """Makes a gateway app on `store` whose callUrl proxies to the stub upstream."""
    pools: list[UpstreamPool] = []

    async def make(store: Store) -> TestClient:
        home = tmp_path / f"replica-{len(pools)}"
        home.mkdir()
        app = build_mcp_app(home, MCPGW_SESSION_SECRET=SESSION_SECRET)
        state = app[GATEWAY]
        state.limiter = state.sessions = store
        views = state.resolver.views  # type: ignore[attr-defined]
        views[(TENANT, "crm")] = dataclasses.replace(views[(TENANT, "crm")], upstream_url=upstream)
        pools.append(UpstreamPool(upstream_http, timeout_s=5.0))
        state.executors[Endpoint.CALL] = ProxyExecutor(pools[-1])  # type: ignore[index]
        return await aiohttp_client(app)

    yield make
    for pool in pools:
        await pool.close()


@pytest.fixture
async def gateway(replica: Replica) -> TestClient:
    return await replica(LocalLimiter(LIMITS))


def answer_of(resp: aiohttp.ClientResponse, body: Any) -> list[dict[str, Any]]:
    """The messages of an answer, notifications first (one when it was plain JSON)."""
    assert resp.status == 200, body
    if resp.content_type == "text/event-stream":
        return sse_messages(body)
    assert resp.content_type == "application/json"
    return [body]


def log_levels_in(messages: list[dict[str, Any]]) -> list[str]:
    assert "result" in messages[-1], messages[-1]
    return [m["params"]["level"] for m in messages if m.get("method") == "notifications/message"]


def progress_in(messages: list[dict[str, Any]]) -> int:
    return sum(m.get("method") == "notifications/progress" for m in messages)


async def call_legacy(
    client: TestClient, session: str, *, progress: bool = False
) -> list[dict[str, Any]]:
    params = {**SEARCH, "_meta": {"progressToken": "p"}} if progress else SEARCH
    return answer_of(*await legacy(client, "tools/call", params, session=session))


async def set_level(client: TestClient, session: str, level: Any) -> dict[str, Any]:
    resp, body = await legacy(client, "logging/setLevel", {"level": level}, session=session)
    assert resp.status == 200, body
    return body  # type: ignore[no-any-return]


# --- 2026-07-28 ---------------------------------------------------------------------------------


async def test_modern_without_the_opt_in_gets_no_log_message(gateway: TestClient) -> None:
    params = {**SEARCH, "_meta": {"progressToken": "p"}}  # streamed for its progress
    messages = answer_of(*await modern(gateway, "tools/call", params))
    assert log_levels_in(messages) == []
    assert progress_in(messages) == 3  # progress is not a log message: unaffected


@pytest.mark.parametrize("level", ["debug", "warning", "emergency"])
async def test_modern_opt_in_gets_its_level_and_above(gateway: TestClient, level: str) -> None:
    # No progressToken: asking for logs is enough for a stream.
    params = {**SEARCH, "_meta": {LOG_LEVEL_META: level}}
    messages = answer_of(*await modern(gateway, "tools/call", params))
    assert log_levels_in(messages) == list(LOG_LEVELS[LOG_LEVELS.index(level) :])
    assert progress_in(messages) == 0


async def test_modern_opt_in_with_progress_gets_both(gateway: TestClient) -> None:
    params = {**SEARCH, "_meta": {LOG_LEVEL_META: "critical", "progressToken": 9}}
    messages = answer_of(*await modern(gateway, "tools/call", params))
    assert log_levels_in(messages) == ["critical", "alert", "emergency"]
    assert progress_in(messages) == 3


async def test_modern_opt_in_without_sse_is_one_json_answer(gateway: TestClient) -> None:
    params = {**SEARCH, "_meta": {LOG_LEVEL_META: "debug"}}
    resp, body = await modern(gateway, "tools/call", params, headers={"Accept": "application/json"})
    assert answer_of(resp, body) == [body] and body["result"]["content"]


@pytest.mark.parametrize("level", ["verbose", "INFO", 3, ""])
async def test_modern_unknown_log_level_is_32602(gateway: TestClient, level: Any) -> None:
    for method, params in (("tools/call", SEARCH), ("tools/list", None)):
        message = modern_message(method, {**(params or {}), "_meta": {LOG_LEVEL_META: level}})
        async with gateway.post(CALL, json=message, headers=modern_headers(message)) as resp:
            assert resp.status == 400
            assert "debug, info" in error_of(await resp.json(), -32602)["message"]


async def test_modern_has_no_set_level(gateway: TestClient) -> None:
    resp, body = await modern(gateway, "logging/setLevel", {"level": "info"})
    assert resp.status == 404
    error_of(body, -32601)


# --- 2025 era -----------------------------------------------------------------------------------


async def test_legacy_session_without_set_level_gets_every_level_when_streamed(
    gateway: TestClient,
) -> None:
    session = await open_session(gateway)
    messages = await call_legacy(gateway, session, progress=True)
    assert log_levels_in(messages) == list(LOG_LEVELS)
    assert progress_in(messages) == 3
    # Without a progressToken or a level it asked for, the answer is plain JSON, as before.
    assert log_levels_in(await call_legacy(gateway, session)) == []


async def test_set_level_filters_that_session_only(gateway: TestClient) -> None:
    quiet, chatty = await open_session(gateway), await open_session(gateway)
    assert (await set_level(gateway, quiet, "error"))["result"] == {}
    # The level alone asks for logs: streamed without a progressToken.
    assert log_levels_in(await call_legacy(gateway, quiet)) == [
        "error",
        "critical",
        "alert",
        "emergency",
    ]
    assert log_levels_in(await call_legacy(gateway, chatty, progress=True)) == list(LOG_LEVELS)
    await set_level(gateway, quiet, "debug")  # lowered again
    assert log_levels_in(await call_legacy(gateway, quiet)) == list(LOG_LEVELS)


@pytest.mark.parametrize("level", ["verbose", None, 5, ["info"]])
async def test_set_level_with_an_unknown_level_is_32602(gateway: TestClient, level: Any) -> None:
    session = await open_session(gateway)
    error = error_of(await set_level(gateway, session, level), -32602)
    assert "params.level" in error["message"]
    assert log_levels_in(await call_legacy(gateway, session, progress=True)) == list(LOG_LEVELS)


async def test_set_level_needs_a_live_session(gateway: TestClient) -> None:
    resp, _ = await legacy(gateway, "logging/setLevel", {"level": "info"})
    assert resp.status == 400
    session = await open_session(gateway)
    async with gateway.delete(CALL, headers={**auth(KEY), "Mcp-Session-Id": session}) as ended:
        assert ended.status == 204
    resp, _ = await legacy(gateway, "logging/setLevel", {"level": "info"}, session=session)
    assert resp.status == 404


async def test_set_level_in_a_batch(gateway: TestClient) -> None:
    session = await open_session(gateway, "2025-03-26")
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": {"level": "alert"}},
        {"jsonrpc": "2.0", "id": 2, "method": "ping"},
    ]
    headers = {**auth(KEY), "Mcp-Session-Id": session, "Accept": "application/json"}
    async with gateway.post(CALL, json=batch, headers=headers) as resp:
        assert [a["result"] for a in await resp.json()] == [{}, {}]
    messages = answer_of(
        *await legacy(gateway, "tools/call", SEARCH, session=session, version=None)
    )
    assert log_levels_in(messages) == ["alert", "emergency"]


async def test_the_level_is_read_when_the_body_comes_after_the_headers(
    gateway: TestClient,
) -> None:
    session = await open_session(gateway)
    await set_level(gateway, session, "notice")
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": SEARCH})

    async def slowly() -> AsyncIterator[bytes]:
        yield body[:10].encode()
        await asyncio.sleep(0.05)  # the request is counted before the rest arrives
        yield body[10:].encode()

    headers = {
        **auth(KEY),
        "Mcp-Session-Id": session,
        "MCP-Protocol-Version": "2025-11-25",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    async with gateway.post(CALL, data=slowly(), headers=headers) as resp:
        messages = answer_of(resp, await resp.text())
    assert log_levels_in(messages) == list(LOG_LEVELS[2:])


async def test_a_level_set_on_one_replica_holds_on_the_other(
    replica: Replica, stores: tuple[Store, Store]
) -> None:
    a, b = await replica(stores[0]), await replica(stores[1])
    session, other = await open_session(a), await open_session(b)
    await set_level(a, session, "warning")
    above_warning = list(LOG_LEVELS[3:])
    assert log_levels_in(await call_legacy(b, session)) == above_warning
    assert log_levels_in(await call_legacy(a, session)) == above_warning
    assert log_levels_in(await call_legacy(b, other, progress=True)) == list(LOG_LEVELS)


async def test_set_level_reports_an_unreachable_store_as_32603() -> None:
    class Down:
        async def set_session_log_level(self, *args: Any) -> None:
            raise LimiterUnavailable()

    ctx = executor_ctx(
        make_view("crm"),
        key=KeyEntry("k", TENANT, "crm", "mcp:invoke"),
        executor=FakeExecutor("call"),
        request=make_mocked_request("POST", CALL),
        session_id="sess",
        session_levels=Down(),
        session_expires_at=time.time() + 60,
    )
    with pytest.raises(McpError) as info:
        await set_log_level(ctx, {"level": "info"})
    assert info.value.code == INTERNAL_ERROR and "again" in info.value.message


async def test_redis_keeps_the_level_as_long_as_the_session(redis_client: Redis) -> None:
    prefix = f"mcpgwtest-{uuid.uuid4().hex[:12]}"
    limiter = create_limiter(LIMITS, redis_client, prefix=prefix)
    assert isinstance(limiter, FailoverLimiter)
    expires_at = int(time.time()) + 3600
    try:
        await limiter.set_session_log_level("k", "sess", "info", expires_at)
        key = limiter.primary.log_level_key("k", "sess")
        assert await redis_client.get(key) == b"info"
        assert await redis_client.pexpiretime(key) == expires_at * 1000
        assert "sess" not in key  # the session id itself is never stored
    finally:
        await redis_client.delete(limiter.primary.log_level_key("k", "sess"))
        await limiter.close()
