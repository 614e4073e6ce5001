"""Every settings-API error is an RFC 9457 problem (docs/settings-api.md "Errors"), on both
backends."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from conftest import JWT_SECRET, Api, make_settings

from gateway.server import build_app
from settings_api.app import STORE
from settings_api.http import encode_cursor
from settings_api.routes import ROUTES
from settings_api.service import SettingsService
from settings_api.store import StoreSession, StoreUnavailableError

PROBLEM_FIELDS = ("type", "title", "status", "detail", "instance", "requestId")
BASE = "/v1/tenants/acme/integrations"


async def problem_of(resp: ClientResponse, status: int, slug: str | None = None) -> dict[str, Any]:
    """Assert `resp` is an RFC 9457 problem with `status`; return its body."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/problem+json", resp.content_type
    body = json.loads(text)
    for name in PROBLEM_FIELDS:
        assert name in body, (name, body)
    assert body["status"] == status
    assert body["instance"] == resp.url.path
    assert body["type"].startswith("https://")
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["requestId"] == resp.headers["X-Request-Id"]
    if slug is not None:
        assert body["type"].rsplit("/", 1)[-1] == slug, body["type"]
    return body


def fields_of(problem: dict[str, Any]) -> set[str]:
    assert problem["type"].endswith("/validation-failed")
    for error in problem["errors"]:
        assert set(error) == {"field", "message"} and error["message"]
    return {e["field"] for e in problem["errors"]}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def claims(tenant: str = "acme", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "mallory", "tenants": [tenant], "iat": now, "exp": now + 600, **extra}


def bad_tokens() -> dict[str, str]:
    now = int(time.time())
    unsigned = (
        b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        + "."
        + b64url(json.dumps(claims()).encode())
        + "."
    )
    no_exp = claims()
    del no_exp["exp"]
    return {
        "expired": jwt.encode(claims(exp=now - 3600, iat=now - 7200), JWT_SECRET, "HS256"),
        "garbage": "this-is-not-a-jwt",
        "three-garbage-parts": "abc.def.ghi",
        "alg-none": unsigned,
        "other-secret": jwt.encode(claims(), "another-secret-" + "y" * 40, "HS256"),
        "hs384-same-secret": jwt.encode(claims(), JWT_SECRET, "HS384"),
        "no-exp": jwt.encode(no_exp, JWT_SECRET, "HS256"),
        "no-tenant": jwt.encode({"sub": "x", "exp": now + 600}, JWT_SECRET, "HS256"),
        "tampered": _tampered(),
    }


def _tampered() -> str:
    header, _payload, signature = jwt.encode(claims("other"), JWT_SECRET, "HS256").split(".")
    return ".".join([header, b64url(json.dumps(claims("acme")).encode()), signature])


def concrete(path: str, config_id: str) -> str:
    return (
        path.replace("{tenant}", "acme")
        .replace("{integration}", "crm")
        .replace("{config_id}", config_id)
        .replace("{tool_id}", "create_contact")
        .replace("{client_id}", "mcpc_someclient")
        .replace("{api_key_id}", "00000000-0000-4000-8000-000000000000")
    )


VALID_BODIES = {
    "IntegrationPut": {"name": "Hijacked"},
    "ConfigCreate": {"tools": [{"name": "x"}]},
    "McpSettingsPatch": {"description": "hijacked", "enabled": False},
    "SimulatorFixturePut": {"rules": [{"result": {"content": []}}]},
    "ApiKeyCreate": {"label": "laptop"},
    "RotateKey": {"gracePeriodSeconds": 60},
}


# body and media-type problems -----------------------------------------------------------------
MALFORMED = {
    "truncated": b'{"name": ',
    "single-quotes": b"{'name': 'x'}",
    "not-utf8": b"\xff\xfe{}",
    "empty": b"",
    "trailing-comma": b"[1,]",
    "nan": b'{"name": NaN}',
    "infinity": b'{"name": "x", "extra": Infinity}',
    "minus-infinity": b'{"name": -Infinity}',
    "float-overflow": b'{"name": 1e999}',
    "5000-digit-int": b'{"name": 1' + b"0" * 5000 + b"}",
    "nested-100k": b"[" * 100_000 + b"]" * 100_000,
    "lone-surrogate": b'{"name": "lone \\ud800 surrogate"}',
}


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_json_is_400(
    client: TestClient, auth: Callable[..., dict[str, str]], raw: bytes
) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    async with client.put(BASE + "/crm", data=raw, headers=headers) as resp:
        await problem_of(resp, 400, "malformed-json")


async def test_non_finite_numbers_never_reach_a_catalog(api: Api) -> None:
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    raw = b'{"tools": [{"name": "t", "inputSchema": {"type": "object", "maximum": 1e999}}]}'
    headers = {**api.headers, "Content-Type": "application/json"}
    async with api.client.post(api.base + "/crm/configs", data=raw, headers=headers) as resp:
        await problem_of(resp, 400, "malformed-json")
    _, page = await api.call("GET", "/crm/configs", 200)
    assert page["items"] == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
async def test_wrong_content_type_is_415(
    client: TestClient, auth: Callable[..., dict[str, str]], content_type: str | None
) -> None:
    headers = auth()
    if content_type:
        headers["Content-Type"] = content_type
    async with client.put(BASE + "/crm", data=b'{"name": "CRM"}', headers=headers) as resp:
        await problem_of(resp, 415, "unsupported-media-type")
    async with client.get(BASE + "/crm", headers=auth()) as resp:
        assert resp.status == 404  # nothing was created


async def test_json_media_types_with_parameters_or_suffix_are_accepted(
    client: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    headers = {**auth(), "Content-Type": "application/json; charset=utf-8"}
    async with client.put(BASE + "/crm", data=b'{"name": "CRM"}', headers=headers) as resp:
        assert resp.status == 201
    headers = {**auth(), "Content-Type": "application/merge-patch+json"}
    async with client.patch(
        BASE + "/crm/mcp", data=b'{"description": "d"}', headers=headers
    ) as resp:
        assert resp.status == 200


@pytest.fixture
async def small_client(aiohttp_client: Any, tmp_path: Path, database_url: str) -> TestClient:
    settings = make_settings(tmp_path, database_url, MCPGW_MAX_BODY_BYTES="1024")
    return await aiohttp_client(build_app(settings))


async def test_body_over_the_limit_is_413(
    small_client: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    big = json.dumps({"name": "x" * 2000}).encode()
    headers = {**auth(), "Content-Type": "application/json"}
    async with small_client.put(BASE + "/crm", data=big, headers=headers) as resp:
        await problem_of(resp, 413, "payload-too-large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"name": "'
        for _ in range(4):
            yield b"y" * 512
        yield b'"}'

    async with small_client.put(BASE + "/crm", data=chunks(), headers=headers) as resp:
        await problem_of(resp, 413, "payload-too-large")

    async with small_client.get(BASE + "/crm", headers=auth()) as resp:
        assert resp.status == 404
    # Under the limit still works.
    async with small_client.put(BASE + "/crm", json={"name": "ok"}, headers=auth()) as resp:
        assert resp.status == 201


# schema violations ----------------------------------------------------------------------------
async def test_integration_put_lists_every_bad_field(api: Api) -> None:
    _, problem = await api.call("PUT", "/crm", 422, json={"name": 5, "extra": 1, "more": "x"})
    assert fields_of(problem) == {"name", "extra", "more"}
    _, problem = await api.call("PUT", "/crm", 422, json={})
    assert fields_of(problem) == {"name"}
    _, problem = await api.call("PUT", "/crm", 422, json={"name": ""})
    assert fields_of(problem) == {"name"}
    _, problem = await api.call("PUT", "/crm", 422, json=["name"])
    assert fields_of(problem) == {"(body)"}
    await api.call("GET", "/crm", 404)


@pytest.mark.parametrize("integration", ["-leading-dash", "x" * 65, "has.dot"])
async def test_bad_integration_id_is_422(api: Api, integration: str) -> None:
    _, problem = await api.call("PUT", f"/{integration}", 422, json={"name": "x"})
    assert fields_of(problem) == {"integration"}


async def test_config_create_lists_every_bad_field_without_echoing_values(api: Api) -> None:
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    async with api.client.post(
        api.base + "/crm/configs",
        headers=api.headers,
        json={
            "upstreamUrl": "ftp://nope",
            "tools": "not-a-list",
            "upstreamHeaders": {
                "X-Token": "value-secret-42\r\nInjected: yes",
                "Bad Name": "name-secret-43",
            },
            "junk": True,
        },
    ) as resp:
        text = await resp.text()
        problem = await problem_of(resp, 422, "validation-failed")
    assert fields_of(problem) == {
        "upstreamUrl",
        "tools",
        "upstreamHeaders",
        "upstreamHeaders.X-Token",
        "junk",
    }
    assert "value-secret-42" not in text and "name-secret-43" not in text

    _, problem = await api.call(
        "POST", "/crm/configs", 422, json={"upstreamHeaders": {"A": 1}, "upstreamUrl": 7}
    )
    assert fields_of(problem) == {"upstreamHeaders.A", "upstreamUrl"}


async def test_inline_tool_problems_are_listed_per_tool(api: Api) -> None:
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    _, problem = await api.call(
        "POST",
        "/crm/configs",
        422,
        json={
            "tools": [
                {"name": "ok"},
                {"name": "ok"},
                {"name": "str", "inputSchema": {"type": "string"}},
                {"name": "bad-schema", "inputSchema": {"type": "object", "properties": 5}},
            ]
        },
    )
    assert fields_of(problem) == {"tools[1].name", "tools[2].inputSchema", "tools[3].inputSchema"}
    _, problem = await api.call(
        "POST",
        "/crm/configs",
        422,
        json={"tools": [{"name": "has space"}, {"description": "no name"}, "not-an-object"]},
    )
    assert fields_of(problem) == {"tools[0].name", "tools[1].name", "tools[2]"}
    _, page = await api.call("GET", "/crm/configs", 200)
    assert page["items"] == []


async def test_mcp_patch_lists_every_bad_field(api: Api) -> None:
    await api.integration_with_config()
    _, problem = await api.call(
        "PATCH",
        "/crm/mcp",
        422,
        json={
            "enabled": "yes",
            "configId": 5,
            "exposedToolIds": "search_contacts",
            "description": 7,
            "apiKey": "mcpk_x",
            "apiKeyId": "y",
        },
    )
    assert fields_of(problem) == {
        "enabled",
        "configId",
        "exposedToolIds",
        "description",
        "apiKey",
        "apiKeyId",
    }
    _, problem = await api.call("PATCH", "/crm/mcp", 422, json={"exposedToolIds": ["a", "a", 3]})
    assert fields_of(problem) == {"exposedToolIds", "exposedToolIds[2]"}
    _, problem = await api.call("PATCH", "/crm/mcp", 422, json={"description": "d" * 5000})
    assert fields_of(problem) == {"description"}


async def test_nul_characters_are_refused_on_both_backends(api: Api) -> None:
    # Postgres text cannot hold U+0000: it must be a 4xx on every backend, never a 500.
    config_id = await api.integration_with_config()
    cases = [
        ("PUT", "/crm", {"name": "a\u0000b"}, 422, {"name"}),
        ("PATCH", "/crm/mcp", {"description": "a\u0000b"}, 422, {"description"}),
        ("PATCH", "/crm/mcp", {"configId": "a\u0000b"}, 422, {"configId"}),
        (
            "PATCH",
            "/crm/mcp",
            {"configId": config_id, "exposedToolIds": ["a\u0000"]},
            422,
            {"exposedToolIds"},
        ),
        (
            "POST",
            "/crm/configs",
            {"upstreamUrl": "http://x\u0000y", "tools": []},
            422,
            {"upstreamUrl"},
        ),
    ]
    for method, path, body, status, fields in cases:
        _, problem = await api.call(method, path, status, json=body)
        assert fields_of(problem) == fields, (path, body)
    for method, path in (
        ("GET", "/crm/configs/a%00b"),
        ("POST", "/crm/configs/a%00b:syncTools"),
        ("GET", "/a%00b"),
        ("GET", "/a%00b/mcp"),
        ("DELETE", "/a%00b"),
        ("GET", "/a%00b/configs"),
        ("POST", "/a%00b/mcp:rotateKey"),
    ):
        await api.call(method, path, 404)
    _, integration = await api.call("GET", "/crm", 200)
    assert integration["name"] == "CRM"
    # Tool text may contain anything JSON allows: it is stored as JSON.
    _, config = await api.call(
        "POST",
        "/crm/configs",
        201,
        json={"tools": [{"name": "t", "description": "nul\u0000inside"}]},
    )
    assert config["tools"][0]["description"] == "nul\u0000inside"


async def test_trailing_newlines_do_not_slip_through_patterns(
    api: Api, aiohttp_server: Any
) -> None:
    # Python's "$" also matches before a final "\n"; the API's patterns must not.
    config_id = await api.integration_with_config()
    _, problem = await api.call("PUT", "/new%0A", 422, json={"name": "x"})
    assert fields_of(problem) == {"integration"}
    await api.call("GET", "/crm%0A", 404)
    await api.call("GET", f"/crm/configs/{config_id}%0A", 404)
    cases = [
        (
            {
                "upstreamUrl": "http://up.test/mcp",
                "tools": [],
                "upstreamHeaders": {"X-A": "value\n"},
            },
            {"upstreamHeaders.X-A"},
        ),
        (
            {
                "upstreamUrl": "http://up.test/mcp",
                "tools": [],
                "upstreamHeaders": {"X-B\n": "value"},
            },
            {"upstreamHeaders"},
        ),
        ({"upstreamUrl": "http://up.test/mcp\n", "tools": []}, {"upstreamUrl"}),
        ({"tools": [{"name": "tool\n"}]}, {"tools[0].name"}),
    ]
    for body, fields in cases:
        _, problem = await api.call("POST", "/crm/configs", 422, json=body)
        assert fields_of(problem) == fields, body
    _, problem = await api.call("PATCH", "/crm/mcp", 422, json={"configId": config_id + "\n"})
    assert fields_of(problem) == {"configId"}
    _, page = await api.call("GET", "", 200)
    assert [i["integrationId"] for i in page["items"]] == ["crm"]


# unknown resources and routes -----------------------------------------------------------------
async def test_unknown_integration_and_config_are_404(
    client: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    api = Api(client, auth())
    config_id = await api.integration_with_config()
    cases = [
        ("GET", "/nope", None),
        ("DELETE", "/nope", None),
        ("GET", "/nope/mcp", None),
        ("PATCH", "/nope/mcp", {"description": "x"}),
        ("POST", "/nope/mcp:rotateKey", None),
        ("GET", "/nope/configs", None),
        ("POST", "/nope/configs", {"tools": []}),
        ("GET", f"/nope/configs/{config_id}", None),
        ("GET", "/crm/configs/missing", None),
        ("POST", "/crm/configs/missing:syncTools", None),
        ("POST", f"/nope/configs/{config_id}:syncTools", None),
    ]
    for method, path, body in cases:
        async with client.request(method, BASE + path, json=body, headers=auth()) as resp:
            await problem_of(resp, 404, "not-found")


async def test_unknown_path_is_a_404_problem(client: TestClient) -> None:
    for path in ("/nope", "/v1/tenants/acme/elsewhere", "/v1/tenants/acme/integrations/a/b/c"):
        async with client.get(path) as resp:
            await problem_of(resp, 404, "not-found")


async def test_wrong_method_is_a_405_problem_with_allow(
    client: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    cases = [
        ("POST", BASE, {"GET"}),
        ("POST", BASE + "/crm", {"GET", "PUT", "DELETE"}),
        ("PUT", BASE + "/crm/mcp", {"GET", "PATCH"}),
        ("DELETE", "/healthz", {"GET"}),
    ]
    for method, path, allowed in cases:
        async with client.request(method, path, headers=auth(), json={}) as resp:
            await problem_of(resp, 405, "method-not-allowed")
            allow = {m.strip() for m in resp.headers["Allow"].split(",")}
            assert allowed <= allow, allow


# authentication and tenant isolation ----------------------------------------------------------
async def test_missing_credentials_are_401_with_bearer_challenge(client: TestClient) -> None:
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer"},
        {"X-API-Key": "x"},
    ):
        async with client.get(BASE, headers=headers) as resp:
            await problem_of(resp, 401, "unauthorized")
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_invalid_tokens_are_401_on_every_route(
    aiohttp_client: Any, tmp_path: Path, database_url: str, auth: Callable[..., dict[str, str]]
) -> None:
    # Dozens of bad tokens from one address: the failed-auth throttle (its own tests in
    # test_settings_rate_limit.py) is off, so every route's own answer shows.
    client = await aiohttp_client(
        build_app(make_settings(tmp_path, database_url, MCPGW_AUTH_FAILURE_LIMIT="0"))
    )
    api = Api(client, auth("acme"))
    config_id = await api.integration_with_config()
    for name, bad in bad_tokens().items():
        for route in ROUTES:
            path = concrete(route.path, config_id)
            body = VALID_BODIES.get(route.body or "")
            async with client.request(
                route.method, path, json=body, headers={"Authorization": f"Bearer {bad}"}
            ) as resp:
                problem = await problem_of(resp, 401, "unauthorized")
                challenge = resp.headers["WWW-Authenticate"]
            assert challenge.startswith("Bearer"), (name, challenge)
            assert 'error="invalid_token"' in challenge, (name, challenge)
            assert bad not in json.dumps(problem)
    await _assert_acme_untouched(api, config_id)


async def test_other_tenants_token_is_403_on_every_route(
    client: TestClient, api: Api, auth: Callable[..., dict[str, str]]
) -> None:
    config_id = await api.integration_with_config()
    _, enabled = await api.call(
        "PATCH",
        "/crm/mcp",
        200,
        json={"enabled": True, "configId": config_id, "exposedToolIds": ["search_contacts"]},
    )
    before = await _snapshot(api, config_id)
    routes_seen = set()
    for route in ROUTES:
        path = concrete(route.path, config_id)
        body = VALID_BODIES.get(route.body or "")
        async with client.request(route.method, path, json=body, headers=auth("other")) as resp:
            text = await resp.text()
            await problem_of(resp, 403, "forbidden")
        assert enabled["apiKeyId"] not in text and "search_contacts" not in text
        routes_seen.add(route.operation_id)
    assert routes_seen == {r.operation_id for r in ROUTES}
    assert await _snapshot(api, config_id) == before


async def test_other_tenant_sees_none_of_acmes_data(
    client: TestClient, api: Api, auth: Callable[..., dict[str, str]]
) -> None:
    config_id = await api.integration_with_config()
    other = Api(client, auth("other"), tenant="other")
    _, page = await other.call("GET", "", 200)
    assert page["items"] == []
    await other.call("GET", "/crm", 404)
    await other.call("GET", "/crm/mcp", 404)
    # Same integration id under "other": acme's config id still does not resolve there.
    await other.call("PUT", "/crm", 201, json={"name": "Other CRM"})
    await other.call("GET", f"/crm/configs/{config_id}", 404)
    await other.call("POST", f"/crm/configs/{config_id}:syncTools", 404)
    _, problem = await other.call("PATCH", "/crm/mcp", 422, json={"configId": config_id})
    assert fields_of(problem) == {"configId"}
    _, configs = await other.call("GET", "/crm/configs", 200)
    assert configs["items"] == []
    async with client.get("/v1/tenants/other/audit", headers=auth("other")) as resp:
        events = (await resp.json())["items"]
    assert [e["action"] for e in events] == ["integration.created"]
    _, acme = await api.call("GET", "/crm", 200)
    assert acme["name"] == "CRM"


async def test_token_granting_several_or_all_tenants(client: TestClient) -> None:
    now = int(time.time())
    base = {"sub": "admin", "iat": now, "exp": now + 600}
    for grant in ({"tenants": ["other", "acme"]}, {"tenants": ["*"]}, {"tenant": "acme"}):
        token = jwt.encode({**base, **grant}, JWT_SECRET, "HS256")
        async with client.get(BASE, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200, grant
    for grant in (
        {"tenants": ["other"], "tenant": "another"},
        {"tenants": ["acme-corp"]},
        {"tenants": ["ACME"]},
    ):
        token = jwt.encode({**base, **grant}, JWT_SECRET, "HS256")
        async with client.get(BASE, headers={"Authorization": f"Bearer {token}"}) as resp:
            await problem_of(resp, 403, "forbidden")


async def _snapshot(api: Api, config_id: str) -> list[Any]:
    out = []
    for path in ("", "/crm", "/crm/mcp", "/crm/configs", f"/crm/configs/{config_id}"):
        out.append((await api.call("GET", path, 200))[1])
    async with api.client.get("/v1/tenants/acme/audit", headers=api.headers) as resp:
        out.append(await resp.json())
    return out


async def _assert_acme_untouched(api: Api, config_id: str) -> None:
    _, integration = await api.call("GET", "/crm", 200)
    assert integration["name"] == "CRM"
    _, settings = await api.call("GET", "/crm/mcp", 200)
    assert settings["enabled"] is False and settings["description"] is None
    _, configs = await api.call("GET", "/crm/configs", 200)
    assert [c["configId"] for c in configs["items"]] == [config_id]


# pagination parameters ------------------------------------------------------------------------
@pytest.mark.parametrize("path", [BASE, BASE + "/crm/configs", "/v1/tenants/acme/audit"])
async def test_bad_limit_and_cursor_are_422(client: TestClient, api: Api, path: str) -> None:
    await api.integration_with_config()
    for limit in ("0", "-1", "201", "abc", "1.5", "", "²", " 5", "1" * 5000, "0x10"):
        async with client.get(path, params={"limit": limit}, headers=api.headers) as resp:
            problem = await problem_of(resp, 422, "validation-failed")
        assert fields_of(problem) == {"limit"}, limit
    wrong_kind = encode_cursor(5) if "audit" not in path else encode_cursor("crm")
    for cursor in (
        "%%%",
        "bm90LWpzb24",
        wrong_kind,
        encode_cursor(True),
        "W10",
        encode_cursor(2**70),
        encode_cursor(-1),
        encode_cursor("a\u0000"),
        encode_cursor(1.5),
        base64.urlsafe_b64encode(b"[" * 5000).decode(),
        base64.urlsafe_b64encode(b'["a", NaN]').decode(),
    ):
        async with client.get(path, params={"cursor": cursor}, headers=api.headers) as resp:
            problem = await problem_of(resp, 422, "validation-failed")
        assert fields_of(problem) == {"cursor"}, cursor


# request ids ----------------------------------------------------------------------------------
async def test_request_id_is_echoed_or_generated(
    client: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    async with client.get(BASE + "/nope", headers={**auth(), "X-Request-Id": "req-123.abc"}) as r:
        problem = await problem_of(r, 404)
        assert r.headers["X-Request-Id"] == "req-123.abc"
    assert problem["requestId"] == "req-123.abc"

    async with client.get(BASE, headers={**auth(), "X-Request-Id": "ok-1"}) as resp:
        assert resp.status == 200 and resp.headers["X-Request-Id"] == "ok-1"

    seen = set()
    for headers in ({}, {"X-Request-Id": "bad id with spaces"}, {"X-Request-Id": "x" * 200}):
        async with client.get(BASE + "/nope", headers={**auth(), **headers}) as resp:
            problem = await problem_of(resp, 404)
            generated = resp.headers["X-Request-Id"]
        assert re.fullmatch(r"[A-Za-z0-9._\-]{8,128}", generated)
        assert generated != headers.get("X-Request-Id")
        seen.add(generated)
    assert len(seen) == 3  # a fresh one each time
    async with client.get("/healthz") as resp:
        assert resp.headers.get("X-Request-Id")


# failures inside the service ------------------------------------------------------------------
async def test_unexpected_exception_is_a_500_problem_without_details(
    client: TestClient, api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("boom-secret")

    monkeypatch.setattr(SettingsService, "get_integration", boom)
    caplog.set_level(logging.DEBUG)
    async with client.get(BASE + "/crm", headers=api.headers) as resp:
        text = await resp.text()
        problem = await problem_of(resp, 500, "internal-error")
    for leak in ("boom-secret", "Traceback", "RuntimeError", ".py"):
        assert leak not in text, leak
    logged = [r for r in caplog.records if r.exc_info and "boom-secret" in str(r.exc_info[1])]
    assert logged, "the failure must be logged with its traceback"
    assert any(problem["requestId"] in r.getMessage() for r in logged)
    # The app keeps serving.
    async with client.get(BASE, headers=api.headers) as resp:
        assert resp.status == 200


async def test_store_failure_is_503_with_retry_after(
    client: TestClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})

    async def down(*_args: Any, **_kwargs: Any) -> Any:
        raise StoreUnavailableError("connection to 10.9.8.7 failed: password=hunter2")

    monkeypatch.setattr(StoreSession, "get_integration", down)
    monkeypatch.setattr(StoreSession, "list_audit", down)
    for method, path, body in (
        ("GET", BASE + "/crm", None),
        ("PUT", BASE + "/crm", {"name": "x"}),
        ("GET", "/v1/tenants/acme/audit", None),
    ):
        async with client.request(method, path, json=body, headers=api.headers) as resp:
            text = await resp.text()
            await problem_of(resp, 503, "store-unavailable")
            assert int(resp.headers["Retry-After"]) > 0
        assert "hunter2" not in text and "10.9.8.7" not in text


async def test_closed_store_is_503_everywhere(client: TestClient, api: Api) -> None:
    config_id = await api.integration_with_config()
    await client.app[STORE].close()
    for route in ROUTES:
        path = concrete(route.path, config_id)
        body = VALID_BODIES.get(route.body or "")
        async with client.request(route.method, path, json=body, headers=api.headers) as resp:
            await problem_of(resp, 503)
            assert int(resp.headers["Retry-After"]) > 0
    async with client.get("/readyz") as resp:
        problem = await problem_of(resp, 503)
        assert resp.headers["Retry-After"]
    assert problem["checks"]["store"] == "unreachable"
    async with client.get("/healthz") as resp:
        assert resp.status == 200
