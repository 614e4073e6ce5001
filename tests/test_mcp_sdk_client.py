"""The official MCP Python SDK client against a live gateway (fakes behind the endpoint, see
tests/test_mcp_transport.py): `mode="auto"` must end up on the modern era (server/discover),
`mode="legacy"` on the initialize handshake, on both callUrl and testUrl."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.types import LoggingMessageNotificationParams
from mcp_helpers import KEY, TOOLS, FakeExecutor, build_mcp_app

from gateway.context import Endpoint
from gateway.state import GATEWAY
from mcp_core.log_levels import LOG_LEVELS
from mcp_core.version import __version__

EXPECTED_VERSION = {"auto": "2026-07-28", "legacy": "2025-11-25"}


@pytest.fixture
async def base_url(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[tuple[str, Any]]:
    app = build_mcp_app(tmp_path)
    server = await aiohttp_server(app)
    yield str(server.make_url("/v1/tenants/acme/integrations/crm/mcp:")), app


async def connect(url: str, mode: str) -> tuple[Client, httpx2.AsyncClient]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    client = Client(
        streamable_http_client(url, http_client=http), mode=mode, read_timeout_seconds=10
    )
    return client, http


@pytest.mark.parametrize("endpoint", [Endpoint.CALL, Endpoint.TEST])
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sdk_client_lists_and_calls_tools(
    base_url: tuple[str, Any], mode: str, endpoint: Endpoint
) -> None:
    prefix, app = base_url
    client, http = await connect(prefix + endpoint.value, mode)
    async with http, client:
        assert client.protocol_version == EXPECTED_VERSION[mode]
        assert client.server_info is not None
        assert (client.server_info.name, client.server_info.version) == ("CRM", __version__)

        listed = await client.list_tools()
        assert [tool.name for tool in listed.tools] == [tool["name"] for tool in TOOLS]
        assert listed.next_cursor is None

        result = await client.call_tool("search_contacts", {"query": "ann"})
        assert not result.is_error
        assert result.content[0].text == f'{endpoint.value}:search_contacts:{{"query": "ann"}}'

        stats = await client.call_tool("contact_stats", {})
        assert stats.structured_content == {"count": 3}

        regional = await client.call_tool("regional_lookup", {"region": "Zürich", "shard": 2})
        assert not regional.is_error

        with pytest.raises(MCPError) as raised:
            await client.call_tool("no_such_tool", {})
        assert raised.value.error.code == -32602
        assert raised.value.error.message == "Unknown tool: no_such_tool"

    executor: FakeExecutor = app[GATEWAY].executors[endpoint]
    other: FakeExecutor = app[GATEWAY].executors[
        Endpoint.TEST if endpoint is Endpoint.CALL else Endpoint.CALL
    ]
    assert [call["tool"] for call in executor.calls] == [
        "search_contacts",
        "contact_stats",
        "regional_lookup",
    ]
    assert {call["era"] for call in executor.calls} == {"modern" if mode == "auto" else "legacy"}
    assert other.calls == []
    # x-mcp-header: the modern client mirrored `region` (non-ASCII, so base64-wrapped) and the
    # gateway checked it against the body; legacy clients send no such headers.
    assert executor.calls[2]["region_header"] == (
        "=?base64?WsO8cmljaA==?=" if mode == "auto" else None
    )
    if mode == "legacy":  # the client ended its session on the way out
        assert len(app[GATEWAY].limiter.ended) == 1


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sdk_client_receives_streamed_progress(base_url: tuple[str, Any], mode: str) -> None:
    prefix, _ = base_url
    client, http = await connect(prefix + "call", mode)
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with http, client:
        result = await client.call_tool(
            "search_contacts", {"progress": True}, progress_callback=on_progress
        )
    assert not result.is_error
    assert progress == [1, 2]


def logging_client(
    url: str, mode: str, log_level: str | None = None
) -> tuple[Client, httpx2.AsyncClient, list[str]]:
    """A client that records the level of each log message it receives."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    logs: list[str] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logs.append(params.level)

    client = Client(
        streamable_http_client(url, http_client=http),
        mode=mode,
        read_timeout_seconds=10,
        logging_callback=on_log,
        log_level=log_level,  # type: ignore[arg-type]
    )
    return client, http, logs


@pytest.mark.parametrize("opt_in", [None, "warning"])
async def test_sdk_client_gets_logs_in_the_modern_era_only_as_asked(
    base_url: tuple[str, Any], opt_in: str | None
) -> None:
    client, http, logs = logging_client(base_url[0] + "call", "auto", opt_in)
    async with http, client:
        assert client.protocol_version == "2026-07-28"
        result = await client.call_tool("search_contacts", {"logs": True, "progress": True})
    assert not result.is_error
    assert logs == ([] if opt_in is None else list(LOG_LEVELS[3:]))


async def test_sdk_client_sets_its_legacy_session_log_level(base_url: tuple[str, Any]) -> None:
    client, http, logs = logging_client(base_url[0] + "call", "legacy")
    async with http, client:
        assert client.server_capabilities is not None
        assert client.server_capabilities.logging is not None
        with pytest.warns(MCPDeprecationWarning):  # deprecated in 2026-07-28, not in 2025
            await client.set_logging_level("error")
        result = await client.call_tool("search_contacts", {"logs": True})
    assert not result.is_error
    assert logs == ["error", "critical", "alert", "emergency"]
