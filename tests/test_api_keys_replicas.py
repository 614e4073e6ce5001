"""Keys per integration across live `mcp-gateway` processes: two replicas on one store (a
shared SQLite file, then Postgres) and one Redis. A deleted key, a rotated key whose grace
period ran out and an expired key are refused on every replica within a second, with no
message needed for the last two; lastUsedAt shows a use on either replica within 5 s."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from faults import Client, log_of, start_replicas
from mcp_helpers import modern_headers, modern_message
from polling import until
from processes import GatewayProcess

from settings_api.use_cases.store_access import now_ms

pytestmark = pytest.mark.slow

TOOLS = [
    {"name": "search_contacts", "inputSchema": {"type": "object"}},
    {"name": "create_contact", "inputSchema": {"type": "object"}},
]


@pytest.fixture
async def replicas(tmp_path: Path, fresh_database_url: str) -> AsyncIterator[list[GatewayProcess]]:
    async with start_replicas(tmp_path, fresh_database_url) as procs:
        yield procs
    for proc in procs:
        assert "Traceback" not in log_of(proc)


async def rpc(
    client: Client, key: str, method: str, params: dict[str, Any] | None = None, url: str = "test"
) -> tuple[int, Any]:
    message = modern_message(method, params)
    async with client.http.post(
        f"{client.api}/mcp:{url}", json=message, headers=modern_headers(message, key)
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def reason(client: Client, key: str, url: str = "test") -> str | None:
    """Why `key` is refused (the 401's reason), None when it works."""
    status, body = await rpc(client, key, "tools/list", url=url)
    assert status in (200, 401), body
    return body["reason"] if status == 401 else None


async def reasons(clients: list[Client], key: str) -> set[str | None]:
    """`reason` on every replica and both URLs."""
    return {await reason(c, key, url) for c in clients for url in ("call", "test")}


async def tool_names(client: Client, key: str) -> list[str]:
    status, body = await rpc(client, key, "tools/list")
    assert status == 200, body
    return [tool["name"] for tool in body["result"]["tools"]]


async def test_a_deleted_key_is_refused_on_every_replica_within_a_second(
    replicas: list[GatewayProcess], http: aiohttp.ClientSession
) -> None:
    a, b = clients = [Client(http, proc) for proc in replicas]
    default_key = await a.enable(tools=TOOLS)
    created = await a.settings(
        "POST", "/mcp/keys", json={"label": "laptop", "toolIds": ["create_contact"]}
    )
    other = await b.settings("POST", "/mcp/keys", json={"label": "teammate"})
    key = created["apiKey"]
    # Cached on both replicas, narrowed on both.
    assert await reasons(clients, key) == {None}
    assert await tool_names(a, key) == await tool_names(b, key) == ["create_contact"]
    status, body = await rpc(b, key, "tools/call", {"name": "search_contacts", "arguments": {}})
    assert body["error"] == {"code": -32602, "message": "Unknown tool: search_contacts"}, body

    status, _, _ = await b.raw_settings("DELETE", f"/mcp/keys/{created['apiKeyId']}")
    assert status == 204

    async def refused_everywhere() -> bool:
        return await reasons(clients, key) == {"revoked"}

    await until(refused_everywhere, timeout_s=1.0, interval_s=0.05)
    for survivor in (default_key, other["apiKey"]):
        assert await reasons(clients, survivor) == {None}
    listed = [k["label"] for k in (await a.settings("GET", "/mcp/keys"))["keys"]]
    assert listed == ["default", "teammate"]


async def test_grace_periods_and_expiries_end_on_every_replica_without_a_message(
    replicas: list[GatewayProcess], http: aiohttp.ClientSession
) -> None:
    a, b = clients = [Client(http, proc) for proc in replicas]
    old_key = await a.enable(tools=TOOLS)
    expiring = await b.settings(
        "POST", "/mcp/keys", json={"label": "ci", "expiresAt": now_ms() + 3000}
    )
    rotated = await a.settings("POST", "/mcp:rotateKey", json={"gracePeriodSeconds": 3})
    ends_at = now_ms() + 3000
    for key in (old_key, expiring["apiKey"], rotated["apiKey"]):
        assert await reasons(clients, key) == {None}  # cached everywhere from here on

    await asyncio.sleep(max(0.0, (ends_at - now_ms()) / 1000))

    async def ended_everywhere() -> bool:
        return await reasons(clients, old_key) == {"revoked"} and await reasons(
            clients, expiring["apiKey"]
        ) == {"expired"}

    await until(ended_everywhere, timeout_s=1.0, interval_s=0.05)
    assert await reasons(clients, rotated["apiKey"]) == {None}
    # The access log (written in batches) names the reason.
    for proc in replicas:
        await until(lambda p=proc: _refusals_logged(p), timeout_s=5.0, interval_s=0.1)


async def _refusals_logged(proc: GatewayProcess) -> bool:
    logged = [json.loads(line) for line in log_of(proc).splitlines() if line.startswith("{")]
    return {line.get("reason") for line in logged if line.get("status") == 401} == {
        "revoked",
        "expired",
    }


async def test_last_used_at_shows_a_use_on_either_replica_within_five_seconds(
    replicas: list[GatewayProcess], http: aiohttp.ClientSession
) -> None:
    a, b = (Client(http, proc) for proc in replicas)
    await a.enable(tools=TOOLS)
    created = await a.settings("POST", "/mcp/keys", json={"label": "ci"})
    assert created["lastUsedAt"] is None
    used = now_ms()
    assert await reason(b, created["apiKey"]) is None

    async def seen_on_a() -> bool:
        keys = {k["label"]: k for k in (await a.settings("GET", "/mcp/keys"))["keys"]}
        return keys["ci"]["lastUsedAt"] is not None

    await until(seen_on_a, timeout_s=5.0, interval_s=0.2)
    keys = {k["label"]: k for k in (await a.settings("GET", "/mcp/keys"))["keys"]}
    assert used - 60_000 <= keys["ci"]["lastUsedAt"] <= now_ms()
    assert keys["default"]["lastUsedAt"] is None
