"""The MCP endpoints as an OAuth resource server (docs/mcp-endpoints.md, "OAuth"): the
protected resource metadata of each integration URL, and access tokens accepted wherever the
integration's key is, refused everywhere else, and ended with their key.

Tokens are minted through the service (the consent page's checks, the token endpoint's
issuing), so these tests need no browser; tests/test_oauth_e2e.py runs the whole flow."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import Api, make_settings
from polling import until

from gateway.server import build_app
from settings_api.routes import SERVICE

PUBLIC = "http://gw.test:8080"
BASE = "/v1/tenants/acme/integrations"
CALL = f"{BASE}/crm/mcp:call"
TEST = f"{BASE}/crm/mcp:test"
WELL_KNOWN = "/.well-known/oauth-protected-resource"
TOOLS = [{"name": "search_contacts", "inputSchema": {"type": "object"}}]
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


async def mint(client: TestClient, api_key: str, path: str = CALL) -> str:
    """An access token `api_key` approved for the integration URL at `path`."""
    pair = await client.app[SERVICE].issue_oauth_tokens(api_key, "client-1", PUBLIC + path)
    return pair.access_token


async def ping(
    client: TestClient, credential: str, path: str = CALL, **headers: str
) -> tuple[int, Any, Any]:
    sent = {**HEADERS, "Authorization": f"Bearer {credential}", **headers}
    async with client.post(path, json=PING, headers=sent) as resp:
        return resp.status, resp.headers, await resp.json(content_type=None)


def challenge(path: str) -> str:
    return f'Bearer realm="mcp-gateway", resource_metadata="{PUBLIC}{WELL_KNOWN}{path}"'


async def refused(client: TestClient, token: str, path: str, reason: str) -> None:
    status, headers, body = await ping(client, token, path)
    assert (status, body.get("reason")) == (401, reason), body
    assert headers["WWW-Authenticate"] == challenge(path) + ', error="invalid_token"'
    assert body["type"].endswith("/unauthorized")


# --- protected resource metadata (RFC 9728) ---------------------------------------------------


async def test_each_integration_url_has_its_protected_resource_metadata(
    client: TestClient, api: Api
) -> None:
    await api.enabled_key(TOOLS)
    for path in (CALL, TEST):
        async with client.get(WELL_KNOWN + path) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            document = await resp.json()
        assert document == {
            "resource": PUBLIC + path,
            "authorization_servers": [PUBLIC + "/"],
            "bearer_methods_supported": ["header"],
        }
        # Browsers may read it from any origin, after a preflight.
        preflight = {
            "Origin": "http://localhost:6274",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "mcp-protocol-version",
        }
        async with client.options(WELL_KNOWN + path, headers=preflight) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert "MCP-Protocol-Version" in resp.headers["Access-Control-Allow-Headers"]
        async with client.head(WELL_KNOWN + path) as resp:
            assert resp.status == 200
        # The URL the 401 names is that document.
        status, headers, _ = await ping(client, "mcpk_wrong", path)
        assert status == 401
        assert headers["WWW-Authenticate"].startswith(challenge(path))


async def test_protected_resource_metadata_is_404_for_unknown_disabled_and_root(
    client: TestClient, api: Api
) -> None:
    await api.enabled_key(TOOLS)
    await api.call("PUT", "/other", 201, json={"name": "Not enabled"})
    for path in (
        "",
        "/",
        f"{BASE}/ghost/mcp:call",
        f"{BASE}/other/mcp:call",
        f"{BASE}/crm/mcp:nope",
        "/v1/tenants/other-tenant/integrations/crm/mcp:call",
    ):
        async with client.get(WELL_KNOWN + path) as resp:
            assert resp.status == 404, path
            assert resp.content_type == "application/problem+json"
    await api.call("PATCH", "/crm/mcp", 200, json={"enabled": False})
    async with client.get(WELL_KNOWN + CALL) as resp:
        assert resp.status == 404


# --- access tokens ------------------------------------------------------------------------------


async def test_access_token_serves_both_eras_like_its_key_and_shares_its_bucket(
    client: TestClient, api: Api
) -> None:
    key = await api.enabled_key(TOOLS)
    token = await mint(client, key)
    remaining = []
    for credential in (key, token, key, token):
        status, headers, body = await ping(client, credential)
        assert status == 200, body
        remaining.append(int(headers["RateLimit-Remaining"]))
    # One bucket, the approving key's: each request took one from it, whichever credential.
    assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == 4

    modern = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/list",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        },
    }
    async with client.post(
        CALL,
        json=modern,
        headers={
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/list",
            "X-API-Key": token,
        },
    ) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        assert [tool["name"] for tool in body["result"]["tools"]] == ["search_contacts"]


async def test_token_is_refused_on_another_url_and_another_integration(
    client: TestClient, api: Api
) -> None:
    key = await api.enabled_key(TOOLS)
    other_key = await api.enabled_key(TOOLS, integration="billing")
    for_call, for_test = await mint(client, key), await mint(client, key, TEST)
    for_billing = await mint(client, other_key, f"{BASE}/billing/mcp:call")
    await refused(client, for_call, TEST, "wrong-resource")
    await refused(client, for_test, CALL, "wrong-resource")
    await refused(client, for_billing, CALL, "wrong-resource")
    # The resource is MCPGW_PUBLIC_URL plus the path, not the Host the request came with.
    status, _, body = await ping(client, for_call, CALL, Host="gw.test:8080")
    assert status == 200, body
    status, _, body = await ping(client, for_call, CALL, Host="evil.test")
    assert status == 200, body
    await refused(client, "mcpat_" + "x" * 43, CALL, "unknown")


async def test_rotating_the_key_revoking_the_token_and_deleting_end_the_tokens(
    client: TestClient, api: Api
) -> None:
    key = await api.enabled_key(TOOLS)
    token = await mint(client, key)
    assert (await ping(client, token))[0] == 200
    await api.call("POST", "/crm/mcp:rotateKey", 200)
    await refused(client, token, CALL, "revoked")

    _, rotated = await api.call("POST", "/crm/mcp:rotateKey", 200)
    token = await mint(client, rotated["apiKey"])
    assert (await ping(client, token))[0] == 200
    await client.app[SERVICE].oauth.revoke(token, None)
    await refused(client, token, CALL, "revoked")

    token = await mint(client, rotated["apiKey"])
    assert (await ping(client, token))[0] == 200
    await api.call("DELETE", "/crm", 204)
    status, _, body = await ping(client, token)
    assert status in (401, 404), body


async def test_disabling_mcp_refuses_its_tokens_like_its_key(client: TestClient, api: Api) -> None:
    key = await api.enabled_key(TOOLS)
    token = await mint(client, key)
    await api.call("PATCH", "/crm/mcp", 200, json={"enabled": False})
    for credential in (key, token):
        status, _, body = await ping(client, credential)
        assert status == 403 and body["type"].endswith("/mcp-disabled"), body


async def test_expired_token_is_401_expired_and_never_logged(
    aiohttp_client: Any,
    tmp_path: Path,
    database_url: str,
    auth: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(tmp_path, database_url, MCPGW_OAUTH_ACCESS_TOKEN_TTL_S="1")
    client = await aiohttp_client(build_app(settings))
    key = await Api(client, auth("acme")).enabled_key(TOOLS)
    token = await mint(client, key)
    assert (await ping(client, token))[0] == 200

    async def expired() -> bool:
        status, _, body = await ping(client, token)
        return status == 401 and body["reason"] == "expired"

    await until(expired, timeout_s=5.0)
    await refused(client, token, CALL, "expired")
    access = [r.fields for r in caplog.records if r.name == "mcp_gateway.access"]  # type: ignore[attr-defined]
    assert access[-1]["status"] == 401 and access[-1]["reason"] == "expired"
    logged = caplog.text + repr(access)
    assert token not in logged and token[6:] not in logged
