"""The settings API's routes (docs/settings-api.md) against the live app on both store backends."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import Api
from mcp_stub import StubUpstream, make_tools
from net import closed_url

from settings_api import keys
from settings_api.routes import SERVICE

INLINE_TOOLS = [
    {
        "name": "search_contacts",
        "description": "Find contacts",
        "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
    {"name": "create_contact", "inputSchema": {"type": "object"}},
]
CONFIG_KEYS = {"configId", "upstreamUrl", "upstreamHeaderNames", "tools", "createdAt", "syncedAt"}
SETTINGS_KEYS = {
    "integrationId",
    "enabled",
    "configId",
    "exposedToolIds",
    "description",
    "apiKeyId",
    "callUrl",
    "testUrl",
    "createdAt",
    "modifiedAt",
    "keyPrefix",
    "apiKey",
}


async def serve_stub(aiohttp_server: Any, stub: StubUpstream) -> str:
    """Start `stub` and return its MCP endpoint URL."""
    server = await aiohttp_server(stub.app())
    return str(server.make_url("/mcp"))


async def collect_pages(api: Api, path: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Follow nextCursor from the first page to the last; return the items and the page count."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        _, page = await api.call("GET", path, 200, params=params)
        pages += 1
        assert set(page) == {"items", "nextCursor"}
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["nextCursor"]
        if cursor is None:
            return items, pages
        assert pages < 50, "pagination never ends"


# integrations ---------------------------------------------------------------------------------
async def test_put_creates_then_renames_an_integration(api: Api) -> None:
    status, created = await api.call("PUT", "/crm", json={"name": "CRM"})
    assert status == 201
    assert created["integrationId"] == "crm"
    assert created["name"] == "CRM"
    assert isinstance(created["createdAt"], int) and created["createdAt"] > 1_600_000_000_000
    assert created["modifiedAt"] >= created["createdAt"]

    status, renamed = await api.call("PUT", "/crm", json={"name": "Sales CRM"})
    assert status == 200
    assert renamed["name"] == "Sales CRM"
    assert renamed["createdAt"] == created["createdAt"]
    assert renamed["modifiedAt"] >= created["modifiedAt"]

    _, read = await api.call("GET", "/crm", 200)
    assert read == renamed

    # Putting the same name again is idempotent: still 200, nothing changes.
    _, same = await api.call("PUT", "/crm", 200, json={"name": "Sales CRM"})
    assert same == renamed


async def test_list_integrations_follows_cursors_over_every_item_once(api: Api) -> None:
    names = [f"int-{i}" for i in range(5)]
    for name in reversed(names):
        await api.call("PUT", f"/{name}", 201, json={"name": name.upper()})

    items, pages = await collect_pages(api, "", limit=2)
    assert [i["integrationId"] for i in items] == names  # stable order, no repeats, no gaps
    assert pages == 3
    assert all(i["name"] == i["integrationId"].upper() for i in items)

    _, everything = await api.call("GET", "", 200)
    assert [i["integrationId"] for i in everything["items"]] == names
    assert everything["nextCursor"] is None


async def test_list_integrations_is_empty_for_a_new_tenant(api: Api) -> None:
    _, page = await api.call("GET", "", 200)
    assert page == {"items": [], "nextCursor": None}


async def test_delete_integration_removes_it_and_revokes_its_key(
    api: Api, client: TestClient
) -> None:
    config_id = await api.integration_with_config()
    _, enabled = await api.call(
        "PATCH", "/crm/mcp", 200, json={"enabled": True, "configId": config_id}
    )
    raw_key = enabled["apiKey"]
    service = client.app[SERVICE]
    live = await service.find_key(keys.hash_key(raw_key))
    assert live is not None and live.revoked_at is None

    status, body = await api.call("DELETE", "/crm")
    assert (status, body) == (204, None)

    await api.call("GET", "/crm", 404)
    await api.call("GET", "/crm/mcp", 404)
    await api.call("GET", f"/crm/configs/{config_id}", 404)
    _, page = await api.call("GET", "", 200)
    assert page["items"] == []
    revoked = await service.find_key(keys.hash_key(raw_key))
    # Keys outlive their integration, revoked, so the audit trail can still name them.
    assert revoked is not None and revoked.revoked_at is not None
    assert revoked.key_id == enabled["apiKeyId"]

    # Deleting twice is a 404, and a re-created integration starts from scratch.
    await api.call("DELETE", "/crm", 404)
    await api.call("PUT", "/crm", 201, json={"name": "CRM again"})
    _, fresh = await api.call("GET", "/crm/mcp", 200)
    assert fresh["enabled"] is False
    assert fresh["apiKeyId"] is None
    assert fresh["configId"] is None
    _, configs = await api.call("GET", "/crm/configs", 200)
    assert configs["items"] == []


# configs --------------------------------------------------------------------------------------
async def test_create_config_with_inline_tools(api: Api) -> None:
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    status, config = await api.call("POST", "/crm/configs", json={"tools": INLINE_TOOLS})
    assert status == 201
    assert set(config) == CONFIG_KEYS
    assert config["upstreamUrl"] is None
    assert config["upstreamHeaderNames"] == []
    assert [t["name"] for t in config["tools"]] == ["search_contacts", "create_contact"]
    assert config["tools"][0]["inputSchema"] == INLINE_TOOLS[0]["inputSchema"]
    assert config["tools"][0]["description"] == "Find contacts"
    assert isinstance(config["createdAt"], int)
    assert config["syncedAt"] is None

    _, read = await api.call("GET", f"/crm/configs/{config['configId']}", 200)
    assert read == config


async def test_inline_tool_without_input_schema_gets_an_object_schema(api: Api) -> None:
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    _, config = await api.call("POST", "/crm/configs", 201, json={"tools": [{"name": "ping"}]})
    assert config["tools"] == [{"name": "ping", "inputSchema": {"type": "object"}}]


async def test_config_needs_tools_or_an_upstream(api: Api) -> None:
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    _, problem = await api.call("POST", "/crm/configs", 422, json={})
    assert [e["field"] for e in problem["errors"]] == ["tools"]


async def test_config_from_upstream_reads_every_page_and_sends_the_headers(
    api: Api, aiohttp_server: Any
) -> None:
    secret = "Bearer upstream-token-0123456789"
    stub = StubUpstream(
        tools=make_tools(7),
        page_size=3,
        require_headers={"Authorization": secret, "X-Team": "blue-team-secret"},
    )
    url = await serve_stub(aiohttp_server, stub)
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})

    before = int(time.time() * 1000)
    async with api.client.post(
        api.base + "/crm/configs",
        headers=api.headers,
        json={
            "upstreamUrl": url,
            "upstreamHeaders": {"Authorization": secret, "X-Team": "blue-team-secret"},
        },
    ) as resp:
        raw = await resp.text()
        assert resp.status == 201, raw
    config = json.loads(raw)
    assert set(config) == CONFIG_KEYS
    assert config["upstreamUrl"] == url
    assert config["upstreamHeaderNames"] == ["Authorization", "X-Team"]
    assert [t["name"] for t in config["tools"]] == [f"tool_{i}" for i in range(7)]
    assert config["tools"][0]["inputSchema"]["required"] == ["q"]
    assert config["syncedAt"] is not None and config["syncedAt"] >= before
    assert stub.calls["initialize"] == 1
    assert stub.calls["tools/list"] == 3  # 3 + 3 + 1 tools
    assert all(h.get("Authorization") == secret for h in stub.received_headers)
    assert all(h.get("X-Team") == "blue-team-secret" for h in stub.received_headers)
    # Header values are write-only secrets.
    for secret_part in ("upstream-token-0123456789", "blue-team-secret"):
        assert secret_part not in raw

    for path in (f"/crm/configs/{config['configId']}", "/crm/configs"):
        async with api.client.get(api.base + path, headers=api.headers) as resp:
            text = await resp.text()
            assert resp.status == 200
            assert "upstream-token-0123456789" not in text
            assert "blue-team-secret" not in text
    _, read = await api.call("GET", f"/crm/configs/{config['configId']}", 200)
    assert read == config


async def test_config_from_sse_upstream(api: Api, aiohttp_server: Any) -> None:
    stub = StubUpstream(tools=make_tools(2), sse=True)
    url = await serve_stub(aiohttp_server, stub)
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    _, config = await api.call("POST", "/crm/configs", 201, json={"upstreamUrl": url})
    assert [t["name"] for t in config["tools"]] == ["tool_0", "tool_1"]


async def test_inline_tools_win_over_the_upstream(api: Api, aiohttp_server: Any) -> None:
    stub = StubUpstream(tools=make_tools(3))
    url = await serve_stub(aiohttp_server, stub)
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    _, config = await api.call(
        "POST", "/crm/configs", 201, json={"upstreamUrl": url, "tools": INLINE_TOOLS}
    )
    assert [t["name"] for t in config["tools"]] == ["search_contacts", "create_contact"]
    assert config["upstreamUrl"] == url
    assert sum(stub.calls.values()) == 0


async def _assert_upstream_problem(api: Api, url: str, started: float | None = None) -> dict:
    started = time.monotonic() if started is None else started
    status, problem = await api.call("POST", "/crm/configs", json={"upstreamUrl": url})
    elapsed = time.monotonic() - started
    assert status == 502, problem
    assert problem["status"] == 502
    assert problem["type"].endswith("/upstream-failed")
    assert problem["instance"] == api.base + "/crm/configs"
    assert elapsed < 5, elapsed
    _, configs = await api.call("GET", "/crm/configs", 200)
    assert configs["items"] == []  # nothing half-created
    return problem


async def test_unreachable_upstream_is_a_502_problem(api: Api) -> None:
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    problem = await _assert_upstream_problem(api, closed_url())
    assert "connect" in problem["detail"]


async def test_upstream_http_500_is_a_502_problem(api: Api, aiohttp_server: Any) -> None:
    url = await serve_stub(aiohttp_server, StubUpstream(tools=make_tools(1), mode="http-500"))
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    await _assert_upstream_problem(api, url)


async def test_upstream_garbage_is_a_502_problem(api: Api, aiohttp_server: Any) -> None:
    url = await serve_stub(aiohttp_server, StubUpstream(tools=make_tools(1), mode="garbage"))
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    await _assert_upstream_problem(api, url)


async def test_upstream_jsonrpc_error_is_a_502_problem(api: Api, aiohttp_server: Any) -> None:
    stub = StubUpstream(tools=make_tools(1), mode="jsonrpc-error", fail_on={"tools/list"})
    url = await serve_stub(aiohttp_server, stub)
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    problem = await _assert_upstream_problem(api, url)
    assert problem["reason"] == "jsonrpc-error"


async def test_upstream_repeating_cursor_is_a_502_problem(api: Api, aiohttp_server: Any) -> None:
    stub = StubUpstream(tools=make_tools(3), page_size=1, mode="repeat-cursor")
    url = await serve_stub(aiohttp_server, stub)
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    await _assert_upstream_problem(api, url)
    assert stub.calls["tools/list"] <= 3  # noticed, not looped until the page cap


async def test_upstream_invalid_catalog_is_a_502_problem(api: Api, aiohttp_server: Any) -> None:
    bad = [{"name": "has space", "inputSchema": {"type": "object"}}]
    url = await serve_stub(aiohttp_server, StubUpstream(tools=bad))
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    await _assert_upstream_problem(api, url)


async def test_upstream_numbers_out_of_range_are_a_502_problem(
    api: Api, aiohttp_server: Any
) -> None:
    # 1e999 is valid JSON syntax but no double: it would come back out as "Infinity".
    async def handle(request: web.Request) -> web.Response:
        message = await request.json()
        if "id" not in message:
            return web.Response(status=202)
        if message["method"] == "initialize":
            result = (
                '{"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, '
                '"serverInfo": {"name": "x", "version": "1"}}'
            )
        else:
            result = (
                '{"tools": [{"name": "t", "inputSchema": {"type": "object", "maximum": 1e999}}]}'
            )
        return web.Response(
            text=f'{{"jsonrpc": "2.0", "id": {message["id"]}, "result": {result}}}',
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_post("/mcp", handle)
    url = str((await aiohttp_server(app)).make_url("/mcp"))
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    await _assert_upstream_problem(api, url)


@pytest.mark.slow  # waits out the upstream timeout
async def test_slow_upstream_is_a_502_problem_within_the_timeout(
    api: Api, aiohttp_server: Any
) -> None:
    # The settings fixture sets MCPGW_UPSTREAM_TIMEOUT_S=3.
    stub = StubUpstream(tools=make_tools(1), mode="slow", delay_s=8)
    url = await serve_stub(aiohttp_server, stub)
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    started = time.monotonic()
    problem = await _assert_upstream_problem(api, url, started)
    assert time.monotonic() - started >= 2.5
    assert "timeout" in problem["detail"]


async def test_config_for_unknown_integration_never_reaches_the_upstream(
    api: Api, aiohttp_server: Any
) -> None:
    stub = StubUpstream(tools=make_tools(1))
    url = await serve_stub(aiohttp_server, stub)
    await api.call("POST", "/nope/configs", 404, json={"upstreamUrl": url})
    assert sum(stub.calls.values()) == 0


async def test_sync_tools_rereads_the_upstream_catalog(api: Api, aiohttp_server: Any) -> None:
    stub = StubUpstream(
        tools=make_tools(2), page_size=1, require_headers={"X-Api-Token": "sync-secret-1234"}
    )
    url = await serve_stub(aiohttp_server, stub)
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    _, config = await api.call(
        "POST",
        "/crm/configs",
        201,
        json={"upstreamUrl": url, "upstreamHeaders": {"X-Api-Token": "sync-secret-1234"}},
    )
    assert [t["name"] for t in config["tools"]] == ["tool_0", "tool_1"]

    stub.tools = make_tools(3, prefix="fresh")
    status, synced = await api.call("POST", f"/crm/configs/{config['configId']}:syncTools")
    assert status == 200, synced
    assert [t["name"] for t in synced["tools"]] == ["fresh_0", "fresh_1", "fresh_2"]
    assert synced["configId"] == config["configId"]
    assert synced["createdAt"] == config["createdAt"]
    assert synced["upstreamHeaderNames"] == ["X-Api-Token"]
    assert synced["syncedAt"] >= config["syncedAt"]
    assert stub.calls["initialize"] == 2  # the stored header was sent again (else 401 → 502)

    _, read = await api.call("GET", f"/crm/configs/{config['configId']}", 200)
    assert read == synced

    # A failing upstream leaves the stored catalog as it was.
    stub.mode = "http-500"
    await api.call("POST", f"/crm/configs/{config['configId']}:syncTools", 502)
    _, still = await api.call("GET", f"/crm/configs/{config['configId']}", 200)
    assert still == synced


async def test_sync_tools_of_an_inline_config_is_a_conflict(api: Api) -> None:
    config_id = await api.integration_with_config()
    _, problem = await api.call("POST", f"/crm/configs/{config_id}:syncTools", 409)
    assert problem["status"] == 409
    await api.call("POST", "/crm/configs/no-such-config:syncTools", 404)


async def test_list_and_get_configs(api: Api) -> None:
    first = await api.integration_with_config()
    ids = [first]
    for i in range(2):
        _, config = await api.call("POST", "/crm/configs", 201, json={"tools": [{"name": f"t{i}"}]})
        ids.append(config["configId"])
    await api.call("PUT", "/other", 201, json={"name": "Other"})
    _, foreign = await api.call("POST", "/other/configs", 201, json={"tools": [{"name": "x"}]})

    items, pages = await collect_pages(api, "/crm/configs", limit=2)
    assert sorted(c["configId"] for c in items) == sorted(ids)
    assert pages == 2
    assert all(set(c) == CONFIG_KEYS for c in items)

    for config in items:
        _, read = await api.call("GET", f"/crm/configs/{config['configId']}", 200)
        assert read == config
    # A config is only reachable under its own integration.
    await api.call("GET", f"/crm/configs/{foreign['configId']}", 404)
    await api.call("GET", "/crm/configs/does-not-exist", 404)
    await api.call("GET", "/nope/configs", 404)


# MCP settings ---------------------------------------------------------------------------------
async def test_mcp_settings_start_disabled_with_urls_from_the_public_url(api: Api) -> None:
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    _, s = await api.call("GET", "/crm/mcp", 200)
    assert set(s) == SETTINGS_KEYS
    assert s["integrationId"] == "crm"
    assert s["enabled"] is False
    assert s["configId"] is None
    assert s["exposedToolIds"] == []
    assert s["description"] is None
    assert s["apiKeyId"] is None
    assert s["keyPrefix"] is None
    assert s["apiKey"] is None
    assert s["callUrl"] == "http://gw.test:8080/v1/tenants/acme/integrations/crm/mcp:call"
    assert s["testUrl"] == "http://gw.test:8080/v1/tenants/acme/integrations/crm/mcp:test"
    assert isinstance(s["createdAt"], int) and isinstance(s["modifiedAt"], int)


async def test_patch_keeps_absent_and_null_fields(api: Api) -> None:
    config_id = await api.integration_with_config()
    _, s = await api.call("PATCH", "/crm/mcp", 200, json={"configId": config_id})
    assert s["configId"] == config_id and s["enabled"] is False

    _, s = await api.call("PATCH", "/crm/mcp", 200, json={"exposedToolIds": ["search_contacts"]})
    assert s["configId"] == config_id
    assert s["exposedToolIds"] == ["search_contacts"]

    _, s = await api.call("PATCH", "/crm/mcp", 200, json={"description": "Use for contacts"})
    assert (s["configId"], s["exposedToolIds"]) == (config_id, ["search_contacts"])
    assert s["description"] == "Use for contacts"

    expected = {k: v for k, v in s.items() if k != "modifiedAt"}
    for body in (
        {},
        {"enabled": None, "configId": None, "exposedToolIds": None, "description": None},
    ):
        _, kept = await api.call("PATCH", "/crm/mcp", 200, json=body)
        assert {k: v for k, v in kept.items() if k != "modifiedAt"} == expected
    _, read = await api.call("GET", "/crm/mcp", 200)
    assert {k: v for k, v in read.items() if k != "modifiedAt"} == expected

    # An empty list is a value, not "absent": it un-exposes everything.
    _, s = await api.call("PATCH", "/crm/mcp", 200, json={"exposedToolIds": []})
    assert s["exposedToolIds"] == []
    assert s["description"] == "Use for contacts"


async def test_description_round_trips(api: Api) -> None:
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    text = 'Use these tools for the CRM.\nÜnïcødé, emoji 😀 and "quotes" survive.'
    _, s = await api.call("PATCH", "/crm/mcp", 200, json={"description": text})
    assert s["description"] == text
    _, read = await api.call("GET", "/crm/mcp", 200)
    assert read["description"] == text


async def test_patch_config_id_must_belong_to_this_integration(api: Api) -> None:
    await api.integration_with_config("crm")
    foreign = await api.integration_with_config("billing")
    _, problem = await api.call("PATCH", "/crm/mcp", 422, json={"configId": foreign})
    assert [e["field"] for e in problem["errors"]] == ["configId"]
    _, problem = await api.call("PATCH", "/crm/mcp", 422, json={"configId": "no-such-config"})
    assert [e["field"] for e in problem["errors"]] == ["configId"]
    _, s = await api.call("GET", "/crm/mcp", 200)
    assert s["configId"] is None


async def test_patch_unknown_exposed_tools_are_listed(api: Api) -> None:
    config_id = await api.integration_with_config()
    _, problem = await api.call(
        "PATCH",
        "/crm/mcp",
        422,
        json={
            "configId": config_id,
            "exposedToolIds": ["search_contacts", "drop_database", "send_spam"],
        },
    )
    assert problem["type"].endswith("/validation-failed")
    fields = {e["field"]: e["message"] for e in problem["errors"]}
    assert set(fields) == {"exposedToolIds"}
    assert "drop_database" in fields["exposedToolIds"]
    assert "send_spam" in fields["exposedToolIds"]
    assert "search_contacts" not in fields["exposedToolIds"]
    assert "drop_database" in problem["detail"]
    _, s = await api.call("GET", "/crm/mcp", 200)
    assert (s["configId"], s["exposedToolIds"]) == (None, [])  # nothing applied


async def test_exposed_tools_need_a_bound_config(api: Api) -> None:
    await api.integration_with_config()
    _, problem = await api.call(
        "PATCH", "/crm/mcp", 422, json={"exposedToolIds": ["search_contacts"]}
    )
    assert [e["field"] for e in problem["errors"]] == ["exposedToolIds"]


async def test_rebinding_a_config_checks_the_exposed_tools_against_it(api: Api) -> None:
    first = await api.integration_with_config()
    _, second = await api.call(
        "POST", "/crm/configs", 201, json={"tools": [{"name": "other_tool"}]}
    )
    await api.call(
        "PATCH", "/crm/mcp", 200, json={"configId": first, "exposedToolIds": ["search_contacts"]}
    )
    _, problem = await api.call("PATCH", "/crm/mcp", 422, json={"configId": second["configId"]})
    assert [e["field"] for e in problem["errors"]] == ["exposedToolIds"]
    assert "search_contacts" in problem["errors"][0]["message"]
    _, s = await api.call(
        "PATCH",
        "/crm/mcp",
        200,
        json={"configId": second["configId"], "exposedToolIds": ["other_tool"]},
    )
    assert (s["configId"], s["exposedToolIds"]) == (second["configId"], ["other_tool"])


async def test_enabling_needs_a_bound_config(api: Api) -> None:
    await api.integration_with_config()
    _, problem = await api.call("PATCH", "/crm/mcp", 422, json={"enabled": True})
    assert [e["field"] for e in problem["errors"]] == ["enabled"]
    _, s = await api.call("GET", "/crm/mcp", 200)
    assert s["enabled"] is False and s["apiKeyId"] is None


async def test_key_lifecycle_enable_disable_reenable(api: Api, client: TestClient) -> None:
    config_id = await api.integration_with_config()
    _, s = await api.call(
        "PATCH",
        "/crm/mcp",
        200,
        json={"enabled": True, "configId": config_id, "exposedToolIds": ["search_contacts"]},
    )
    raw = s["apiKey"]
    assert isinstance(raw, str) and raw.startswith("mcpk_") and len(raw) == 43
    keys.check_format(raw)
    assert s["keyPrefix"] == raw[:12]
    assert s["enabled"] is True
    key_id = s["apiKeyId"]
    assert key_id

    binding = await client.app[SERVICE].find_key(keys.hash_key(raw))
    assert binding is not None
    assert (binding.tenant_id, binding.integration_id, binding.key_id) == ("acme", "crm", key_id)
    assert binding.scope == "mcp:invoke"
    assert binding.revoked_at is None

    _, read = await api.call("GET", "/crm/mcp", 200)
    assert read["apiKey"] is None
    assert (read["apiKeyId"], read["keyPrefix"], read["enabled"]) == (key_id, raw[:12], True)

    # Another PATCH while enabled mints nothing.
    _, again = await api.call("PATCH", "/crm/mcp", 200, json={"enabled": True})
    assert again["apiKey"] is None and again["apiKeyId"] == key_id

    _, off = await api.call("PATCH", "/crm/mcp", 200, json={"enabled": False})
    assert off["enabled"] is False
    assert off["apiKeyId"] == key_id and off["apiKey"] is None
    kept = await client.app[SERVICE].find_key(keys.hash_key(raw))
    assert kept is not None and kept.revoked_at is None

    _, on = await api.call("PATCH", "/crm/mcp", 200, json={"enabled": True})
    assert on["enabled"] is True
    assert on["apiKey"] is None
    assert on["apiKeyId"] == key_id
    assert on["keyPrefix"] == raw[:12]


async def test_rotate_key_mints_a_new_key_and_revokes_the_old(api: Api, client: TestClient) -> None:
    config_id = await api.integration_with_config()
    _, first = await api.call(
        "PATCH", "/crm/mcp", 200, json={"enabled": True, "configId": config_id}
    )
    status, rotated = await api.call("POST", "/crm/mcp:rotateKey")
    assert status == 200, rotated
    assert set(rotated) == SETTINGS_KEYS
    new = rotated["apiKey"]
    assert new and new != first["apiKey"]
    keys.check_format(new)
    assert rotated["apiKeyId"] != first["apiKeyId"]
    assert rotated["keyPrefix"] == new[:12]
    assert rotated["enabled"] is True and rotated["configId"] == config_id

    service = client.app[SERVICE]
    old_binding = await service.find_key(keys.hash_key(first["apiKey"]))
    assert old_binding is not None and old_binding.revoked_at is not None
    new_binding = await service.find_key(keys.hash_key(new))
    assert new_binding is not None and new_binding.revoked_at is None
    assert new_binding.key_id == rotated["apiKeyId"]

    _, read = await api.call("GET", "/crm/mcp", 200)
    assert read["apiKey"] is None
    assert read["apiKeyId"] == rotated["apiKeyId"]
    assert read["keyPrefix"] == new[:12]
    await api.call("POST", "/nope/mcp:rotateKey", 404)


# audit ----------------------------------------------------------------------------------------
async def test_audit_records_every_mutation_newest_first_without_secrets(
    client: TestClient,
    auth: Callable[..., dict[str, str]],
    token: Callable[..., str],
    aiohttp_server: Any,
) -> None:
    jwt_token = token("acme", subject="alice@example.com")
    api = Api(client, {"Authorization": f"Bearer {jwt_token}"})
    header_secret = "Bearer audit-upstream-secret-987"
    stub = StubUpstream(tools=make_tools(2), require_headers={"Authorization": header_secret})
    url = await serve_stub(aiohttp_server, stub)

    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    await api.call("PUT", "/crm", 200, json={"name": "Sales CRM"})
    _, config = await api.call(
        "POST",
        "/crm/configs",
        201,
        json={"upstreamUrl": url, "upstreamHeaders": {"Authorization": header_secret}},
    )
    await api.call("POST", f"/crm/configs/{config['configId']}:syncTools", 200)
    _, enabled = await api.call(
        "PATCH",
        "/crm/mcp",
        200,
        json={"enabled": True, "configId": config["configId"], "exposedToolIds": ["tool_0"]},
    )
    _, rotated = await api.call("POST", "/crm/mcp:rotateKey", 200)
    await api.call("DELETE", "/crm", 204)
    # A failed mutation changes nothing and so records nothing.
    await api.call("PATCH", "/nope/mcp", 404, json={"description": "x"})

    expected = [
        "integration.created",
        "integration.renamed",
        "config.created",
        "config.synced",
        "mcp.updated",
        "mcp.key_rotated",
        "integration.deleted",
    ]
    async with client.get("/v1/tenants/acme/audit", headers=api.headers) as resp:
        raw = await resp.text()
        assert resp.status == 200, raw
    page = json.loads(raw)
    events = page["items"]
    assert page["nextCursor"] is None
    assert [e["action"] for e in events] == list(reversed(expected))
    assert all(e["actor"] == "alice@example.com" for e in events)
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)
    assert len({e["eventId"] for e in events}) == len(events)
    targets = {e["action"]: e["target"] for e in events}
    assert targets["integration.created"] == "crm"
    assert config["configId"] in targets["config.created"]
    by_action = {e["action"]: e["details"] for e in events}
    assert by_action["mcp.updated"]["keyMinted"] is True
    assert by_action["mcp.key_rotated"]["revokedKeyIds"] == [enabled["apiKeyId"]]
    assert by_action["integration.deleted"]["revokedKeyIds"] == [rotated["apiKeyId"]]
    assert by_action["config.created"]["upstreamHeaderNames"] == ["Authorization"]

    for secret in (
        enabled["apiKey"],
        rotated["apiKey"],
        "audit-upstream-secret-987",
        jwt_token,
        jwt_token.split(".")[2],
    ):
        assert secret not in raw

    # Cursor pagination over the same events.
    audit = Api(client, api.headers)
    audit.base = "/v1/tenants/acme"
    paged, pages = await collect_pages(audit, "/audit", limit=2)
    assert [e["eventId"] for e in paged] == [e["eventId"] for e in events]
    assert pages == 4


async def test_audit_is_per_tenant(client: TestClient, auth: Callable[..., dict[str, str]]) -> None:
    acme = Api(client, auth("acme"))
    other = Api(client, auth("other"), tenant="other")
    await acme.call("PUT", "/crm", 201, json={"name": "CRM"})
    await other.call("PUT", "/crm", 201, json={"name": "Other CRM"})
    for tenant, name in (("acme", "CRM"), ("other", "Other CRM")):
        async with client.get(f"/v1/tenants/{tenant}/audit", headers=auth(tenant)) as resp:
            page = await resp.json()
        assert [(e["action"], e["details"]["name"]) for e in page["items"]] == [
            ("integration.created", name)
        ]


# probes ---------------------------------------------------------------------------------------
async def test_healthz_answers_without_auth(client: TestClient) -> None:
    async with client.get("/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"


async def test_readyz_reports_the_store(client: TestClient) -> None:
    async with client.get("/readyz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["checks"]["store"] == "ok"
    assert "redis" not in body["checks"]  # not configured
