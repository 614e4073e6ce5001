"""Hypothesis fuzz of the MCP endpoints through the live app with a real key: arbitrary bytes,
invalid UTF-8, arbitrary JSON, JSON-RPC-shaped messages with random ids, methods and params,
batches, deep nesting, and random MCP headers. Whatever arrives, the answer is below 500, never
shows a traceback, and is JSON, an empty 202/204, or exactly one SSE event; the app keeps
answering /healthz.

The endpoints read the store only on cache misses, so SQLite is enough; rate limits are raised
so that every example reaches the transport."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import Api, make_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from settings_api.config import Settings

pytestmark = [pytest.mark.slow, pytest.mark.backends("sqlite")]

TOOLS = [
    {
        "name": "search_contacts",
        "description": "Find contacts",
        "inputSchema": {
            "type": "object",
            "properties": {
                "q": {"type": "string", "maxLength": 50},
                "limit": {"type": "integer", "minimum": 1},
            },
            "required": ["q"],
        },
    },
    {
        "name": "regional_lookup",
        "inputSchema": {
            "type": "object",
            "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
            "required": ["region"],
        },
    },
    {
        "name": "contact_stats",
        "inputSchema": {"type": "object"},
        "outputSchema": {
            "type": "object",
            "properties": {"count": {"type": "integer"}},
            "required": ["count"],
        },
    },
]
TOOL_NAMES = [t["name"] for t in TOOLS]
VERSIONS = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"]
METHODS = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "notifications/initialized",
    "notifications/cancelled",
    "completion/complete",
    "logging/setLevel",
]
FUZZ = examples(
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
SSE_EVENT = re.compile(r"event: message\n((?:data: [^\r\n]*\n)+)\n")


@pytest.fixture(name="settings")  # what conftest's `client` builds the app with
def app_settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(
        tmp_path,
        database_url,
        MCPGW_REQUEST_LIMIT_RPS="100000",
        MCPGW_REQUEST_LIMIT_BURST="100000",
        MCPGW_RATE_LIMIT_RPS="100000",
        MCPGW_RATE_LIMIT_BURST="100000",
        MCPGW_MAX_BODY_BYTES="65536",
    )


class Target:
    """The live app, a key for acme/crm, and a legacy session opened with it."""

    def __init__(self, client: TestClient, key: str, session: str) -> None:
        self.client = client
        self.key = key
        self.session = session


@pytest.fixture
async def target(client: TestClient, api: Api) -> Target:
    key = await api.enabled_key(TOOLS, exposed=TOOL_NAMES[:2])
    async with client.post(
        "/v1/tenants/acme/integrations/crm/mcp:test",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-03-26",
                "capabilities": {},
                "clientInfo": {"name": "fuzz", "version": "1"},
            },
        },
        headers={"Authorization": f"Bearer {key}"},
    ) as resp:
        assert resp.status == 200
        session = resp.headers["Mcp-Session-Id"]
    return Target(client, key, session)


# --- strategies ---------------------------------------------------------------------------------
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=25,
)
ids = st.one_of(
    st.integers(-(2**63), 2**63),
    st.text(max_size=20),
    st.none(),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
meta = st.fixed_dictionaries(
    {},
    optional={
        "io.modelcontextprotocol/protocolVersion": st.one_of(
            st.sampled_from(VERSIONS), json_values
        ),
        "io.modelcontextprotocol/clientCapabilities": st.one_of(st.just({}), json_values),
        "progressToken": st.one_of(st.integers(), st.text(max_size=10)),
    },
)
params = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(st.sampled_from([*TOOL_NAMES, "delete_all"]), json_values),
            "arguments": st.one_of(
                st.dictionaries(
                    st.sampled_from(["q", "limit", "region", "x"]), json_values, max_size=4
                ),
                json_values,
            ),
            "cursor": st.one_of(st.text(max_size=20), json_values),
            "protocolVersion": st.one_of(st.sampled_from(VERSIONS), st.text(max_size=12)),
            "capabilities": json_values,
            "_meta": st.one_of(meta, json_values),
        },
    ),
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.one_of(st.just("2.0"), json_values),
        "id": ids,
        "method": st.one_of(st.sampled_from(METHODS), st.text(max_size=20), json_values),
        "params": params,
        "result": json_values,
        "error": json_values,
    },
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Mcp-Method": st.one_of(st.sampled_from(METHODS), header_text),
        "Mcp-Name": st.one_of(
            st.sampled_from(TOOL_NAMES),
            header_text,
            st.just("=?base64?c2VhcmNoX2NvbnRhY3Rz?="),
            st.just("=?base64?!!?="),
        ),
        "MCP-Protocol-Version": st.one_of(st.sampled_from(VERSIONS), header_text),
        "Mcp-Session-Id": st.one_of(st.just("SESSION"), header_text),
        "Mcp-Param-Region": header_text,
        "Accept": st.sampled_from(
            [
                "application/json",
                "text/event-stream",
                "*/*",
                "",
                "application/json, text/event-stream",
                "text/html;q=0.1",
                "text/event-stream;q=0",
                "garbage/;;",
            ]
        ),
        "Content-Type": st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-8",
                "text/plain",
                "application/x-www-form-urlencoded",
                "",
                "application/json; charset=latin-1",
            ]
        ),
        "X-Simulator-Seed": header_text,
    },
)
endpoints = st.sampled_from(["call", "test"])


def _invalid_utf8(body: bytes) -> st.SearchStrategy[bytes]:
    return st.sampled_from(
        [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82"]
    ).map(lambda junk: body.replace(b"JUNK", junk))


invalid_utf8 = st.sampled_from(
    [
        b'{"jsonrpc":"2.0","id":1,"method":"JUNK"}',
        b'{"jsonrpc":"2.0","id":"JUNK","method":"ping"}',
        b'[{"jsonrpc":"2.0","id":1,"method":"ping"},"JUNK"]',
        b'JUNK{"jsonrpc":"2.0","id":1,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_contacts",'
        b'"arguments":{"q":"JUNK"}}}',
    ]
).flatmap(_invalid_utf8)
# Lone surrogates and other escapes Python's json accepts and UTF-8 cannot carry.
escapes = st.sampled_from(
    [
        b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\udfff"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_contacts",'
        b'"arguments":{"q":"\\ud83d"}},"_meta":{}}',
        b'{"jsonrpc":"2.0","id":1e400,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1' + b"0" * 5000 + b',"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":NaN}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping"} trailing',
        b'{"jsonrpc":"2.0","id":1,"method":"ping","id":2}',
    ]
)


# --- the checks ---------------------------------------------------------------------------------
async def exchange(
    t: Target, endpoint: str, body: bytes, sent: dict[str, str] | None = None
) -> None:
    """POST `body` and check the answer; then the app must still be healthy."""
    request_headers = {"Authorization": f"Bearer {t.key}", "Content-Type": "application/json"}
    for name, value in (sent or {}).items():
        request_headers[name] = t.session if value == "SESSION" else value
    url = f"/v1/tenants/acme/integrations/crm/mcp:{endpoint}"
    async with t.client.post(url, data=body, headers=request_headers) as resp:
        raw = await resp.read()
        status, content_type = resp.status, resp.content_type
    text = raw.decode("utf-8")  # every answer is UTF-8
    assert status < 500, (status, text[:500])
    assert "Traceback" not in text
    if status in (202, 204):
        assert raw == b""
    elif content_type == "text/event-stream":
        assert status == 200
        match = SSE_EVENT.fullmatch(text)
        assert match is not None, text[:500]
        data = "\n".join(
            line.removeprefix("data: ") for line in match.group(1).rstrip("\n").split("\n")
        )
        json.loads(data)
    else:
        assert content_type in ("application/json", "application/problem+json"), content_type
        json.loads(text)
    async with t.client.get("/healthz") as resp:
        assert resp.status == 200


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


@examples(FUZZ, max_examples=200)
@given(body=st.binary(max_size=300), endpoint=endpoints, sent=headers)
async def test_arbitrary_bytes(
    target: Target, body: bytes, endpoint: str, sent: dict[str, str]
) -> None:
    await exchange(target, endpoint, body, sent)


@examples(FUZZ, max_examples=80)
@given(body=st.one_of(invalid_utf8, escapes), endpoint=endpoints, sent=headers)
async def test_invalid_utf8_and_odd_json(
    target: Target, body: bytes, endpoint: str, sent: dict[str, str]
) -> None:
    await exchange(target, endpoint, body, sent)


@examples(FUZZ, max_examples=200)
@given(value=json_values, endpoint=endpoints, sent=headers)
async def test_arbitrary_json(
    target: Target, value: Any, endpoint: str, sent: dict[str, str]
) -> None:
    await exchange(target, endpoint, dumps(value), sent)


@examples(FUZZ, max_examples=500)
@given(message=messages, endpoint=endpoints, sent=headers)
async def test_jsonrpc_shaped_messages(
    target: Target, message: dict[str, Any], endpoint: str, sent: dict[str, str]
) -> None:
    await exchange(target, endpoint, dumps(message), sent)


@examples(FUZZ, max_examples=120)
@given(
    batch=st.lists(st.one_of(messages, json_values), max_size=60),
    endpoint=endpoints,
    sent=headers,
    legacy=st.booleans(),
)
async def test_batches(
    target: Target, batch: list[Any], endpoint: str, sent: dict[str, str], legacy: bool
) -> None:
    if legacy:  # batches are a 2025-03-26 feature: reach the dispatch most of the time
        sent = {
            **sent,
            "MCP-Protocol-Version": "2025-03-26",
            "Mcp-Session-Id": "SESSION",
            "Content-Type": "application/json",
        }
    await exchange(target, endpoint, dumps(batch), sent)


@examples(FUZZ, max_examples=60)
@given(
    depth=st.integers(1, 3000),
    opener=st.sampled_from([b"[", b'{"a":']),
    endpoint=endpoints,
    wrap=st.booleans(),
)
async def test_deep_nesting(
    target: Target, depth: int, opener: bytes, endpoint: str, wrap: bool
) -> None:
    closer = b"]" if opener == b"[" else b"}"
    inner = opener * depth + b"0" + closer * depth
    body = (
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_contacts",'
            b'"arguments":{"q":' + inner + b"}}}"
        )
        if wrap
        else inner
    )
    await exchange(
        target, endpoint, body, {"MCP-Protocol-Version": "2025-03-26", "Mcp-Session-Id": "SESSION"}
    )
