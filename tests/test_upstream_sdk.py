"""The official Python MCP SDK's server (2.x) as callUrl's upstream: a third-party 2026-07-28
server, served in-process by uvicorn. The gateway reads its catalog and calls its tools
statelessly, mirrors `x-mcp-header` arguments into the `Mcp-Param-*` headers it checks, and
passes `progressToken` and the log opt-in through (the SDK sends logs only when asked)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Annotated, Any

import aiohttp
import pytest
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp_helpers import executor_ctx, make_view
from net import free_port
from polling import until
from pydantic import Field

from gateway.context import RequestContext
from gateway.executors import ProxyExecutor, UpstreamPool
from mcp_core.client import StatelessUpstream, fetch_tool_catalog
from mcp_core.versions import LOG_LEVEL_META, Era

# The SDK's server warns that 2026-07-28 deprecates its logging API, which it still serves.
pytestmark = pytest.mark.filterwarnings("ignore:The logging capability is deprecated")


def sdk_server() -> MCPServer:
    server = MCPServer("sdk-upstream")

    @server.tool()
    def lookup(
        region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], query: str
    ) -> str:
        """Look up in one region."""
        return f"{region}:{query}"

    @server.tool()
    async def work(steps: int, ctx: Context) -> str:
        """Report progress and log each step."""
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps)
            await ctx.info(f"step {step}")
        return "done"

    return server


@pytest.fixture
async def sdk_url() -> AsyncIterator[str]:
    port = free_port()
    app = sdk_server().streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started, timeout_s=10)
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def catalog(http: aiohttp.ClientSession, url: str) -> dict[str, dict[str, Any]]:
    tools = await fetch_tool_catalog(http, url, {}, timeout_s=5)
    return {tool["name"]: tool for tool in tools}


def ctx_for(url: str, tools: dict[str, dict[str, Any]], notify: Any = None) -> RequestContext:
    view = dataclasses.replace(
        make_view("crm", tuple(tools.values())), upstream_url=url, upstream_headers={}
    )
    return executor_ctx(view, era=Era.MODERN, protocol_version="2026-07-28", notify=notify)


async def test_the_sdk_server_is_spoken_to_in_2026_07_28(
    sdk_url: str, upstream_http: aiohttp.ClientSession, upstream_pool: UpstreamPool
) -> None:
    assert await StatelessUpstream(upstream_http, sdk_url, {}).discover()
    tools = await catalog(upstream_http, sdk_url)
    assert set(tools) == {"lookup", "work"}
    region = tools["lookup"]["inputSchema"]["properties"]["region"]
    assert region["x-mcp-header"] == "Region"
    proxy = ProxyExecutor(upstream_pool)
    # A value that is not header-safe travels base64-wrapped; the SDK checks it.
    arguments = {"region": "Zürich ", "query": "q"}
    result = await proxy.call_tool(ctx_for(sdk_url, tools), tools["lookup"], arguments, None)
    assert result["content"] == [{"type": "text", "text": "Zürich :q"}]
    assert result["isError"] is False and "resultType" not in result
    # Without the header the SDK refuses the call: the one the gateway sent was checked.
    bare = StatelessUpstream(upstream_http, sdk_url, {})
    refused = await bare.exchange("tools/call", {"name": "lookup", "arguments": arguments})
    assert refused["error"]["code"] == -32020


@pytest.mark.parametrize("level", [None, "info"])
async def test_progress_and_logs_as_the_client_asked(
    sdk_url: str,
    upstream_http: aiohttp.ClientSession,
    upstream_pool: UpstreamPool,
    level: str | None,
) -> None:
    tools = await catalog(upstream_http, sdk_url)
    notes: list[dict[str, Any]] = []

    async def notify(note: dict[str, Any]) -> None:
        notes.append(note)

    meta: dict[str, Any] = {"progressToken": "p"}
    if level is not None:
        meta[LOG_LEVEL_META] = level
    proxy = ProxyExecutor(upstream_pool)
    ctx = ctx_for(sdk_url, tools, notify)
    result = await proxy.call_tool(ctx, tools["work"], {"steps": 2}, meta)
    assert result["content"] == [{"type": "text", "text": "done"}]
    progress = [n["params"]["progress"] for n in notes if n["method"] == "notifications/progress"]
    logs = [n["params"]["data"] for n in notes if n["method"] == "notifications/message"]
    assert progress == [1, 2]
    assert logs == ([] if level is None else ["step 1", "step 2"])


async def test_a_legacy_sessions_level_reaches_a_modern_upstream_as_its_opt_in(
    sdk_url: str, upstream_http: aiohttp.ClientSession, upstream_pool: UpstreamPool
) -> None:
    tools = await catalog(upstream_http, sdk_url)
    notes: list[dict[str, Any]] = []

    async def notify(note: dict[str, Any]) -> None:
        notes.append(note)

    ctx = dataclasses.replace(
        ctx_for(sdk_url, tools, notify),
        era=Era.LEGACY,
        protocol_version="2025-11-25",
        log_level="info",  # from the session's logging/setLevel
    )
    proxy = ProxyExecutor(upstream_pool)
    await proxy.call_tool(ctx, tools["work"], {"steps": 2}, {"progressToken": "p"})
    logs = [n["params"]["data"] for n in notes if n["method"] == "notifications/message"]
    assert logs == ["step 1", "step 2"]
