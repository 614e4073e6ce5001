"""Keys per integration (docs/settings-api.md, "API keys"): labelled keys beside the default
one, with an expiry and a narrowing to some tools, listed without their secret, deleted; the
default key's rotation with a grace period. Against the whole app on both store backends;
tests/test_api_keys_replicas.py runs the cross-replica rules against live processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from conftest import Api, make_settings
from mcp_helpers import modern
from polling import until
from prometheus_client import REGISTRY

from gateway.server import build_app
from settings_api.routes import SERVICE
from settings_api.use_cases.store_access import now_ms

PUBLIC = "http://gw.test:8080"
BASE = "/v1/tenants/acme/integrations"
CALL = f"{BASE}/crm/mcp:call"
TEST = f"{BASE}/crm/mcp:test"
TOOLS = [
    {"name": "search_contacts", "inputSchema": {"type": "object"}},
    {"name": "create_contact", "inputSchema": {"type": "object"}},
    {"name": "delete_contact", "inputSchema": {"type": "object"}},
]
# delete_contact is in the catalog but not exposed.
EXPOSED = ["search_contacts", "create_contact"]
KEY_FIELDS = {"apiKeyId", "label", "keyPrefix", "createdAt", "expiresAt", "toolIds", "lastUsedAt"}


async def rpc(
    client: TestClient, key: str, method: str, params: dict[str, Any] | None = None, url: str = TEST
) -> tuple[int, Any]:
    """One stateless (2026-07-28) request."""
    resp, body = await modern(client, method, params, url=url, key=key)
    return resp.status, body


async def tool_names(client: TestClient, key: str, url: str = TEST) -> list[str]:
    status, body = await rpc(client, key, "tools/list", url=url)
    assert status == 200, body
    return [tool["name"] for tool in body["result"]["tools"]]


async def call_tool(client: TestClient, key: str, name: str) -> Any:
    # 2026-07-28 answers a JSON-RPC error with its HTTP status (400 for -32602).
    status, body = await rpc(client, key, "tools/call", {"name": name, "arguments": {}})
    assert status in (200, 400), body
    return body


async def refused_reason(client: TestClient, key: str, url: str = TEST) -> str | None:
    status, body = await rpc(client, key, "tools/list", url=url)
    assert status in (200, 401), body
    return body.get("reason") if status == 401 else None


async def enabled(api: Api) -> str:
    """The integration, enabled with EXPOSED; its default key."""
    return await api.enabled_key(TOOLS, exposed=EXPOSED)


async def create_key(api: Api, expect: int = 201, **body: Any) -> tuple[int, Any]:
    return await api.call("POST", "/crm/mcp/keys", expect, json=body)


async def list_keys(api: Api) -> list[dict[str, Any]]:
    _, body = await api.call("GET", "/crm/mcp/keys", 200)
    return body["keys"]  # type: ignore[no-any-return]


def metric(reason: str) -> float:
    return REGISTRY.get_sample_value("mcpgw_auth_failures_total", {"reason": reason}) or 0.0


# --- create, list, delete ----------------------------------------------------------------------


async def test_a_created_key_is_shown_once_and_listed_beside_the_default_one(
    client: TestClient, api: Api
) -> None:
    default_key = await enabled(api)
    _, settings = await api.call("GET", "/crm/mcp", 200)
    _, created = await create_key(api, label="CI job", expiresAt=None, toolIds=["search_contacts"])
    assert set(created) == KEY_FIELDS | {"apiKey"}
    assert created["label"] == "CI job" and created["toolIds"] == ["search_contacts"]
    assert created["expiresAt"] is None and created["lastUsedAt"] is None
    assert created["keyPrefix"] == created["apiKey"][:12]
    assert created["apiKey"] != default_key

    listed = await list_keys(api)
    assert [k["label"] for k in listed] == ["default", "CI job"]
    assert all(set(k) == KEY_FIELDS for k in listed)  # never the raw key
    assert listed[0]["apiKeyId"] == settings["apiKeyId"]
    assert listed[0]["keyPrefix"] == settings["keyPrefix"]
    assert listed[0]["toolIds"] is None
    assert listed[1] == {k: v for k, v in created.items() if k != "apiKey"}
    # Both keys open both URLs.
    for key in (default_key, created["apiKey"]):
        for url in (CALL, TEST):
            status, body = await rpc(client, key, "tools/list", url=url)
            assert status == 200, body


async def test_deleting_a_key_stops_it_on_both_urls_and_leaves_the_others(
    client: TestClient, api: Api
) -> None:
    default_key = await enabled(api)
    _, doomed = await create_key(api, label="laptop")
    _, kept = await create_key(api, label="teammate")
    assert await refused_reason(client, doomed["apiKey"]) is None
    await api.call("DELETE", f"/crm/mcp/keys/{doomed['apiKeyId']}", 204)
    for url in (CALL, TEST):
        assert await refused_reason(client, doomed["apiKey"], url) == "revoked"
        assert await refused_reason(client, kept["apiKey"], url) is None
        assert await refused_reason(client, default_key, url) is None
    assert [k["label"] for k in await list_keys(api)] == ["default", "teammate"]
    await api.call("DELETE", f"/crm/mcp/keys/{doomed['apiKeyId']}", 404)  # already gone


async def test_deleting_the_default_key_leaves_the_settings_without_one_until_rotation(
    client: TestClient, api: Api
) -> None:
    default_key = await enabled(api)
    _, settings = await api.call("GET", "/crm/mcp", 200)
    await api.call("DELETE", f"/crm/mcp/keys/{settings['apiKeyId']}", 204)
    assert await refused_reason(client, default_key) == "revoked"
    _, settings = await api.call("GET", "/crm/mcp", 200)
    assert settings["apiKeyId"] is None and settings["keyPrefix"] is None
    assert await list_keys(api) == []
    _, rotated = await api.call("POST", "/crm/mcp:rotateKey", 200)
    assert await refused_reason(client, rotated["apiKey"]) is None
    assert [k["apiKeyId"] for k in await list_keys(api)] == [rotated["apiKeyId"]]


BAD_BODIES = {
    "empty-label": ({"label": ""}, "label"),
    "long-label": ({"label": "x" * 65}, "label"),
    "control-label": ({"label": "a\nb"}, "label"),
    "reserved-label": ({"label": "default"}, "label"),
    "label-missing": ({}, "label"),
    "unknown-tool": ({"label": "ci", "toolIds": ["search_contacts", "drop_db"]}, "toolIds"),
    "empty-tools": ({"label": "ci", "toolIds": []}, "toolIds"),
    "unknown-field": ({"label": "ci", "scope": "admin"}, "scope"),
    "float-expiry": ({"label": "ci", "expiresAt": 1.5}, "expiresAt"),
    "string-expiry": ({"label": "ci", "expiresAt": "tomorrow"}, "expiresAt"),
}


@pytest.mark.parametrize(("body", "field"), list(BAD_BODIES.values()), ids=list(BAD_BODIES))
async def test_bad_key_requests_are_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    await enabled(api)
    _, problem = await create_key(api, 422, **body)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert [k["label"] for k in await list_keys(api)] == ["default"]


async def test_a_label_that_is_not_default_may_have_any_printable_text(api: Api) -> None:
    await enabled(api)
    _, created = await create_key(api, label="Ada's laptop — ünïcode " + "x" * 40)
    assert created["label"].startswith("Ada's laptop")


async def test_unknown_keys_integrations_and_other_tenants(
    api: Api, client: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    await enabled(api)
    _, created = await create_key(api, label="ci")
    await api.call("DELETE", "/crm/mcp/keys/00000000-0000-4000-8000-000000000000", 404)
    await api.call("DELETE", "/crm/mcp/keys/not a key id", 404)
    await api.call("GET", "/nope/mcp/keys", 404)
    await api.call("POST", "/nope/mcp/keys", 404, json={"label": "ci"})
    other = Api(client, auth("globex"), tenant="acme")  # globex's token on acme's paths
    await other.call("GET", "/crm/mcp/keys", 403)
    await other.call("POST", "/crm/mcp/keys", 403, json={"label": "x"})
    await other.call("DELETE", f"/crm/mcp/keys/{created['apiKeyId']}", 403)
    await other.call("POST", "/crm/mcp:rotateKey", 403, json={"gracePeriodSeconds": 5})
    # globex's own integration of the same name does not hold acme's key.
    globex = Api(client, auth("globex"), tenant="globex")
    await globex.enabled_key(TOOLS)
    await globex.call("DELETE", f"/crm/mcp/keys/{created['apiKeyId']}", 404)
    assert len(await list_keys(api)) == 2


async def test_every_key_change_is_audited_without_the_raw_key(api: Api) -> None:
    default_key = await enabled(api)
    _, created = await create_key(api, label="ci", toolIds=["create_contact"], expiresAt=10**13)
    await api.call("DELETE", f"/crm/mcp/keys/{created['apiKeyId']}", 204)
    _, rotated = await api.call("POST", "/crm/mcp:rotateKey", 200, json={"gracePeriodSeconds": 30})
    async with api.client.get("/v1/tenants/acme/audit", headers=api.headers) as resp:
        events = (await resp.json())["items"]
    text = json.dumps(events)
    for raw in (default_key, created["apiKey"], rotated["apiKey"]):
        assert raw not in text
    by_action = {e["action"]: e["details"] for e in events}
    assert by_action["mcp.key_created"] == {
        "apiKeyId": created["apiKeyId"],
        "label": "ci",
        "keyPrefix": created["keyPrefix"],
        "expiresAt": 10**13,
        "toolIds": ["create_contact"],
    }
    assert by_action["mcp.key_deleted"] == {
        "apiKeyId": created["apiKeyId"],
        "label": "ci",
        "keyPrefix": created["keyPrefix"],
    }
    assert by_action["mcp.key_rotated"]["apiKeyId"] == rotated["apiKeyId"]
    assert by_action["mcp.key_rotated"]["gracePeriodSeconds"] == 30


# --- toolIds narrowing ---------------------------------------------------------------------------


async def test_a_narrowed_key_sees_the_intersection_and_other_tools_are_unknown(
    client: TestClient, api: Api
) -> None:
    default_key = await enabled(api)
    # delete_contact is in the catalog but not exposed: the intersection leaves it out.
    _, narrowed = await create_key(api, label="ci", toolIds=["delete_contact", "create_contact"])
    key = narrowed["apiKey"]
    for url in (CALL, TEST):
        assert await tool_names(client, key, url) == ["create_contact"]
        assert await tool_names(client, default_key, url) == EXPOSED

    allowed = await call_tool(client, key, "create_contact")
    assert allowed["result"]["isError"] is False
    outside_key = await call_tool(client, key, "search_contacts")
    unexposed = await call_tool(client, default_key, "delete_contact")
    # Exactly as for an unexposed tool.
    assert outside_key["error"] == {"code": -32602, "message": "Unknown tool: search_contacts"}
    assert unexposed["error"] == {"code": -32602, "message": "Unknown tool: delete_contact"}

    async def logged() -> list[tuple[str, str, str]]:
        _, page = await api.call("GET", "/crm/mcp/calls", 200)
        return [(c["apiKeyId"], c["tool"], c["outcome"]) for c in page["calls"]]

    _, settings = await api.call("GET", "/crm/mcp", 200)
    expected = [
        (settings["apiKeyId"], "delete_contact", "denied"),
        (narrowed["apiKeyId"], "search_contacts", "denied"),
        (narrowed["apiKeyId"], "create_contact", "ok"),
    ]
    await until(lambda: _equals(logged, expected), timeout_s=5.0, interval_s=0.1)


async def _equals(read: Callable[[], Any], expected: Any) -> bool:
    return bool(await read() == expected)


async def test_narrowing_follows_later_changes_of_the_exposed_tools(
    client: TestClient, api: Api
) -> None:
    await enabled(api)
    _, narrowed = await create_key(api, label="ci", toolIds=["delete_contact", "create_contact"])
    await api.call(
        "PATCH", "/crm/mcp", 200, json={"exposedToolIds": ["delete_contact", "search_contacts"]}
    )
    assert await tool_names(client, narrowed["apiKey"]) == ["delete_contact"]


async def test_oauth_tokens_inherit_their_keys_narrowing_and_end_with_it(
    client: TestClient, api: Api
) -> None:
    await enabled(api)
    _, narrowed = await create_key(api, label="ci", toolIds=["create_contact"])
    pair = await client.app[SERVICE].issue_oauth_tokens(
        narrowed["apiKey"], "client-1", PUBLIC + TEST
    )
    assert await tool_names(client, pair.access_token) == ["create_contact"]
    outside = await call_tool(client, pair.access_token, "search_contacts")
    assert outside["error"]["code"] == -32602
    await api.call("DELETE", f"/crm/mcp/keys/{narrowed['apiKeyId']}", 204)
    assert await refused_reason(client, pair.access_token) == "revoked"
    with pytest.raises(InvalidGrantError):
        await client.app[SERVICE].oauth.refresh("client-1", pair.refresh_token, None)


# --- expiry ------------------------------------------------------------------------------------


async def test_a_key_born_expired_is_401_expired_and_counted(client: TestClient, api: Api) -> None:
    await enabled(api)
    _, created = await create_key(api, label="old", expiresAt=now_ms() - 60_000)
    assert created["expiresAt"] < now_ms()
    before = metric("expired")
    for url in (CALL, TEST):
        status, body = await rpc(client, created["apiKey"], "tools/list", url=url)
        assert status == 401 and body["reason"] == "expired", body
        assert body["detail"] == "this API key expired"
    assert metric("expired") == before + 2
    # Listed until deleted, so it can be seen and cleaned up.
    assert [k["label"] for k in await list_keys(api)] == ["default", "old"]


async def test_a_key_stops_when_its_expiry_is_reached(client: TestClient, api: Api) -> None:
    await enabled(api)
    _, created = await create_key(api, label="short", expiresAt=now_ms() + 1500)
    assert await refused_reason(client, created["apiKey"]) is None  # cached from here on
    pair = await client.app[SERVICE].issue_oauth_tokens(created["apiKey"], "c", PUBLIC + TEST)

    async def expired() -> bool:
        return await refused_reason(client, created["apiKey"]) == "expired"

    await until(expired, timeout_s=5.0, interval_s=0.1)
    assert await refused_reason(client, pair.access_token) == "expired"


# --- rotation with a grace period ----------------------------------------------------------------


async def test_rotation_with_a_grace_period_keeps_the_old_key_until_it_ends(
    client: TestClient, api: Api
) -> None:
    old_key = await enabled(api)
    _, other = await create_key(api, label="ci")
    pair = await client.app[SERVICE].issue_oauth_tokens(old_key, "c", PUBLIC + TEST)
    started = now_ms()
    _, rotated = await api.call("POST", "/crm/mcp:rotateKey", 200, json={"gracePeriodSeconds": 2})
    assert set(rotated) >= {"apiKey", "apiKeyId", "keyPrefix", "callUrl", "testUrl", "enabled"}
    # The old key's grant can still be refreshed during the grace; the new pair follows it too.
    pair = await client.app[SERVICE].oauth.refresh("c", pair.refresh_token, None)
    for key in (old_key, rotated["apiKey"], other["apiKey"], pair.access_token):
        assert await refused_reason(client, key) is None
    listed = {k["apiKeyId"]: k for k in await list_keys(api)}
    graced = [k for k in listed.values() if k["label"] == "default" and k["expiresAt"]]
    assert len(graced) == 1 and started + 2000 <= graced[0]["expiresAt"] <= now_ms() + 2000

    async def old_key_ended() -> bool:
        return await refused_reason(client, old_key) == "revoked"

    await until(old_key_ended, timeout_s=5.0, interval_s=0.1)
    assert now_ms() >= started + 2000
    assert await refused_reason(client, pair.access_token) == "revoked"  # it followed its key
    for key in (rotated["apiKey"], other["apiKey"]):
        assert await refused_reason(client, key) is None
    assert {k["label"] for k in await list_keys(api)} == {"default", "ci"}
    assert len(await list_keys(api)) == 2


async def test_rotation_without_a_body_or_with_zero_grace_ends_the_old_key_at_once(
    client: TestClient, api: Api
) -> None:
    first = await enabled(api)
    _, second = await api.call("POST", "/crm/mcp:rotateKey", 200)
    assert await refused_reason(client, first) == "revoked"
    _, third = await api.call("POST", "/crm/mcp:rotateKey", 200, json={"gracePeriodSeconds": 0})
    assert await refused_reason(client, second["apiKey"]) == "revoked"
    assert await refused_reason(client, third["apiKey"]) is None


async def test_a_second_rotation_cuts_a_running_grace_short(client: TestClient, api: Api) -> None:
    first = await enabled(api)
    await api.call("POST", "/crm/mcp:rotateKey", 200, json={"gracePeriodSeconds": 3600})
    assert await refused_reason(client, first) is None
    await api.call("POST", "/crm/mcp:rotateKey", 200, json={})
    assert await refused_reason(client, first) == "revoked"


BAD_GRACE = {
    "negative": {"gracePeriodSeconds": -1},
    "over-a-day": {"gracePeriodSeconds": 86401},
    "fraction": {"gracePeriodSeconds": 1.5},
    "whole-float": {"gracePeriodSeconds": 5.0},
    "string": {"gracePeriodSeconds": "10"},
    "null": {"gracePeriodSeconds": None},
    "unknown-field": {"gracePeriod": 10},
}


@pytest.mark.parametrize("body", list(BAD_GRACE.values()), ids=list(BAD_GRACE))
async def test_a_bad_grace_period_is_422_and_rotates_nothing(
    client: TestClient, api: Api, body: dict[str, Any]
) -> None:
    key = await enabled(api)
    _, before = await api.call("GET", "/crm/mcp", 200)
    _, problem = await api.call("POST", "/crm/mcp:rotateKey", 422, json=body)
    assert problem["errors"][0]["field"] == next(iter(body)), problem
    _, after = await api.call("GET", "/crm/mcp", 200)
    assert after["apiKeyId"] == before["apiKeyId"]
    assert await refused_reason(client, key) is None


# --- lastUsedAt and limits -----------------------------------------------------------------------


async def test_last_used_at_appears_within_five_seconds_of_the_first_use(
    client: TestClient, api: Api
) -> None:
    await enabled(api)
    _, created = await create_key(api, label="ci")
    await asyncio.sleep(0)
    assert await refused_reason(client, created["apiKey"]) is None
    used = now_ms()

    async def seen() -> bool:
        found = {k["label"]: k for k in await list_keys(api)}
        return found["ci"]["lastUsedAt"] is not None and found["default"]["lastUsedAt"] is None

    await until(seen, timeout_s=5.0, interval_s=0.2)
    stamp = {k["label"]: k for k in await list_keys(api)}["ci"]["lastUsedAt"]
    assert used - 60_000 <= stamp <= now_ms()


@pytest.fixture
async def limited(
    aiohttp_client: Any, tmp_path: Path, database_url: str, auth: Callable[..., dict[str, str]]
) -> tuple[TestClient, Api]:
    settings = make_settings(
        tmp_path, database_url, MCPGW_REQUEST_LIMIT_BURST="3", MCPGW_REQUEST_LIMIT_RPS="0.01"
    )
    client = await aiohttp_client(build_app(settings))
    return client, Api(client, auth("acme"))


async def test_each_key_has_its_own_buckets(limited: tuple[TestClient, Api]) -> None:
    client, api = limited
    default_key = await enabled(api)
    _, created = await create_key(api, label="ci")
    for _ in range(3):
        _, body = await rpc(client, default_key, "tools/list")
        assert "result" in body, body
    _, body = await rpc(client, default_key, "tools/list")
    assert "rate limit" in body["error"]["message"].lower(), body
    # The other key's bucket is untouched.
    for _ in range(3):
        _, body = await rpc(client, created["apiKey"], "tools/list")
        assert "result" in body, body
