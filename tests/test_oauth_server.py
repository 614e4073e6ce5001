"""The authorization server (docs/mcp-endpoints.md, "OAuth"): metadata, registration, the
consent page, codes, tokens, refresh rotation, revocation, and the settings API's client list.

Token acceptance on callUrl/testUrl is the resource server's (its own tests); here a
token's state is read through the service the data plane uses (`find_access_token`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from aiohttp.test_utils import TestClient
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from conftest import Api, make_settings
from oauth_flow import (
    CALL,
    ISSUER,
    PUBLIC,
    REDIRECT,
    TEST,
    TOOLS,
    access_state,
    authorize_path,
    code_for,
    exchange,
    parse_page,
    pkce_pair,
    redirect_params,
    refresh,
    register,
    token_request,
    tokens_for,
)

from gateway.server import build_app
from settings_api.oauth.tokens import hash_token
from settings_api.routes import SERVICE

pytestmark = pytest.mark.backends("sqlite")


# metadata ------------------------------------------------------------------------------------
async def test_authorization_server_metadata(aiohttp_client: Any, tmp_path: Any) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 's.db'}", MCPGW_PUBLIC_URL="https://gw.example.com"
    )
    client = await aiohttp_client(build_app(settings))
    async with client.get("/.well-known/oauth-authorization-server") as resp:
        assert resp.status == 200
        document = await resp.json()
    AuthorizationServerMetadata(document).validate()
    assert document["issuer"] == "https://gw.example.com/"
    assert document["authorization_endpoint"] == "https://gw.example.com/oauth/authorize"
    assert document["token_endpoint"] == "https://gw.example.com/oauth/token"
    assert document["registration_endpoint"] == "https://gw.example.com/oauth/register"
    assert document["revocation_endpoint"] == "https://gw.example.com/oauth/revoke"
    assert document["response_types_supported"] == ["code"]
    assert document["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert "none" in document["token_endpoint_auth_methods_supported"]
    assert document["authorization_response_iss_parameter_supported"] is True
    assert document["client_id_metadata_document_supported"] is True
    async with client.get("/.well-known/openid-configuration") as resp:
        assert resp.status == 200 and await resp.json() == document


async def test_metadata_under_a_public_url_with_a_path(aiohttp_client: Any, tmp_path: Any) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 's.db'}", MCPGW_PUBLIC_URL="https://gw.example.com/mcp"
    )
    client = await aiohttp_client(build_app(settings))
    for path in (
        "/.well-known/oauth-authorization-server/mcp",
        "/.well-known/openid-configuration/mcp",
        "/mcp/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ):
        async with client.get(path) as resp:
            assert resp.status == 200, path
            assert (await resp.json())["issuer"] == "https://gw.example.com/mcp/"


async def test_protected_resource_root_stays_404(client: TestClient) -> None:
    async with client.get("/.well-known/oauth-protected-resource") as resp:
        assert resp.status == 404


async def test_browser_clients_may_call_the_endpoints_cross_origin(client: TestClient) -> None:
    headers = {
        "Origin": "https://inspector.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    for path in ("/oauth/token", "/oauth/register", "/.well-known/oauth-authorization-server"):
        async with client.options(path, headers=headers) as resp:
            assert resp.status == 204, path
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert "content-type" in resp.headers["Access-Control-Allow-Headers"].lower()


# registration --------------------------------------------------------------------------------
async def test_registration_of_a_public_client(client: TestClient) -> None:
    body = {
        "client_name": "Claude",
        "redirect_uris": ["https://claude.ai/api/mcp/auth_callback", "http://[::1]:5555/cb"],
        "token_endpoint_auth_method": "client_secret_post",
    }
    async with client.post("/oauth/register", json=body) as resp:
        assert resp.status == 201
        answer = await resp.json()
    assert answer["client_id"]
    assert "client_secret" not in answer
    assert answer["token_endpoint_auth_method"] == "none"
    assert answer["redirect_uris"] == body["redirect_uris"]
    assert answer["client_name"] == "Claude"


@pytest.mark.parametrize(
    ("redirect_uris", "error"),
    [
        (["http://example.com/cb"], "invalid_redirect_uri"),  # http off loopback
        (["https://example.com/cb#frag"], "invalid_redirect_uri"),
        (["javascript:alert(1)"], "invalid_redirect_uri"),
        (["https://user:pw@example.com/cb"], "invalid_redirect_uri"),
        ([], "invalid_redirect_uri"),
        (None, "invalid_redirect_uri"),
        ([f"https://example.com/{i}" for i in range(11)], "invalid_redirect_uri"),
    ],
)
async def test_registration_refuses_unsafe_redirect_uris(
    client: TestClient, redirect_uris: Any, error: str
) -> None:
    body = {"client_name": "x"} | ({"redirect_uris": redirect_uris} if redirect_uris else {})
    async with client.post("/oauth/register", json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == error


async def test_registration_bounds_its_body(client: TestClient) -> None:
    async with client.post("/oauth/register", data="{not json", headers=_json_type()) as resp:
        assert resp.status == 400
    big = {"redirect_uris": [REDIRECT], "client_name": "x", "software_id": "y" * 20000}
    async with client.post("/oauth/register", json=big) as resp:
        assert resp.status == 413
    async with client.post(
        "/oauth/register", json={"redirect_uris": [REDIRECT], "grant_types": ["password"]}
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_client_metadata"


def _json_type() -> dict[str, str]:
    return {"Content-Type": "application/json"}


# consent page --------------------------------------------------------------------------------
async def test_consent_page(client: TestClient, api: Api) -> None:
    await api.enabled_key(TOOLS)
    client_id = await register(client, client_name="Inspector <b>")
    _, challenge = pkce_pair()
    async with client.get(authorize_path(client_id, challenge)) as resp:
        assert resp.status == 200
        html = await resp.text()
        headers = resp.headers
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "form-action" not in csp  # the approval's redirect to the client must not be blocked
    assert "script-src" not in csp and "unsafe-inline" not in csp  # default-src 'none'
    assert "default-src 'none'" in csp
    assert headers["Cache-Control"] == "no-store"
    form, scripts = parse_page(html)
    assert scripts == 0
    assert form is not None and form.method == "post"
    assert urlsplit(form.action).query == ""  # the key never travels in a URL
    [key_input] = [i for i in form.inputs if i.get("name") == "api_key"]
    assert key_input["type"] == "password"
    assert form.labels[key_input["id"]].strip()  # labelled
    assert form.fields["csrf_token"]
    assert {b["value"] for b in form.buttons} == {"approve", "deny"}
    assert form.fields["state"] == "st-123" and form.fields["resource"] == CALL
    assert "Inspector &lt;b&gt;" in html and "<b>" not in html.split("<main>")[1]
    assert "127.0.0.1:33418" in html and "crm" in html


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": None},
        {"client_id": "mcpc_unknown"},
        {"redirect_uri": "http://127.0.0.1:33418/other"},
        {"redirect_uri": "https://evil.example/cb"},
        {"client_id": "https://127.0.0.1/client.json"},  # a metadata document that can't be had
    ],
)
async def test_errors_before_the_redirect_uri_is_trusted_are_a_page(
    client: TestClient, overrides: dict[str, str | None]
) -> None:
    client_id = await register(client)
    _, challenge = pkce_pair()
    async with client.get(
        authorize_path(client_id, challenge, **overrides), allow_redirects=False
    ) as resp:
        assert resp.status == 400
        assert "Location" not in resp.headers
        assert resp.content_type == "text/html"
        form, _ = parse_page(await resp.text())
    assert form is None


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None}, "invalid_request"),  # PKCE required
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),  # would mean plain
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"resource": None}, "invalid_target"),
        (
            {"resource": "https://other.example/v1/tenants/acme/integrations/crm/mcp:call"},
            "invalid_target",
        ),
        ({"resource": f"{PUBLIC}/v1/tenants/acme/integrations/crm"}, "invalid_target"),
    ],
)
async def test_errors_after_the_redirect_uri_is_trusted_go_back_to_the_client(
    client: TestClient, overrides: dict[str, str | None], error: str
) -> None:
    client_id = await register(client)
    _, challenge = pkce_pair()
    async with client.get(
        authorize_path(client_id, challenge, **overrides), allow_redirects=False
    ) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    params = redirect_params(location)
    assert params["error"] == error
    assert params["state"] == "st-123"
    assert params["iss"] == ISSUER


async def _consent_form(client: TestClient, path: str) -> dict[str, str]:
    async with client.get(path) as resp:
        assert resp.status == 200
        form, _ = parse_page(await resp.text())
    assert form is not None
    return form.fields


async def _submit(
    client: TestClient, fields: dict[str, str], api_key: str, decision: str = "approve"
) -> tuple[int, str, str | None]:
    data = {**fields, "api_key": api_key, "decision": decision}
    async with client.post("/oauth/authorize", data=data, allow_redirects=False) as resp:
        return resp.status, await resp.text(), resp.headers.get("Location")


async def test_approval_redirects_with_code_state_and_iss(client: TestClient, api: Api) -> None:
    key = await api.enabled_key(TOOLS)
    client_id = await register(client)
    async with client.get("/.well-known/oauth-authorization-server") as resp:
        issuer = (await resp.json())["issuer"]
    verifier, challenge = pkce_pair()
    fields = await _consent_form(client, authorize_path(client_id, challenge))
    status, _, location = await _submit(client, fields, key)
    assert status == 303 and location is not None
    params = redirect_params(location)
    assert set(params) == {"code", "state", "iss"}
    assert params["state"] == "st-123"
    assert params["iss"] == issuer == ISSUER  # byte for byte
    assert key not in location
    status, body = await exchange(client, client_id, params["code"], verifier)
    assert status == 200, body
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"].startswith("mcpat_") and body["refresh_token"].startswith("mcprt_")
    assert key not in (body["access_token"], body["refresh_token"])
    binding = await client.app[SERVICE].find_access_token(hash_token(body["access_token"]))
    assert binding is not None and not binding.revoked
    assert (binding.tenant_id, binding.integration_id, binding.resource) == ("acme", "crm", CALL)


async def test_deny_answers_access_denied(client: TestClient, api: Api) -> None:
    await api.enabled_key(TOOLS)
    client_id = await register(client)
    _, challenge = pkce_pair()
    fields = await _consent_form(client, authorize_path(client_id, challenge))
    status, _, location = await _submit(client, fields, "", decision="deny")
    assert status == 303 and location is not None
    params = redirect_params(location)
    assert params["error"] == "access_denied" and params["state"] == "st-123"
    assert "code" not in params


async def test_a_key_that_does_not_open_the_integration_shows_the_page_again(
    client: TestClient, api: Api
) -> None:
    key = await api.enabled_key(TOOLS)
    other_key = await api.enabled_key(TOOLS, integration="billing")
    client_id = await register(client)
    _, challenge = pkce_pair()
    fields = await _consent_form(client, authorize_path(client_id, challenge))
    wrong = "mcpk_" + "A" * 38
    for attempt in (wrong, other_key, "not a key", key[:-1] + ("x" if key[-1] != "x" else "y")):
        status, html, location = await _submit(client, fields, attempt)
        assert status == 403 and location is None, attempt
        assert "does not open this integration" in html
        form, _ = parse_page(html)
        assert form is not None and "api_key" not in form.fields  # the key is not echoed
        assert attempt not in html
    # A disabled integration issues no code, even for its own key.
    await api.call("PATCH", "/crm/mcp", 200, json={"enabled": False})
    status, html, location = await _submit(client, fields, key)
    assert status == 403 and location is None
    assert "disabled" in html


async def test_failed_approvals_count_toward_the_failed_auth_throttle(
    aiohttp_client: Any, tmp_path: Any, auth: Callable[..., dict[str, str]]
) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 's.db'}", MCPGW_AUTH_FAILURE_LIMIT="2"
    )
    client = await aiohttp_client(build_app(settings))
    key = await Api(client, auth("acme")).enabled_key(TOOLS)
    client_id = await register(client)
    _, challenge = pkce_pair()
    fields = await _consent_form(client, authorize_path(client_id, challenge))
    for _ in range(2):
        status, _, _ = await _submit(client, fields, "mcpk_" + "B" * 38)
        assert status == 403
    status, html, location = await _submit(client, fields, key)
    assert status == 429 and location is None
    assert "Too many failed attempts" in html
    # The MCP endpoints share the count: the address is throttled there too.
    async with client.post(
        "/v1/tenants/acme/integrations/crm/mcp:call",
        headers={"Authorization": f"Bearer {key}"},
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
    ) as resp:
        assert resp.status == 429


async def test_the_form_needs_its_csrf_token_and_cookie(
    client: TestClient, api: Api, aiohttp_client: Any
) -> None:
    key = await api.enabled_key(TOOLS)
    client_id = await register(client)
    _, challenge = pkce_pair()
    fields = await _consent_form(client, authorize_path(client_id, challenge))
    tampered = {**fields, "csrf_token": fields["csrf_token"][:-2] + "00"}
    status, html, location = await _submit(client, tampered, key)
    assert status == 400 and location is None and "expired" in html
    # The token is bound to the request: another state is another request.
    status, _, location = await _submit(client, {**fields, "state": "other"}, key)
    assert status == 400 and location is None
    # Another browser (no cookie) cannot replay the form.
    client.session.cookie_jar.clear()
    status, _, location = await _submit(client, fields, key)
    assert status == 400 and location is None


# codes and tokens ----------------------------------------------------------------------------
async def test_the_code_is_bound_to_verifier_client_and_redirect_uri(
    client: TestClient, api: Api
) -> None:
    key = await api.enabled_key(TOOLS)
    client_id = await register(client)
    other_client = await register(client)
    code, verifier = await code_for(client, client_id, key)
    wrong_verifier, _ = pkce_pair()
    cases = [
        ({"code_verifier": wrong_verifier}, 400, "invalid_grant"),
        ({"code_verifier": ""}, 400, "invalid_request"),
        ({"redirect_uri": "http://127.0.0.1:33418/other"}, 400, "invalid_grant"),
        ({"client_id": other_client}, 400, "invalid_grant"),
        ({"client_id": ""}, 400, "invalid_client"),
        ({"resource": TEST}, 400, "invalid_grant"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ]
    base = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT,
    }
    for change, status, error in cases:
        got_status, body = await token_request(client, **{**base, **change})
        assert (got_status, body["error"]) == (status, error), change
    # None of these spent the code.
    status, body = await token_request(client, **base)
    assert status == 200, body


async def test_a_replayed_code_is_refused_and_revokes_what_it_issued(
    client: TestClient, api: Api
) -> None:
    key = await api.enabled_key(TOOLS)
    client_id = await register(client)
    code, verifier = await code_for(client, client_id, key)
    status, first = await exchange(client, client_id, code, verifier)
    assert status == 200
    assert await access_state(client, first["access_token"]) == "live"
    status, again = await exchange(client, client_id, code, verifier)
    assert status == 400 and again["error"] == "invalid_grant"
    assert await access_state(client, first["access_token"]) == "revoked"
    status, body = await refresh(client, client_id, first["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"


async def test_an_expired_code_is_refused(
    aiohttp_client: Any, tmp_path: Any, auth: Callable[..., dict[str, str]]
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 's.db'}", MCPGW_OAUTH_CODE_TTL_S="1")
    client = await aiohttp_client(build_app(settings))
    key = await Api(client, auth("acme")).enabled_key(TOOLS)
    client_id = await register(client)
    code, verifier = await code_for(client, client_id, key)
    await asyncio.sleep(1.1)
    status, body = await exchange(client, client_id, code, verifier)
    assert (
        status == 400
        and body["error"] == "invalid_grant"
        and "expired" in body["error_description"]
    )


async def test_refresh_tokens_rotate(client: TestClient, api: Api) -> None:
    key = await api.enabled_key(TOOLS)
    client_id = await register(client)
    first = await tokens_for(client, client_id, key)
    status, second = await refresh(client, client_id, first["refresh_token"])
    assert status == 200
    assert second["refresh_token"] != first["refresh_token"]
    assert await access_state(client, second["access_token"]) == "live"
    # The spent refresh token is refused, and presenting it again ends the grant (one of its
    # two holders is not the client).
    status, body = await refresh(client, client_id, first["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"
    assert await access_state(client, second["access_token"]) == "revoked"
    status, body = await refresh(client, client_id, second["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"


async def test_a_refresh_token_is_bound_to_its_client(client: TestClient, api: Api) -> None:
    key = await api.enabled_key(TOOLS)
    client_id, other = await register(client), await register(client)
    first = await tokens_for(client, client_id, key)
    status, body = await refresh(client, other, first["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"


async def test_rotating_the_key_ends_access_and_refresh_tokens(
    client: TestClient, api: Api
) -> None:
    key = await api.enabled_key(TOOLS)
    client_id = await register(client)
    pair = await tokens_for(client, client_id, key)
    code, verifier = await code_for(client, client_id, key)  # approved, not yet exchanged
    await api.call("POST", "/crm/mcp:rotateKey", 200)
    assert await access_state(client, pair["access_token"]) == "revoked"
    status, body = await refresh(client, client_id, pair["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"
    status, body = await exchange(client, client_id, code, verifier)
    assert status == 400 and body["error"] == "invalid_grant"


async def test_disabling_or_deleting_the_integration_ends_refresh(
    client: TestClient, api: Api
) -> None:
    key = await api.enabled_key(TOOLS)
    client_id = await register(client)
    pair = await tokens_for(client, client_id, key)
    await api.call("PATCH", "/crm/mcp", 200, json={"enabled": False})
    status, _ = await refresh(client, client_id, pair["refresh_token"])
    assert status == 400
    await api.call("DELETE", "/crm", 204)
    assert await access_state(client, pair["access_token"]) == "revoked"


async def test_a_token_names_the_one_resource_it_was_approved_for(
    client: TestClient, api: Api
) -> None:
    key = await api.enabled_key(TOOLS)
    client_id = await register(client)
    pair = await tokens_for(client, client_id, key, resource=TEST)
    binding = await client.app[SERVICE].find_access_token(hash_token(pair["access_token"]))
    assert binding is not None and binding.resource == TEST


async def test_revocation_endpoint(client: TestClient, api: Api) -> None:
    key = await api.enabled_key(TOOLS)
    client_id = await register(client)
    first, second = (
        await tokens_for(client, client_id, key),
        await tokens_for(client, client_id, key),
    )
    async with client.post(
        "/oauth/revoke", data={"token": first["access_token"], "client_id": client_id}
    ) as resp:
        assert resp.status == 200
    assert await access_state(client, first["access_token"]) == "revoked"
    # Revoking a refresh token takes its grant's access tokens with it (RFC 7009 2.1).
    async with client.post(
        "/oauth/revoke",
        data={
            "token": second["refresh_token"],
            "client_id": client_id,
            "token_type_hint": "refresh_token",
        },
    ) as resp:
        assert resp.status == 200
    assert await access_state(client, second["access_token"]) == "revoked"
    # Unknown tokens are no error; another client's token is left alone.
    third = await tokens_for(client, client_id, key)
    for data in ({"token": "mcpat_nothing"}, {"token": third["access_token"], "client_id": "x"}):
        async with client.post("/oauth/revoke", data=data) as resp:
            assert resp.status == 200
    assert await access_state(client, third["access_token"]) == "live"
    async with client.post("/oauth/revoke", data={}) as resp:
        assert resp.status == 400


async def test_the_token_endpoint_reads_only_small_forms(client: TestClient) -> None:
    async with client.post("/oauth/token", json={"grant_type": "authorization_code"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"
    async with client.post("/oauth/token", data={"code": "x" * 20000}) as resp:
        assert resp.status == 413
    async with client.post("/oauth/token", data="code=a&code=b", headers=_form_type()) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"


def _form_type() -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded"}


# settings API --------------------------------------------------------------------------------
async def test_settings_api_lists_and_revokes_clients(client: TestClient, api: Api) -> None:
    key = await api.enabled_key(TOOLS)
    _, empty = await api.call("GET", "/crm/mcp/oauth/clients", 200)
    assert empty == {"items": [], "nextCursor": None}
    client_id = await register(client, client_name="Claude Desktop")
    pair = await tokens_for(client, client_id, key)
    await refresh(client, client_id, pair["refresh_token"])
    _, listed = await api.call("GET", "/crm/mcp/oauth/clients", 200)
    [item] = listed["items"]
    assert item["clientId"] == client_id
    assert item["clientName"] == "Claude Desktop"
    assert item["redirectHosts"] == ["127.0.0.1:33418"]
    assert item["firstUsedAt"] <= item["lastUsedAt"]
    # The data plane reports when access tokens were used (batched): the list shows it.
    used_at = item["lastUsedAt"] + 5000
    await client.app[SERVICE].record_token_use({hash_token(pair["access_token"]): used_at})
    _, listed = await api.call("GET", "/crm/mcp/oauth/clients", 200)
    assert listed["items"][0]["lastUsedAt"] == used_at
    await api.call("DELETE", f"/crm/mcp/oauth/clients/{client_id}", 204)
    assert await access_state(client, pair["access_token"]) == "revoked"
    _, listed = await api.call("GET", "/crm/mcp/oauth/clients", 200)
    assert listed["items"] == []
    await api.call("DELETE", f"/crm/mcp/oauth/clients/{client_id}", 404)
    await api.call("GET", "/nope/mcp/oauth/clients", 404)
    async with client.get("/v1/tenants/acme/audit", headers=api.headers) as resp:
        audit = await resp.json()
    actions = {e["action"]: e for e in audit["items"]}
    assert actions["mcp.oauth_client_revoked"]["details"]["clientId"] == client_id
    approved = actions["mcp.oauth_client_approved"]
    assert approved["actor"].startswith("apiKey:") and approved["target"] == "crm"
    assert approved["details"] == {
        "clientId": client_id,
        "clientName": "Claude Desktop",
        "redirectHost": "127.0.0.1:33418",
        "resource": CALL,
    }
    assert key not in json.dumps(audit)


async def test_a_client_id_url_is_revoked_url_encoded(client: TestClient, api: Api) -> None:
    key = await api.enabled_key(TOOLS)
    client_id = "https://client.example/oauth/metadata.json"
    await client.app[SERVICE].issue_oauth_tokens(key, client_id, CALL)
    _, listed = await api.call("GET", "/crm/mcp/oauth/clients", 200)
    assert [i["clientId"] for i in listed["items"]] == [client_id]
    await api.call("DELETE", f"/crm/mcp/oauth/clients/{quote(client_id, safe='')}", 204)
    _, listed = await api.call("GET", "/crm/mcp/oauth/clients", 200)
    assert listed["items"] == []


async def test_openapi_describes_the_client_routes(client: TestClient) -> None:
    async with client.get("/openapi.json") as resp:
        paths = (await resp.json())["paths"]
    base = "/v1/tenants/{tenant}/integrations/{integration}/mcp/oauth/clients"
    assert "get" in paths[base]
    assert "delete" in paths[base + "/{client_id}"]


async def test_registration_is_rate_limited_per_address(aiohttp_client: Any, tmp_path: Any) -> None:
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 's.db'}",
        MCPGW_RATE_LIMIT_RPS="0.01",
        MCPGW_RATE_LIMIT_BURST="3",
    )
    client = await aiohttp_client(build_app(settings))
    body = {"redirect_uris": [REDIRECT]}
    statuses = []
    for _ in range(4):
        async with client.post("/oauth/register", json=body) as resp:
            statuses.append(resp.status)
            retry_after = resp.headers.get("Retry-After")
    assert statuses == [201, 201, 201, 429]
    assert retry_after is not None and int(retry_after) >= 1
