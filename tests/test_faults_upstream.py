"""Upstream faults on callUrl, against a real gateway process (MCPGW_UPSTREAM_TIMEOUT_S=1).

Slow past the timeout, down (a closed port), resetting connections, invalid JSON, HTTP 500, a
stalled SSE stream and a huge body: each is a JSON-RPC error naming the failure
(`data.upstream`) within the timeout, the gateway keeps serving, and its memory stays bounded
through 20 huge answers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from faults import (
    TOOLS,
    Client,
    fd_count,
    http_session,
    log_of,
    rss_kb,
    start_gateway,
    stop_gateway,
)
from mcp_stub import HUGE_BODY_BYTES, StubUpstream
from net import closed_url
from polling import until

pytestmark = pytest.mark.slow

TIMEOUT_S = 1.0
CALL: dict[str, Any] = {"fail_on": {"tools/call"}}
LIMITS = {
    "MCPGW_RATE_LIMIT_BURST": "1000",
    "MCPGW_RATE_LIMIT_RPS": "1000",
    "MCPGW_REQUEST_LIMIT_BURST": "1000",
    "MCPGW_REQUEST_LIMIT_RPS": "1000",
}


async def call(
    client: Client, key: str, session: str, meta: dict[str, Any] | None = None
) -> tuple[float, int, Any]:
    params: dict[str, Any] = {"name": "search_contacts", "arguments": {"query": "ada"}}
    if meta:
        params["_meta"] = meta
    started = time.monotonic()
    async with client.http.post(
        f"{client.api}/mcp:call",
        json={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params},
        headers={**client.headers(key, session), "Accept": "application/json"},
    ) as r:
        body = await r.json()
        return time.monotonic() - started, r.status, body


def assert_upstream_error(status: int, body: Any, reason: str) -> dict[str, Any]:
    assert status == 200, (status, body)
    error = body.get("error")
    assert error and error["code"] == -32603, body
    assert error["data"]["upstream"] == reason, body
    assert error["message"].startswith("Upstream MCP server"), body
    return error


async def test_upstream_faults_are_bounded_json_rpc_errors(tmp_path, aiohttp_server) -> None:
    stubs = {
        "slow": StubUpstream(tools=TOOLS, mode="slow", delay_s=10, **CALL),
        "reset": StubUpstream(tools=TOOLS, mode="reset", **CALL),
        "garbage": StubUpstream(tools=TOOLS, mode="garbage", **CALL),
        "http500": StubUpstream(tools=TOOLS, mode="http-500", **CALL),
        "stalled": StubUpstream(tools=TOOLS, sse=True, progress_delay_s=10),
        "healthy": StubUpstream(tools=TOOLS),
    }
    urls = {
        name: str((await aiohttp_server(stub.app())).make_url("/mcp"))
        for name, stub in stubs.items()
    }
    urls["down"] = closed_url()  # nothing listens there
    expected = {
        "slow": "timeout",
        "down": "connect",
        "reset": "connect",
        "garbage": "invalid-response",
        "http500": "http-status",
        "stalled": "timeout",
    }
    proc = await start_gateway(
        tmp_path,
        "gw",
        f"sqlite:///{tmp_path / 'gw.db'}",
        MCPGW_UPSTREAM_TIMEOUT_S=str(TIMEOUT_S),
        **LIMITS,
    )
    try:
        async with http_session() as http:
            clients = {name: Client(http, proc, integration=name) for name in urls}
            keys = {name: await client.enable(urls[name]) for name, client in clients.items()}
            sessions = {
                name: await client.initialize(keys[name]) for name, client in clients.items()
            }

            async def fault(name: str) -> None:
                meta = {"progressToken": "p1"} if name == "stalled" else None
                for _ in range(2):  # the second call finds the pooled session in that state
                    took, status, body = await call(clients[name], keys[name], sessions[name], meta)
                    error = assert_upstream_error(status, body, expected[name])
                    # Cut at the timeout, long before the upstreams' 10 s.
                    assert took < TIMEOUT_S + 2.0, (name, took)
                    if expected[name] == "timeout":
                        assert took >= TIMEOUT_S * 0.9, (name, took)
                    if name == "http500":
                        assert error["data"]["status"] == 500

            # All at once: one failing upstream never holds up another.
            started = time.monotonic()
            await asyncio.gather(*(fault(name) for name in expected))
            assert time.monotonic() - started < 2 * TIMEOUT_S + 1.0

            # The gateway was not wedged by any of it.
            _, status, body = await call(clients["healthy"], keys["healthy"], sessions["healthy"])
            assert status == 200 and body["result"]["isError"] is False, body
            assert stubs["healthy"].calls["tools/call"] == 1
        text = log_of(proc)
        assert '" 500 ' not in text and "Error handling request" not in text
    finally:
        assert await stop_gateway(proc) == 0, log_of(proc)


async def test_huge_upstream_answers_keep_memory_bounded(tmp_path, aiohttp_server) -> None:
    stub = StubUpstream(tools=TOOLS, mode="huge", **CALL)
    url = str((await aiohttp_server(stub.app())).make_url("/mcp"))
    proc = await start_gateway(
        tmp_path, "gw", f"sqlite:///{tmp_path / 'gw.db'}", MCPGW_UPSTREAM_TIMEOUT_S="5", **LIMITS
    )
    try:
        async with http_session() as http:
            client = Client(http, proc)
            key = await client.enable(url)
            session = await client.initialize(key)

            async def huge(via: Client = client) -> None:
                took, status, body = await call(via, key, session)
                error = assert_upstream_error(status, body, "too-large")
                assert "byte limit" in error["message"]
                assert took < 5

            for _ in range(3):  # warm up: buffers, pools, code paths
                await huge()
            await asyncio.sleep(0.2)
            rss_before, fds_before = rss_kb(proc.proc.pid), fd_count(proc.proc.pid)
            async with http_session() as burst_http:  # its connections close afterwards
                burst = Client(burst_http, proc)
                for _ in range(4):  # 20 in all, 5 at a time
                    await asyncio.gather(*(huge(burst) for _ in range(5)))
            rss_after = rss_kb(proc.proc.pid)
            growth_mb = (rss_after - rss_before) / 1024
            # 20 answers of 10.5 MiB each went by; at most 4 MiB of each was ever read.
            assert growth_mb < 30, f"RSS grew {growth_mb:.1f} MB ({rss_before} -> {rss_after} kB)"
            assert stub.calls["tools/call"] == 23
            assert HUGE_BODY_BYTES > 10 * 1024 * 1024

            async def fds_back() -> bool:
                return fd_count(proc.proc.pid) <= fds_before

            await until(fds_back, timeout_s=3.0)
            # And it still answers.
            status, _, body = await client.list_tools(key, session)
            assert status == 200 and len(body["result"]["tools"]) == 2
    finally:
        assert await stop_gateway(proc) == 0, log_of(proc)
