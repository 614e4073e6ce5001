"""The official MCP SDK client against a real `mcp-gateway serve` process (real cache, limiter,
proxy and simulator) and a stub upstream that counts calls: callUrl reaches the upstream,
testUrl never does, in both protocol eras, on the embedded store and on Postgres + Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
from conftest import JWT_SECRET
from crm_integration import TOOLS, setup_integration
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_stub import StubUpstream
from processes import GatewayProcess

pytestmark = pytest.mark.slow

EXPECTED_VERSION = {"auto": "2026-07-28", "legacy": "2025-11-25"}


@pytest.fixture(params=["embedded", "postgres+redis"])
async def gateway(request: pytest.FixtureRequest, tmp_path: Path, aiohttp_server: Any):
    stub = StubUpstream(tools=TOOLS)
    upstream = await aiohttp_server(stub.app())
    env = {"MCPGW_DATA_DIR": str(tmp_path / "data"), "MCPGW_JWT_SECRET": JWT_SECRET}
    if request.param == "postgres+redis":
        env["MCPGW_DATABASE_URL"] = request.getfixturevalue("pg_database_url")
        env["MCPGW_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    proc = GatewayProcess(tmp_path, "gw", env).wait_ready()
    try:
        yield proc, stub, str(upstream.make_url("/mcp"))
    finally:
        proc.stop()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sdk_client_on_both_urls_and_the_upstream_sees_only_call_url(
    gateway: Any, mode: str
) -> None:
    proc, stub, upstream_url = gateway
    settings = await setup_integration(proc.url, upstream_url)
    base = f"{proc.url}/v1/tenants/acme/integrations/crm"
    calls_before = stub.calls["tools/call"]

    for url, reaches_upstream in ((f"{base}/mcp:test", False), (f"{base}/mcp:call", True)):
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {settings['apiKey']}"}, timeout=10
        )
        client = Client(
            streamable_http_client(url, http_client=http), mode=mode, read_timeout_seconds=10
        )
        async with http, client:
            assert client.protocol_version == EXPECTED_VERSION[mode]
            assert client.server_info is not None and client.server_info.name == "CRM"
            listed = await client.list_tools()
            assert [t.name for t in listed.tools] == ["search_contacts"]
            result = await client.call_tool("search_contacts", {"query": "ada"})
            assert not result.is_error
            with pytest.raises(MCPError) as unknown:
                await client.call_tool("delete_contact", {})  # exists upstream, not exposed
            assert unknown.value.error.code == -32602
        expected = calls_before + (1 if reaches_upstream else 0)
        assert stub.calls["tools/call"] == expected, url
        if reaches_upstream:
            sent = [h for h in stub.received_headers if h.get("Authorization")]
            assert sent and sent[-1]["Authorization"] == "Bearer upstream-secret"


async def test_simulated_results_are_identical_across_restarts_and_hash_seeds(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    stub = StubUpstream(
        tools=[
            {
                **TOOLS[0],
                "outputSchema": {
                    "type": "object",
                    "required": ["contacts"],
                    "properties": {
                        "contacts": {
                            "type": "array",
                            "minItems": 2,
                            "items": {
                                "type": "object",
                                "required": ["id", "name", "email", "createdAt"],
                                "properties": {
                                    "id": {"type": "string", "format": "uuid"},
                                    "name": {"type": "string"},
                                    "email": {"type": "string", "format": "email"},
                                    "createdAt": {"type": "string", "format": "date-time"},
                                },
                            },
                        }
                    },
                },
            }
        ]
    )
    upstream = await aiohttp_server(stub.app())
    env = {"MCPGW_DATA_DIR": str(tmp_path / "data"), "MCPGW_JWT_SECRET": JWT_SECRET}
    bodies = []
    key = None
    for run, hash_seed in enumerate(("1", "2")):
        proc = GatewayProcess(tmp_path, f"run{run}", {**env, "PYTHONHASHSEED": hash_seed})
        proc.wait_ready()
        try:
            if key is None:
                key = (await setup_integration(proc.url, str(upstream.make_url("/mcp"))))["apiKey"]
            url = f"{proc.url}/v1/tenants/acme/integrations/crm/mcp:test"
            modern = {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    url,
                    json={
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "tools/call",
                        "params": {
                            "name": "search_contacts",
                            "arguments": {"query": "ada"},
                            "_meta": modern,
                        },
                    },
                    headers={
                        "Authorization": f"Bearer {key}",
                        "MCP-Protocol-Version": "2026-07-28",
                        "Mcp-Method": "tools/call",
                        "Mcp-Name": "search_contacts",
                    },
                ) as resp,
            ):
                bodies.append((resp.status, await resp.read()))
        finally:
            proc.stop()
    assert bodies[0][0] == 200, bodies[0]
    assert b"structuredContent" in bodies[0][1]
    assert bodies[0] == bodies[1]
    assert stub.calls["tools/call"] == 0
