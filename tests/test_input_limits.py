"""Every bound on request input, each with its own clear answer (docs/mcp-endpoints.md and
docs/settings-api.md, "Limits"): body size, JSON nesting depth, batch length, header size, and
the size and depth of tools/call arguments. The limits live in the HTTP layers, not the store,
so one backend (SQLite) is enough here."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import Api

from gateway.transport.limits import (
    MAX_BATCH_MESSAGES,
    MAX_TOOL_ARGUMENTS_BYTES,
    MAX_TOOL_ARGUMENTS_DEPTH,
)
from mcp_core.json_codec import NOT_PARSED, fast_loads
from mcp_core.json_limits import MAX_JSON_DEPTH, too_deep
from settings_api.http import SETTINGS

MODERN = "2026-07-28"
LEGACY = "2025-03-26"
MCP = "/v1/tenants/acme/integrations/crm/mcp:"

pytestmark = pytest.mark.backends("sqlite")


@pytest.fixture
async def key(api: Api) -> str:
    """The API key of acme/crm, enabled, exposing both tools of its inline config."""
    config_id = await api.integration_with_config("crm")
    return await api.enable(config_id, ["search_contacts", "create_contact"])


def nested(depth: int, leaf: Any = 0) -> Any:
    """`depth` levels of alternating arrays and objects around `leaf`."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def nested_bytes(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def post(
    client: TestClient,
    key: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    endpoint: str = "call",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    sent = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        **(headers or {}),
    }
    async with client.post(MCP + endpoint, data=data, headers=sent) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


def modern_call(
    arguments: Any, name: str = "search_contacts"
) -> tuple[dict[str, Any], dict[str, str]]:
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name}
    return message, headers


def rpc_error(body: Any, code: int) -> dict[str, Any]:
    assert isinstance(body, dict) and "error" in body, body
    assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


# --- the depth check itself --------------------------------------------------------------------
def test_depth_counts_arrays_and_objects_and_has_a_fast_path() -> None:
    assert not too_deep(0, 0) and not too_deep("[[[[", 1)
    assert not too_deep([], 1) and too_deep([[]], 1)
    assert not too_deep(nested(64), 64) and too_deep(nested(65), 64)
    wide = [[0] * 10 for _ in range(1000)]
    assert not too_deep(wide, 2) and too_deep(wide, 1)
    # Brackets inside strings only make the fast path fall back to the walk.
    text = "[" * 100
    assert not too_deep({"a": text}, 1, raw=json.dumps({"a": text}).encode())
    assert not too_deep(nested(64), 64, raw=json.dumps(nested(64)).encode())


# --- MCP endpoints -----------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [None, LEGACY, MODERN])
async def test_mcp_nesting_past_64_levels_is_400_parse_error(
    client: TestClient, key: str, protocol: str | None
) -> None:
    headers = {"MCP-Protocol-Version": protocol} if protocol else {}
    for depth in (MAX_JSON_DEPTH + 1, 900, 5000, 100_000):
        status, body = await post(client, key, raw=nested_bytes(depth), headers=headers)
        assert status == 400
        error = rpc_error(body, -32700)
        assert body["id"] is None
        assert error["data"] == "the body nests arrays and objects more than 64 levels deep"


async def test_mcp_nesting_of_64_levels_is_served(client: TestClient, key: str) -> None:
    # message (1) → params (2) → 62 more levels = 64
    message = {"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"x": nested(62)}}
    assert not too_deep(message, 64) and too_deep(message, 63)
    status, body = await post(client, key, message)
    assert (status, body) == (200, {"jsonrpc": "2.0", "id": 3, "result": {}})
    message["params"]["x"] = nested(63)
    status, body = await post(client, key, message)
    assert status == 400
    rpc_error(body, -32700)


async def test_mcp_batches_hold_at_most_50_messages(client: TestClient, key: str) -> None:
    def batch(size: int) -> list[dict[str, Any]]:
        return [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(size)]

    headers = {"MCP-Protocol-Version": LEGACY}
    status, body = await post(client, key, batch(MAX_BATCH_MESSAGES), headers=headers)
    assert status == 200 and [a["id"] for a in body] == list(range(MAX_BATCH_MESSAGES))
    for size in (MAX_BATCH_MESSAGES + 1, 1000):
        status, body = await post(client, key, batch(size), headers=headers)
        assert status == 400
        error = rpc_error(body, -32600)
        assert error["data"] == "a batch holds at most 50 messages"


async def test_tool_arguments_depth_limit(client: TestClient, key: str) -> None:
    ok, headers = modern_call({"a": nested(MAX_TOOL_ARGUMENTS_DEPTH - 1)})
    status, body = await post(client, key, ok, endpoint="test", headers=headers)
    assert status == 200 and "result" in body, body
    deep, headers = modern_call({"a": nested(MAX_TOOL_ARGUMENTS_DEPTH)})
    for endpoint in ("call", "test"):
        status, body = await post(client, key, deep, endpoint=endpoint, headers=headers)
        assert status == 400  # -32602 is a 400 in the modern era
        error = rpc_error(body, -32602)
        assert "more than 32 levels deep" in error["message"]
        assert error["data"] == {"limit": MAX_TOOL_ARGUMENTS_DEPTH}


async def test_tool_arguments_size_limit(client: TestClient, key: str) -> None:
    # Both bodies fit MCPGW_MAX_BODY_BYTES (1 MiB): only the arguments bound applies.
    small, headers = modern_call({"text": "x" * (MAX_TOOL_ARGUMENTS_BYTES - 20)})
    status, body = await post(client, key, small, endpoint="test", headers=headers)
    assert status == 200 and "result" in body, body
    # Counted in UTF-8 bytes: 2 bytes per "é".
    large, headers = modern_call({"text": "é" * (MAX_TOOL_ARGUMENTS_BYTES // 2)})
    raw = json.dumps(large, ensure_ascii=False).encode()
    status, body = await post(client, key, raw=raw, endpoint="test", headers=headers)
    assert status == 400
    error = rpc_error(body, -32602)
    assert f"larger than {MAX_TOOL_ARGUMENTS_BYTES} bytes" in error["message"]


async def test_tool_arguments_limits_in_the_legacy_era_and_in_batches(
    client: TestClient, key: str
) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "tools/call",
        "params": {"name": "search_contacts", "arguments": {"a": nested(40)}},
    }
    async with client.post(
        MCP + "test",
        json={
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        headers={"Authorization": f"Bearer {key}"},
    ) as resp:
        session = resp.headers["Mcp-Session-Id"]
    status, body = await post(
        client,
        key,
        call,
        endpoint="test",
        headers={"MCP-Protocol-Version": "2025-11-25", "Mcp-Session-Id": session},
    )
    assert status == 200  # legacy eras answer invalid params with 200
    rpc_error(body, -32602)
    async with client.post(
        MCP + "test",
        json={
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY,
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        headers={"Authorization": f"Bearer {key}"},
    ) as resp:
        session = resp.headers["Mcp-Session-Id"]
    status, body = await post(
        client,
        key,
        [call, {"jsonrpc": "2.0", "id": 10, "method": "ping"}],
        endpoint="test",
        headers={"MCP-Protocol-Version": LEGACY, "Mcp-Session-Id": session},
    )
    assert status == 200
    rpc_error(body[0], -32602)
    assert body[1] == {"jsonrpc": "2.0", "id": 10, "result": {}}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}',  # found by tests/test_mcp_fuzz.py
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\udfff"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"a\\uDBFFb"}}',
    ],
)
async def test_lone_surrogates_are_a_parse_error_not_a_500(
    client: TestClient, key: str, raw: bytes
) -> None:
    status, body = await post(client, key, raw=raw)
    assert status == 400
    error = rpc_error(body, -32700)
    assert body["id"] is None
    assert "lone surrogate" in error["data"]
    # A surrogate pair is one character, and fine.
    status, body = await post(
        client, key, raw=b'{"jsonrpc":"2.0","id":"\\ud83d\\ude00","method":"ping"}'
    )
    assert (status, body) == (200, {"jsonrpc": "2.0", "id": "\U0001f600", "result": {}})


async def test_mcp_body_over_the_limit_is_413(client: TestClient, key: str) -> None:
    limit = client.app[SETTINGS].max_body_bytes
    status, body = await post(client, key, raw=b" " * (limit + 1))
    assert status == 413 and body["type"].endswith("/payload-too-large")


# --- settings API ------------------------------------------------------------------------------
async def test_rest_nesting_past_64_levels_is_a_400_problem(api: Api) -> None:
    headers = {**api.headers, "Content-Type": "application/json"}
    for raw in (
        json.dumps({"name": "x", "junk": nested(MAX_JSON_DEPTH)}).encode(),
        nested_bytes(5000),
        nested_bytes(100_000),
    ):
        async with api.client.put(api.base + "/crm", data=raw, headers=headers) as resp:
            problem = await resp.json()
            assert resp.status == 400
            assert resp.content_type == "application/problem+json"
        assert problem["type"].endswith("/malformed-json")
        assert problem["detail"] == "the body nests arrays and objects more than 64 levels deep"
    # 64 levels parse; the schema then names the unknown field.
    body = {"name": "x", "junk": nested(MAX_JSON_DEPTH - 1)}
    async with api.client.put(api.base + "/crm", data=json.dumps(body), headers=headers) as resp:
        problem = await resp.json()
        assert resp.status == 422, problem
    assert problem["errors"] == [{"field": "junk", "message": "is not a known field"}]


async def test_rest_body_over_the_limit_is_413(api: Api) -> None:
    headers = {**api.headers, "Content-Type": "application/json"}
    async with api.client.put(
        api.base + "/crm", data=b" " * (1_048_576 + 1), headers=headers
    ) as resp:
        problem = await resp.json()
        assert resp.status == 413
    assert problem["type"].endswith("/payload-too-large")


# --- headers (answered by aiohttp's parser, before any middleware) -----------------------------
async def raw_exchange(client: TestClient, request: bytes) -> bytes:
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.parametrize("case", ["long-header", "long-request-line", "too-many-headers"])
async def test_oversized_headers_are_a_plain_400_and_the_server_stays_up(
    client: TestClient, key: str, case: str
) -> None:
    path = (MCP + "call").encode()
    head = b"POST " + path + b" HTTP/1.1\r\nHost: gw.test\r\n"
    if case == "long-header":
        head += b"Authorization: Bearer " + b"a" * 16_400 + b"\r\n"  # header lines: 16 KiB
    elif case == "long-request-line":
        head = b"POST " + path + b"?" + b"q" * 8200 + b" HTTP/1.1\r\nHost: gw.test\r\n"
    else:
        head += b"".join(b"X-H%d: v\r\n" % i for i in range(129))
    answer = await raw_exchange(client, head + b"Content-Length: 0\r\n\r\n")
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"400", answer[:200]
    assert b"text/plain" in rest.split(b"\r\n\r\n")[0]
    assert b"Traceback" not in answer
    # Within the bounds: served as usual, and the server is still there.
    async with client.get("/healthz", headers={"X-Fill": "f" * 8000}) as resp:
        assert resp.status == 200
    status, body = await post(client, key, {"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert (status, body["result"]) == (200, {})


@pytest.mark.parametrize(
    "text",
    [
        "123456789012345678901234567890",
        "-9223372036854775809",
        "18446744073709551616",
        '{"id": 99999999999999999999}',
    ],
)
def test_fast_json_never_turns_big_integers_into_floats(text: str) -> None:
    """orjson reads integers past 64 bits as floats; those bodies must take the slow path,
    which keeps them exact (an id or argument is echoed as sent)."""
    assert fast_loads(text.encode()) is NOT_PARSED
    assert fast_loads(b'{"n": 184467440737095516, "s": "x"}') == {"n": 184467440737095516, "s": "x"}
