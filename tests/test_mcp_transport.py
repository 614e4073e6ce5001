"""The MCP endpoints over raw HTTP (docs/mcp-endpoints.md): every check of the pipeline in
order, both protocol eras, and every HTTP status and JSON-RPC code a client can get.

The resolver, limiter and executors are small fakes (the real ones have their own
tests); they live in tests/mcp_helpers.py, shared with the limit-counting and SDK client tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from mcp_helpers import (
    ALL_VERSIONS,
    BIG_KEY,
    CALL,
    GHOST_KEY,
    HIDDEN_TOOL,
    KEY,
    MAX_BODY,
    MODERN,
    OFF_KEY,
    OTHER_KEY,
    TENANT,
    TEST,
    TOOLS,
    assert_rate_headers,
    auth,
    b64_sentinel,
    build_mcp_app,
    error_of,
    executor_of,
    legacy,
    limiter_of,
    modern,
    modern_headers,
    modern_message,
    open_session,
    problem_of,
    rate_limited_data,
    send,
    sse_messages,
)

from gateway.context import (
    Endpoint,
)
from gateway.dispatch import CAPABILITIES, LEGACY_METHODS, MODERN_METHODS
from gateway.sessions import SessionCodec
from mcp_core.errors import RATE_LIMIT_META, rate_limited_answer, retry_data
from mcp_core.version import __version__
from mcp_core.versions import Era
from settings_api.http import SETTINGS


@pytest.fixture
async def mcp(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await aiohttp_client(build_mcp_app(tmp_path))


# --- the pipeline, in order -------------------------------------------------------------------


async def test_origin_not_allowed_is_403_before_anything_else(mcp: TestClient) -> None:
    resp, body = await modern(
        mcp, "tools/list", headers={"Origin": "http://evil.test"}, drop=("Authorization",)
    )
    await problem_of(resp, body, 403, "forbidden")
    assert "evil.test" in body["detail"]
    assert limiter_of(mcp).calls == []


async def test_allowed_origin_and_no_origin_pass(mcp: TestClient) -> None:
    for extra in ({"Origin": "http://gw.test:8080"}, {}):
        resp, body = await modern(mcp, "tools/list", headers=extra)
        assert resp.status == 200, body


async def test_wildcard_origin_allows_any(aiohttp_client: Any, tmp_path: Path) -> None:
    mcp = await aiohttp_client(build_mcp_app(tmp_path, MCPGW_ALLOWED_ORIGINS="*"))
    resp, body = await modern(mcp, "tools/list", headers={"Origin": "https://anything.test"})
    assert resp.status == 200, body


@pytest.mark.parametrize(
    ("headers", "reason", "challenge"),
    [
        ({}, "missing", 'Bearer realm="mcp-gateway"'),
        (
            {"Authorization": "Basic dXNlcjpwYXNz"},
            "malformed",
            'Bearer realm="mcp-gateway", error="invalid_request"',
        ),
        (
            {"Authorization": "Bearer not-a-key"},
            "malformed",
            'Bearer realm="mcp-gateway", error="invalid_token"',
        ),
        (
            {"Authorization": "Bearer mcpk_unknown"},
            "unknown",
            'Bearer realm="mcp-gateway", error="invalid_token"',
        ),
        (
            {"X-API-Key": "mcpk_unknown"},
            "unknown",
            'Bearer realm="mcp-gateway", error="invalid_token"',
        ),
    ],
)
async def test_bad_or_missing_key_is_401_with_challenge(
    mcp: TestClient, headers: dict[str, str], reason: str, challenge: str
) -> None:
    message = modern_message("tools/list")
    sent = {**modern_headers(message), **headers}
    if "Authorization" not in headers:
        sent.pop("Authorization")
    resp, body = await send(mcp, message, sent)
    await problem_of(resp, body, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"] == challenge
    assert body["reason"] == reason
    assert "RateLimit-Limit" not in resp.headers  # the limiter did not run
    assert limiter_of(mcp).calls == []


async def test_key_in_query_string_is_ignored(mcp: TestClient) -> None:
    message = modern_message("tools/list")
    sent = modern_headers(message)
    sent.pop("Authorization")
    resp, body = await send(mcp, message, sent, f"{CALL}?api_key={KEY}&key={KEY}")
    await problem_of(resp, body, 401)


async def test_x_api_key_header_is_accepted(mcp: TestClient) -> None:
    resp, body = await modern(
        mcp, "tools/list", headers={"X-API-Key": KEY}, drop=("Authorization",)
    )
    assert resp.status == 200, body


async def test_key_of_another_integration_is_403(mcp: TestClient) -> None:
    resp, body = await modern(mcp, "tools/list", key=OTHER_KEY)
    await problem_of(resp, body, 403, "forbidden")
    assert limiter_of(mcp).calls == []


async def test_disabled_integration_is_403_mcp_disabled(mcp: TestClient) -> None:
    resp, body = await modern(
        mcp, "tools/list", key=OFF_KEY, url=f"/v1/tenants/{TENANT}/integrations/off/mcp:call"
    )
    await problem_of(resp, body, 403, "mcp-disabled")


async def test_missing_integration_is_404(mcp: TestClient) -> None:
    resp, body = await modern(
        mcp, "tools/list", key=GHOST_KEY, url=f"/v1/tenants/{TENANT}/integrations/ghost/mcp:test"
    )
    await problem_of(resp, body, 404, "not-found")


async def test_rate_limited_tools_call_is_an_error_result_with_retry_after_and_ratelimit_headers(
    mcp: TestClient,
) -> None:
    limiter_of(mcp).refuse = True
    resp, body = await modern(mcp, "tools/call", {"name": "search_contacts", "arguments": {}})
    assert rate_limited_data(resp.status, resp.headers, body) == {
        "code": -32029,
        "retryAfterMs": 300,
        "retryAfterSeconds": 1,
    }
    assert body["id"] == 1
    assert body["result"]["resultType"] == "complete"  # a 2026-07-28 result like any other
    assert body["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "CRM"
    assert resp.headers["Retry-After"] == "1"
    assert_rate_headers(resp, remaining=0, reset=2)
    assert limiter_of(mcp).calls[-1] == {"key_id": "id-crm", "tools_call": True}
    assert limiter_of(mcp).sessions_asked == []
    assert executor_of(mcp, Endpoint.CALL).calls == []


@pytest.mark.parametrize("era", ["modern", "legacy"])
async def test_rate_limited_request_is_a_json_rpc_error_of_that_request(
    mcp: TestClient, era: str
) -> None:
    session = await open_session(mcp) if era == "legacy" else None
    limiter_of(mcp).refuse = True
    if era == "modern":
        resp, body = await modern(mcp, "tools/list")
    else:
        resp, body = await legacy(mcp, "tools/list", session=session, id="list-1")
    data = rate_limited_data(resp.status, resp.headers, body)
    assert data == {"retryAfterMs": 300, "retryAfterSeconds": 1}
    assert body["id"] == (1 if era == "modern" else "list-1")
    assert resp.content_type == "application/json"
    assert_rate_headers(resp, remaining=0, reset=2)


async def test_rate_limited_legacy_tools_call_is_an_error_result_even_on_sse(
    mcp: TestClient,
) -> None:
    session = await open_session(mcp)
    limiter_of(mcp).refuse = True
    resp, text = await legacy(
        mcp,
        "tools/call",
        {"name": "search_contacts", "arguments": {}},
        session=session,
        headers={"Accept": "text/event-stream"},
    )
    assert resp.content_type == "text/event-stream"
    body = json.loads(text.split("data: ", 1)[1])
    rate_limited_data(resp.status, resp.headers, body)
    assert executor_of(mcp, Endpoint.CALL).calls == []


async def test_rate_limited_notification_is_accepted_and_non_json_rpc_is_a_429_problem(
    mcp: TestClient,
) -> None:
    session = await open_session(mcp)
    limiter_of(mcp).refuse = True
    resp, _ = await legacy(mcp, "notifications/initialized", session=session, id=None)
    assert resp.status == 202 and resp.headers["Retry-After"] == "1"
    assert_rate_headers(resp, remaining=0, reset=2)
    for raw in (b"{nope", b"[1, 2]", b'"ping"'):
        resp, body = await send(mcp, None, auth(), raw=raw)
        await problem_of(resp, body, 429, "too-many-requests")
        assert resp.headers["Retry-After"] == "1"


def test_a_rate_limited_answer_names_the_wait_in_seconds_and_milliseconds() -> None:
    # Retry-After is whole seconds, at least 1; the milliseconds keep the precision.
    assert retry_data(0.3) == {"retryAfterMs": 300, "retryAfterSeconds": 1}
    assert retry_data(1.2001) == {"retryAfterMs": 1201, "retryAfterSeconds": 2}
    assert retry_data(0) == {"retryAfterMs": 1, "retryAfterSeconds": 1}
    error = rate_limited_answer("tools/list", 7, 0.3, Era.LEGACY)
    assert error["id"] == 7 and error["error"]["code"] == -32029
    assert error["error"]["data"] == {"retryAfterMs": 300, "retryAfterSeconds": 1}
    legacy = rate_limited_answer("tools/call", "a", 0.3, Era.LEGACY)["result"]
    assert legacy["isError"] is True and "resultType" not in legacy
    assert legacy["_meta"][RATE_LIMIT_META]["retryAfterMs"] == 300
    modern = rate_limited_answer("tools/call", "a", 0.3, Era.MODERN)["result"]
    assert modern["resultType"] == "complete"


async def test_limiter_down_and_failing_closed_is_503_with_retry_after(mcp: TestClient) -> None:
    limiter_of(mcp).unavailable = True
    resp, body = await modern(mcp, "tools/list")
    await problem_of(resp, body, 503)
    assert int(resp.headers["Retry-After"]) >= 1


async def test_ratelimit_headers_on_success_and_bucket_choice(mcp: TestClient) -> None:
    resp, _ = await modern(mcp, "tools/list")
    assert resp.status == 200
    assert_rate_headers(resp)
    resp, _ = await modern(mcp, "tools/call", {"name": "search_contacts", "arguments": {}})
    assert_rate_headers(resp)
    assert [c["tools_call"] for c in limiter_of(mcp).calls] == [False, True]


async def test_ratelimit_headers_on_transport_errors(mcp: TestClient) -> None:
    resp, body = await send(mcp, None, auth(), raw=b"{nope")
    error_of(body, -32700)
    assert_rate_headers(resp)


async def test_body_too_large_is_413_after_the_limiter(mcp: TestClient) -> None:
    big = modern_message(
        "tools/call", {"name": "search_contacts", "arguments": {"query": "x" * MAX_BODY}}
    )
    resp, body = await send(mcp, big, modern_headers(big))
    await problem_of(resp, body, 413, "payload-too-large")
    assert_rate_headers(resp)
    assert limiter_of(mcp).calls[-1]["tools_call"] is False  # never parsed
    limiter_of(mcp).refuse = True
    resp, body = await send(mcp, big, modern_headers(big))
    await problem_of(resp, body, 429)


async def test_chunked_body_too_large_is_413(mcp: TestClient) -> None:
    async def chunks() -> Any:
        for _ in range(4):
            yield b" " * (MAX_BODY // 2)

    async with mcp.post(
        CALL, data=chunks(), headers={**auth(), "Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 413


async def test_wrong_media_type_is_415(mcp: TestClient) -> None:
    message = modern_message("tools/list")
    resp, body = await send(mcp, message, modern_headers(message), content_type="text/plain")
    await problem_of(resp, body, 415, "unsupported-media-type")
    assert_rate_headers(resp)


# --- modern (2026-07-28) ------------------------------------------------------------------------


def assert_modern_result(result: dict[str, Any], *, cacheable: bool) -> None:
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"] == {
        "name": "CRM",
        "version": __version__,
    }
    if cacheable:
        assert result["cacheScope"] == "private"
        assert isinstance(result["ttlMs"], int) and result["ttlMs"] > 0
    else:
        assert "ttlMs" not in result and "cacheScope" not in result


async def test_discover(mcp: TestClient) -> None:
    resp, body = await modern(mcp, "server/discover")
    assert resp.status == 200 and resp.content_type == "application/json"
    assert body["id"] == 1
    result = body["result"]
    assert result["supportedVersions"] == ALL_VERSIONS
    assert result["capabilities"] == {"tools": {"listChanged": False}, "logging": {}}
    assert result["instructions"] == "Use crm for customer data."
    assert_modern_result(result, cacheable=True)
    assert "Mcp-Session-Id" not in resp.headers


# The methods each server capability gates (the spec's feature pages): a method is served
# exactly when its capability is declared.
GATED_METHODS = {
    "tools": ("tools/list", "tools/call"),
    "resources": (
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
    ),
    "prompts": ("prompts/list", "prompts/get"),
    "completions": ("completion/complete",),
    "logging": ("logging/setLevel",),
}
# 2026-07-28 removed it (the level travels in each request's `_meta`): never served there.
REMOVED_IN_MODERN = frozenset({"logging/setLevel"})


@pytest.mark.parametrize("modern_era", [True, False])
def test_a_method_is_served_exactly_when_its_capability_is_declared(modern_era: bool) -> None:
    table = MODERN_METHODS if modern_era else LEGACY_METHODS
    for capability, methods in GATED_METHODS.items():
        for method in methods:
            served = capability in CAPABILITIES
            if modern_era and method in REMOVED_IN_MODERN:
                served = False
            assert (method in table) == served, (capability, method)


async def test_initialize_and_discover_declare_the_same_capabilities(mcp: TestClient) -> None:
    _, discovered = await modern(mcp, "server/discover")
    _, initialized = await legacy(
        mcp,
        "initialize",
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}},
        version=None,
    )
    assert discovered["result"]["capabilities"] == initialized["result"]["capabilities"]
    assert discovered["result"]["capabilities"] == dict(CAPABILITIES)


@pytest.mark.parametrize("method", ["resources/list", "resources/templates/list", "prompts/list"])
@pytest.mark.parametrize("url", [CALL, TEST])
async def test_undeclared_lists_are_method_not_found_in_both_eras(
    mcp: TestClient, method: str, url: str
) -> None:
    resp, body = await modern(mcp, method, url=url)
    assert resp.status == 404
    error_of(body, -32601)
    resp, body = await legacy(mcp, method, session=await open_session(mcp, url=url), url=url)
    assert resp.status == 200
    error_of(body, -32601)


async def test_tools_list_is_exactly_the_exposed_tools(mcp: TestClient) -> None:
    resp, body = await modern(mcp, "tools/list")
    assert resp.status == 200
    assert body["result"]["tools"] == list(TOOLS)
    assert "nextCursor" not in body["result"]
    assert_modern_result(body["result"], cacheable=True)


async def test_tools_call_result_carries_modern_fields(mcp: TestClient) -> None:
    resp, body = await modern(mcp, "tools/call", {"name": "contact_stats", "arguments": {}})
    assert resp.status == 200
    assert body["result"]["structuredContent"] == {"count": 3}
    assert body["result"]["isError"] is False  # the executor left it out
    assert_modern_result(body["result"], cacheable=False)


@pytest.mark.parametrize(
    ("headers", "drop"),
    [
        ({"Mcp-Method": "tools/call"}, ()),
        ({}, ("Mcp-Method",)),
        ({"MCP-Protocol-Version": "2025-11-25"}, ()),
        ({}, ("MCP-Protocol-Version",)),
    ],
)
async def test_routing_header_mismatch_or_missing_is_400_32020(
    mcp: TestClient, headers: dict[str, str], drop: tuple[str, ...]
) -> None:
    resp, body = await modern(mcp, "tools/list", headers=headers, drop=drop)
    assert resp.status == 400
    assert error_of(body, -32020)["message"].startswith("Header mismatch")
    assert body["id"] == 1


async def test_mcp_name_must_match_params_name(mcp: TestClient) -> None:
    params = {"name": "search_contacts", "arguments": {}}
    resp, body = await modern(mcp, "tools/call", params, headers={"Mcp-Name": "contact_stats"})
    assert resp.status == 400
    error_of(body, -32020)
    resp, body = await modern(mcp, "tools/call", params, drop=("Mcp-Name",))
    assert resp.status == 400
    error_of(body, -32020)
    assert executor_of(mcp, Endpoint.CALL).calls == []


async def test_mcp_name_base64_sentinel_is_decoded(mcp: TestClient) -> None:
    params = {"name": "search_contacts", "arguments": {}}
    resp, body = await modern(
        mcp, "tools/call", params, headers={"Mcp-Name": b64_sentinel("search_contacts")}
    )
    assert resp.status == 200, body
    resp, body = await modern(
        mcp, "tools/call", params, headers={"Mcp-Name": "=?base64?not base64!?="}
    )
    assert resp.status == 400
    error_of(body, -32020)


async def test_duplicate_routing_header_is_400_32020(mcp: TestClient) -> None:
    message = modern_message("tools/list")
    headers = [
        *modern_headers(message).items(),
        ("Mcp-Method", "tools/list"),
        ("Content-Type", "application/json"),
    ]
    async with mcp.post(CALL, data=json.dumps(message), headers=headers) as resp:
        assert resp.status == 400
        error_of(await resp.json(), -32020)


async def test_mcp_param_headers_are_checked_against_arguments(mcp: TestClient) -> None:
    params = {"name": "regional_lookup", "arguments": {"region": "eu-west1", "shard": 7}}
    ok = {"Mcp-Param-Region": "eu-west1", "Mcp-Param-Shard": "7"}
    resp, body = await modern(mcp, "tools/call", params, headers=ok)
    assert resp.status == 200, body
    resp, body = await modern(
        mcp,
        "tools/call",
        {"name": "regional_lookup", "arguments": {"region": "Zürich"}},
        headers={"Mcp-Param-Region": b64_sentinel("Zürich")},
    )
    assert resp.status == 200, body
    for bad in (
        {"Mcp-Param-Region": "us-east1", "Mcp-Param-Shard": "7"},  # differs
        {"Mcp-Param-Shard": "7"},  # missing for a present argument
        {**ok, "Mcp-Param-Shard": "8"},
    ):
        resp, body = await modern(mcp, "tools/call", params, headers=bad)
        assert resp.status == 400, bad
        error_of(body, -32020)
    resp, body = await modern(
        mcp,
        "tools/call",  # a header for an absent argument
        {"name": "regional_lookup", "arguments": {"region": "eu"}},
        headers={"Mcp-Param-Region": "eu", "Mcp-Param-Shard": "1"},
    )
    assert resp.status == 400
    error_of(body, -32020)


async def test_unsupported_version_is_400_32022_listing_supported(mcp: TestClient) -> None:
    message = modern_message("tools/list", version="2099-01-01")
    headers = {**modern_headers(message), "MCP-Protocol-Version": "2099-01-01"}
    resp, body = await send(mcp, message, headers)
    assert resp.status == 400
    error = error_of(body, -32022)
    assert error["data"] == {"supported": ALL_VERSIONS, "requested": "2099-01-01"}


async def test_modern_header_without_meta_is_400(mcp: TestClient) -> None:
    message = {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
    resp, body = await send(
        mcp, message, {**auth(), "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"}
    )
    assert resp.status == 400
    error_of(body, -32602)
    message = modern_message("tools/list")
    del message["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"]
    resp, body = await send(mcp, message, modern_headers(message))
    assert resp.status == 400
    error_of(body, -32602)


@pytest.mark.parametrize("method", ["initialize", "ping", "resources/read", "no/such"])
async def test_unknown_method_is_404_32601(mcp: TestClient, method: str) -> None:
    resp, body = await modern(
        mcp,
        method,
        {"uri": "file:///x"} if "read" in method else None,
        headers={"Mcp-Name": "file:///x"},
    )
    assert resp.status == 404
    error_of(body, -32601)
    assert body["id"] == 1


async def test_modern_batch_is_400_32600(mcp: TestClient) -> None:
    message = modern_message("tools/list")
    resp, body = await send(
        mcp, [message, modern_message("tools/list", id=2)], modern_headers(message)
    )
    assert resp.status == 400
    error_of(body, -32600)
    assert body["id"] is None


async def test_modern_ignores_session_ids(mcp: TestClient) -> None:
    resp, body = await modern(mcp, "tools/list", headers={"Mcp-Session-Id": "forged.session"})
    assert resp.status == 200, body
    assert "Mcp-Session-Id" not in resp.headers
    assert limiter_of(mcp).sessions_asked == []


async def test_unknown_fields_are_ignored(mcp: TestClient) -> None:
    message = modern_message(
        "tools/call",
        {
            "name": "search_contacts",
            "arguments": {"q": 1},
            "futureField": {"x": 1},
            "ctx": "not a context",
        },
    )
    message["futureTopLevel"] = True
    resp, body = await send(mcp, message, modern_headers(message))
    assert resp.status == 200, body
    assert body["result"]["content"][0]["text"] == 'call:search_contacts:{"q": 1}'


# --- legacy (2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05) --------------------------------------


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2025-11-25", "2025-11-25"),
        ("2099-01-01", "2025-11-25"),
        ("2024-11-05", "2024-11-05"),
        ("2024-10-07", "2025-11-25"),
    ],
)
async def test_initialize_negotiates_without_error(
    mcp: TestClient, offered: str, answered: str
) -> None:
    resp, body = await legacy(
        mcp,
        "initialize",
        {
            "protocolVersion": offered,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
        version=None,
    )
    assert resp.status == 200, body
    result = body["result"]
    assert result == {
        "protocolVersion": answered,
        "capabilities": {"tools": {"listChanged": False}, "logging": {}},
        "serverInfo": {"name": "CRM", "version": __version__},
        "instructions": "Use crm for customer data.",
    }
    session = resp.headers["Mcp-Session-Id"]
    assert session.isascii() and session.isprintable() and " " not in session
    info = SessionCodec(mcp.app[SETTINGS].session_secret).verify(session, "id-crm")
    assert info is not None and info.protocol_version == answered


async def test_each_initialize_gets_a_new_session(mcp: TestClient) -> None:
    assert await open_session(mcp) != await open_session(mcp)


async def test_session_is_required_after_initialize(mcp: TestClient) -> None:
    resp, body = await legacy(mcp, "tools/list")
    assert resp.status == 400
    error_of(body, -32600)
    session = await open_session(mcp)
    resp, body = await legacy(mcp, "tools/list", session=session)
    assert resp.status == 200, body
    assert body["result"] == {"tools": list(TOOLS)}  # no modern fields on legacy results
    assert limiter_of(mcp).sessions_asked[-1] == session


async def test_forged_expired_or_foreign_session_is_404(mcp: TestClient) -> None:
    session = await open_session(mcp)
    payload, _, mac = session.rpartition(".")
    forged = f"{payload}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}"
    secret = mcp.app[SETTINGS].session_secret
    expired = SessionCodec(secret, clock=lambda: time.time() - 2 * 86400).mint(
        "id-crm", "2025-11-25"
    )
    foreign = await open_session(
        mcp, key=OTHER_KEY, url=f"/v1/tenants/{TENANT}/integrations/billing/mcp:call"
    )
    other_secret = SessionCodec("another-secret").mint("id-crm", "2025-11-25")
    for bad in (forged, expired, foreign, other_secret, "garbage"):
        resp, body = await legacy(mcp, "tools/list", session=bad)
        assert resp.status == 404, bad
        error_of(body, -32600)


async def test_delete_ends_the_session(mcp: TestClient) -> None:
    session = await open_session(mcp)
    async with mcp.delete(CALL, headers={**auth(), "Mcp-Session-Id": session}) as resp:
        assert resp.status == 204
        assert_rate_headers(resp)
    expires_at = limiter_of(mcp).ended[session]
    assert time.time() + 86400 - 60 < expires_at <= time.time() + 86400
    resp, _ = await legacy(mcp, "tools/list", session=session)
    assert resp.status == 404
    resp, _ = await legacy(mcp, "notifications/initialized", session=session, id=None)
    assert resp.status == 404
    async with mcp.delete(CALL, headers={**auth(), "Mcp-Session-Id": session}) as resp:
        assert resp.status == 404
    async with mcp.delete(CALL, headers=auth()) as resp:
        assert resp.status == 400
    async with mcp.delete(CALL, headers={"Mcp-Session-Id": session}) as resp:
        assert resp.status == 401


async def test_notifications_are_202(mcp: TestClient) -> None:
    session = await open_session(mcp)
    for headers in ({"session": session}, {}):
        resp, body = await legacy(mcp, "notifications/initialized", id=None, **headers)
        assert resp.status == 202 and body == ""
        resp, body = await legacy(
            mcp, "notifications/cancelled", {"requestId": 1, "reason": "x"}, id=None, **headers
        )
        assert resp.status == 202 and body == ""
    # a client's JSON-RPC response: nothing awaits it
    resp, body = await send(
        mcp, {"jsonrpc": "2.0", "id": 9, "result": {}}, {**auth(), "Mcp-Session-Id": session}
    )
    assert resp.status == 202


async def test_ping(mcp: TestClient) -> None:
    resp, body = await legacy(mcp, "ping")
    assert resp.status == 200 and body == {"jsonrpc": "2.0", "id": 1, "result": {}}
    resp, body = await legacy(mcp, "ping", session=await open_session(mcp), id="p")
    assert body == {"jsonrpc": "2.0", "id": "p", "result": {}}


async def test_batch_works_on_2025_03_26_only(mcp: TestClient) -> None:
    session = await open_session(mcp, "2025-03-26")
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": "b",
            "method": "tools/call",
            "params": {"name": "search_contacts", "arguments": {"query": "ann"}},
        },
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
        {"jsonrpc": "1.0", "id": 4, "method": "ping"},
    ]
    headers = {**auth(), "Mcp-Session-Id": session}  # no MCP-Protocol-Version: 2025-03-26
    resp, body = await send(mcp, batch, headers)
    assert resp.status == 200, body
    assert [answer["id"] for answer in body] == [1, "b", 3, 4]
    assert body[0]["result"]["tools"] == list(TOOLS)
    assert body[1]["result"]["content"][0]["text"].startswith("call:search_contacts")
    assert body[2]["result"] == {}
    error_of(body[3], -32600)
    # The POST was counted when it started, then every other member: the tools/call in both
    # buckets.
    assert [c["tools_call"] for c in limiter_of(mcp).calls[-5:]] == [
        False,
        False,
        True,
        False,
        False,
    ]
    resp, body = await send(mcp, batch[1:2], headers)
    assert resp.status == 202 and body == ""
    resp, body = await send(mcp, batch, {**headers, "MCP-Protocol-Version": "2025-03-26"})
    assert resp.status == 200
    for version in ("2025-11-25", "2025-06-18"):
        resp, body = await send(mcp, batch, {**headers, "MCP-Protocol-Version": version})
        assert resp.status == 400
        error_of(body, -32600)


async def test_batch_rules(mcp: TestClient) -> None:
    resp, body = await send(mcp, [], auth())
    assert resp.status == 400
    error_of(body, -32600)
    resp, body = await send(mcp, [{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}], auth())
    assert resp.status == 400  # needs a session
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-03-26"},
    }
    resp, body = await send(mcp, [init], auth())
    assert resp.status == 400
    error_of(body, -32600)


async def test_header_absent_means_the_sessions_version_else_2025_03_26(mcp: TestClient) -> None:
    session = await open_session(mcp, "2025-06-18")
    resp, body = await legacy(
        mcp, "tools/call", {"name": "search_contacts"}, session=session, version=None
    )
    assert resp.status == 200, body
    assert executor_of(mcp, Endpoint.CALL).calls[-1]["version"] == "2025-06-18"
    resp, body = await legacy(
        mcp, "tools/call", {"name": "search_contacts"}, session=session, version="2025-06-18"
    )
    assert executor_of(mcp, Endpoint.CALL).calls[-1]["version"] == "2025-06-18"
    assert executor_of(mcp, Endpoint.CALL).calls[-1]["session_id"] == session
    # Without a session, no header means 2025-03-26: the only version with batches.
    resp, body = await send(mcp, [{"jsonrpc": "2.0", "id": 1, "method": "ping"}], auth())
    assert resp.status == 200 and body == [{"jsonrpc": "2.0", "id": 1, "result": {}}]


async def test_unsupported_protocol_header_is_400(mcp: TestClient) -> None:
    session = await open_session(mcp)
    for version in ("2024-10-07", "1.0", "2099-01-01"):
        resp, body = await legacy(mcp, "tools/list", session=session, version=version)
        assert resp.status == 400, version
        assert error_of(body, -32022)["data"]["supported"] == ALL_VERSIONS


async def test_legacy_unknown_method_is_32601(mcp: TestClient) -> None:
    resp, body = await legacy(mcp, "server/discover", session=await open_session(mcp))
    assert resp.status == 200  # legacy JSON-RPC errors travel on 200
    error_of(body, -32601)


# --- both eras --------------------------------------------------------------------------------


async def test_tools_list_paginates_with_opaque_cursors(mcp: TestClient) -> None:
    url = f"/v1/tenants/{TENANT}/integrations/big/mcp:test"
    names: list[str] = []
    cursor = None
    pages = 0
    while True:
        resp, body = await modern(
            mcp, "tools/list", {"cursor": cursor} if cursor else None, url=url, key=BIG_KEY
        )
        assert resp.status == 200, body
        names += [tool["name"] for tool in body["result"]["tools"]]
        pages += 1
        cursor = body["result"].get("nextCursor")
        if cursor is None:
            break
        assert "tool" not in cursor and not cursor.isdigit()
    assert pages == 3
    assert names == [f"tool_{i:03d}" for i in range(250)]
    for bad in ("bogus", "", 17, "x" * 100):
        resp, body = await modern(mcp, "tools/list", {"cursor": bad}, url=url, key=BIG_KEY)
        assert resp.status == 400
        error_of(body, -32602)


async def test_legacy_tools_list_paginates(mcp: TestClient) -> None:
    url = f"/v1/tenants/{TENANT}/integrations/big/mcp:call"
    session = await open_session(mcp, key=BIG_KEY, url=url)
    resp, body = await legacy(mcp, "tools/list", session=session, key=BIG_KEY, url=url)
    assert len(body["result"]["tools"]) == 100
    resp, body = await legacy(
        mcp,
        "tools/list",
        {"cursor": body["result"]["nextCursor"]},
        session=session,
        key=BIG_KEY,
        url=url,
    )
    assert body["result"]["tools"][0]["name"] == "tool_100"
    resp, body = await legacy(
        mcp, "tools/list", {"cursor": "nope"}, session=session, key=BIG_KEY, url=url
    )
    assert resp.status == 200
    error_of(body, -32602)


@pytest.mark.parametrize("name", ["no_such_tool", HIDDEN_TOOL])
async def test_unknown_tool_is_32602_identically_on_both_urls(mcp: TestClient, name: str) -> None:
    answers = []
    for url in (CALL, TEST):
        resp, body = await modern(mcp, "tools/call", {"name": name, "arguments": {}}, url=url)
        answers.append((resp.status, body))
        session = await open_session(mcp, url=url)
        resp, body = await legacy(mcp, "tools/call", {"name": name}, session=session, url=url)
        answers.append((resp.status, body))
    assert answers[0] == answers[2] and answers[1] == answers[3]
    assert answers[0][0] == 400 and answers[1][0] == 200
    for _, body in answers:
        assert error_of(body, -32602)["message"] == f"Unknown tool: {name}"
    assert executor_of(mcp, Endpoint.CALL).calls == executor_of(mcp, Endpoint.TEST).calls == []


async def test_tools_call_goes_to_the_endpoints_executor(mcp: TestClient) -> None:
    _, body = await modern(
        mcp,
        "tools/call",
        {"name": "search_contacts", "arguments": {"query": "ann"}},
        url=TEST,
        headers={"X-Simulator-Seed": "42"},
    )
    assert body["result"]["content"][0]["text"] == 'test:search_contacts:{"query": "ann"}'
    call = executor_of(mcp, Endpoint.TEST).calls[-1]
    assert call["seed"] == "42" and call["era"] == "modern" and call["version"] == MODERN
    assert call["meta"]["io.modelcontextprotocol/protocolVersion"] == MODERN
    assert executor_of(mcp, Endpoint.CALL).calls == []


@pytest.mark.parametrize(
    "params",
    [
        {"arguments": {}},
        {"name": 5},
        {"name": "search_contacts", "arguments": [1]},
        {"name": "search_contacts", "arguments": "x"},
    ],
)
async def test_tools_call_invalid_params_is_32602(mcp: TestClient, params: dict[str, Any]) -> None:
    resp, body = await legacy(mcp, "tools/call", params, session=await open_session(mcp))
    error_of(body, -32602)
    message = modern_message("tools/call", params)
    resp, body = await send(mcp, message, modern_headers(message))
    assert resp.status == 400
    error_of(body, -32602)


async def test_tools_call_arguments_default_to_empty(mcp: TestClient) -> None:
    _, body = await legacy(
        mcp,
        "tools/call",
        {"name": "search_contacts", "arguments": None},
        session=await open_session(mcp),
    )
    assert body["result"]["content"][0]["text"] == "call:search_contacts:{}"


async def test_tool_call_error_becomes_its_jsonrpc_error(mcp: TestClient) -> None:
    resp, body = await modern(
        mcp, "tools/call", {"name": "search_contacts", "arguments": {"fail": True}}
    )
    assert resp.status == 200
    error = error_of(body, -32603)
    assert error["message"] == "Upstream MCP server timed out after 3 s"
    assert error["data"] == {"upstream": "timeout"}


@pytest.mark.parametrize("raw", [b"{nope", b"", b'{"a": NaN}', b"\xff\xfe{"])
async def test_parse_error_is_400_32700_with_null_id(mcp: TestClient, raw: bytes) -> None:
    for headers in (auth(), {**auth(), "MCP-Protocol-Version": MODERN}):
        resp, body = await send(mcp, None, headers, raw=raw)
        assert resp.status == 400
        error_of(body, -32700)
        assert body["id"] is None


@pytest.mark.parametrize(
    "message",
    [
        "a string",
        42,
        None,
        {"jsonrpc": "1.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": None, "method": "ping"},
        {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "id": 1, "method": 7},
        {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": "x"},
    ],
)
async def test_invalid_request_is_400_32600(mcp: TestClient, message: Any) -> None:
    resp, body = await send(mcp, message, auth())
    assert resp.status == 400, body
    error_of(body, -32600)


async def test_sse_only_accept_gets_one_sse_event(mcp: TestClient) -> None:
    resp, body = await modern(mcp, "tools/list", headers={"Accept": "text/event-stream"})
    assert resp.status == 200
    assert resp.content_type == "text/event-stream"
    assert resp.headers["X-Accel-Buffering"] == "no"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert_rate_headers(resp)
    assert body.startswith("event: message\ndata: ") and body.endswith("\n\n")
    assert body.count("data: ") == 1
    message = json.loads(body.split("data: ", 1)[1])
    assert message["id"] == 1 and message["result"]["tools"] == list(TOOLS)


async def test_json_when_both_accepted_or_no_accept(mcp: TestClient) -> None:
    for accept in ("application/json, text/event-stream", "*/*", None):
        resp, _ = await modern(
            mcp,
            "tools/list",
            headers={"Accept": accept} if accept else None,
            drop=() if accept else ("Accept",),
        )
        assert resp.content_type == "application/json", accept


@pytest.mark.parametrize("era", ["modern", "legacy"])
async def test_progress_is_streamed_as_sse(mcp: TestClient, era: str) -> None:
    params = {
        "name": "search_contacts",
        "arguments": {"progress": True},
        "_meta": {"progressToken": "tok-1"},
    }
    if era == "modern":
        resp, body = await modern(mcp, "tools/call", params)
    else:
        resp, body = await legacy(mcp, "tools/call", params, session=await open_session(mcp))
    assert resp.status == 200
    assert resp.content_type == "text/event-stream"
    assert resp.headers["X-Accel-Buffering"] == "no"
    assert_rate_headers(resp)
    messages = sse_messages(body)
    assert [m.get("method") for m in messages] == ["notifications/progress"] * 2 + [None]
    assert [m["params"]["progress"] for m in messages[:2]] == [1, 2]
    assert all(m["jsonrpc"] == "2.0" for m in messages)
    assert messages[2]["id"] == 1 and messages[2]["result"]["content"]


async def test_progress_without_sse_accept_is_plain_json(mcp: TestClient) -> None:
    params = {
        "name": "search_contacts",
        "arguments": {"progress": True},
        "_meta": {"progressToken": "tok-1"},
    }
    resp, body = await modern(mcp, "tools/call", params, headers={"Accept": "application/json"})
    assert resp.content_type == "application/json"
    assert body["result"]["content"]


async def test_client_disconnect_cancels_a_streaming_call(mcp: TestClient) -> None:
    message = modern_message(
        "tools/call",
        {"name": "search_contacts", "arguments": {"hang": True}, "_meta": {"progressToken": 5}},
    )
    executor = executor_of(mcp, Endpoint.CALL)
    resp = await mcp.post(
        CALL,
        data=json.dumps(message),
        headers={**modern_headers(message), "Content-Type": "application/json"},
    )
    assert resp.content_type == "text/event-stream"
    first = await resp.content.readuntil(b"\n\n")
    assert b"notifications/progress" in first
    resp.close()
    await asyncio.wait_for(executor.cancelled.wait(), timeout=3)


async def test_get_is_405_with_allow(mcp: TestClient) -> None:
    for url in (CALL, TEST):
        async with mcp.get(url, headers={**auth(), "Accept": "text/event-stream"}) as resp:
            body = await resp.json(content_type=None)
            await problem_of(resp, body, 405)
            assert resp.headers["Allow"] == "POST, DELETE"
        async with mcp.head(url, headers=auth()) as resp:
            assert resp.status == 405 and resp.headers["Allow"] == "POST, DELETE"


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/v1/tenants/acme/integrations/crm/mcp:call",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/v1/tenants/acme/integrations/crm/mcp:test",
        "/.well-known/openid-configuration",
        "/.well-known/openid-configuration/extra",
    ],
)
async def test_oauth_discovery_is_404(mcp: TestClient, path: str) -> None:
    async with mcp.get(path) as resp:
        await problem_of(resp, await resp.json(content_type=None), 404)


async def test_unexpected_executor_error_is_32603_without_details(
    mcp: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    resp, body = await modern(
        mcp, "tools/call", {"name": "search_contacts", "arguments": {"explode": True}}
    )
    assert resp.status == 200 and resp.content_type == "application/json"
    error = error_of(body, -32603)
    assert body["id"] == 1
    assert error["data"] == {"requestId": resp.headers["X-Request-Id"]}
    text = json.dumps(body)
    assert "hunter2" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert "hunter2" in caplog.text  # the details are in the log
