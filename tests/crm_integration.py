"""A CRM integration on a real gateway process, bound to a stub upstream through the settings
API: shared by the end-to-end SDK tests and the client matrix. Not a test module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from conftest import JWT_SECRET
from mcp_stub import StubUpstream
from processes import GatewayProcess

from settings_api.jwt_auth import issue_token

TOOLS = [
    {
        "name": "search_contacts",
        "description": "Search the CRM",
        "inputSchema": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
    {"name": "delete_contact", "inputSchema": {"type": "object"}},  # not exposed
]


async def setup_integration(base: str, upstream_url: str) -> dict[str, Any]:
    api = f"{base}/v1/tenants/acme/integrations/crm"
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'acme')}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.put(api, json={"name": "CRM"}) as r:
            assert r.status == 201
        async with http.post(
            f"{api}/configs",
            json={
                "upstreamUrl": upstream_url,
                "upstreamHeaders": {"Authorization": "Bearer upstream-secret"},
            },
        ) as r:
            config = await r.json()
            assert r.status == 201, config
        async with http.patch(
            f"{api}/mcp",
            json={
                "enabled": True,
                "configId": config["configId"],
                "exposedToolIds": ["search_contacts"],
                "description": "CRM tools",
            },
        ) as r:
            settings = await r.json()
            assert r.status == 200, settings
    return settings


@asynccontextmanager
async def crm_gateway(
    tmp_path: Path, aiohttp_server: Any, stub: StubUpstream, **env: str
) -> AsyncIterator[tuple[GatewayProcess, dict[str, Any]]]:
    """A gateway process (embedded store, `env` on top) with the CRM integration bound to
    `stub`, served here: the process and the integration's MCP settings (`apiKey`,
    `callUrl`, `testUrl`)."""
    upstream = await aiohttp_server(stub.app())
    base = {"MCPGW_DATA_DIR": str(tmp_path / "data"), "MCPGW_JWT_SECRET": JWT_SECRET}
    proc = GatewayProcess(tmp_path, "gw", {**base, **env})
    proc.wait_ready()
    try:
        yield proc, await setup_integration(proc.url, str(upstream.make_url("/mcp")))
    finally:
        proc.stop()
