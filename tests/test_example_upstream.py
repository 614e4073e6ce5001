"""The example upstream MCP server of `mcp-gateway demo`: its transport (Streamable HTTP,
legacy era) and its tools, checked on the wire and with the official MCP SDK client."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from gateway.example_upstream import MAX_BODY_BYTES, TOOLS, ExampleUpstream
from gateway.example_upstream.sessions import Sessions
from mcp_core.versions import LEGACY_VERSIONS
from settings_api.tools import normalize_tools

ACCEPT = "application/json, text/event-stream"


class Wire:
    """Raw JSON-RPC over POST /mcp, remembering the session once initialized."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.session: str | None = None

    async def post(
        self, body: Any, *, headers: dict[str, str] | None = None, session: bool = True
    ) -> tuple[int, dict[str, str], Any]:
        sent = {"Accept": ACCEPT, "Content-Type": "application/json", **(headers or {})}
        if session and self.session:
            sent["Mcp-Session-Id"] = self.session
        data = body if isinstance(body, bytes) else json.dumps(body)
        async with self.client.post("/mcp", data=data, headers=sent) as resp:
            text = await resp.text()
            return resp.status, dict(resp.headers), (json.loads(text) if text else None)

    async def initialize(self, version: str = "2025-11-25") -> dict[str, Any]:
        status, headers, body = await self.post(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": version,
                    "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1"},
                },
            },
            session=False,
        )
        assert status == 200, body
        self.session = headers["Mcp-Session-Id"]
        status, _, _ = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert status == 202
        return body["result"]

    async def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        status, _, body = await self.post(
            {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
        )
        assert status == 200, body
        return body

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        body = await self.rpc("tools/call", {"name": name, "arguments": arguments})
        return body["result"]


@pytest.fixture
async def wire(aiohttp_client: Any) -> Wire:
    return Wire(await aiohttp_client(ExampleUpstream().app()))


def test_catalog_is_valid_for_the_gateway() -> None:
    tools, errors = normalize_tools(TOOLS)
    assert errors == []
    assert [t["name"] for t in tools] == [
        "search_contacts",
        "get_contact",
        "create_note",
        "list_deals",
    ]
    for tool in TOOLS:
        Draft202012Validator.check_schema(tool["outputSchema"])
        assert tool["description"] and tool["title"]


@pytest.mark.parametrize(
    ("asked", "answered"),
    [("2025-06-18", "2025-06-18"), ("2025-03-26", "2025-03-26"), ("2099-01-01", "2025-11-25")],
)
async def test_initialize_negotiates_the_version(wire: Wire, asked: str, answered: str) -> None:
    result = await wire.initialize(asked)
    assert result["protocolVersion"] == answered
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"]["name"] == "example-crm" and result["instructions"]


async def test_sessions_are_required_and_end_with_delete(wire: Wire) -> None:
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    assert (await wire.post(listing))[0] == 400  # no session yet
    wire.session = "forged"
    assert (await wire.post(listing))[0] == 404
    await wire.initialize()
    assert (await wire.rpc("ping"))["result"] == {}
    async with wire.client.delete("/mcp", headers={"Mcp-Session-Id": wire.session}) as resp:
        assert resp.status == 204
    status, _, body = await wire.post(listing)
    assert status == 404 and body["error"]["code"] == -32001
    async with wire.client.delete("/mcp", headers={"Mcp-Session-Id": wire.session}) as resp:
        assert resp.status == 404
    async with wire.client.delete("/mcp") as resp:
        assert resp.status == 400
    async with wire.client.get("/mcp") as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "POST, DELETE"


def test_sessions_drop_the_least_recently_used_past_the_cap() -> None:
    sessions = Sessions(max_sessions=2)
    first, second = sessions.start("2025-11-25"), sessions.start("2025-03-26")
    assert sessions.touch(first) == "2025-11-25"  # `second` is now the least recently used
    third = sessions.start("2025-06-18")
    assert len(sessions) == 2 and sessions.touch(second) is None
    assert sessions.touch(first) == "2025-11-25" and sessions.touch(third) == "2025-06-18"
    sessions.end(first)
    sessions.end(first)  # ending twice is harmless
    assert sessions.touch(first) is None and len(sessions) == 1


def test_idle_sessions_expire_and_use_restarts_the_idle_time() -> None:
    now = [0.0]
    sessions = Sessions(idle_s=60.0, clock=lambda: now[0])
    kept, idle = sessions.start("2025-11-25"), sessions.start("2025-11-25")
    now[0] = 50.0
    assert sessions.touch(kept) == "2025-11-25"
    now[0] = 100.0  # `idle` was last seen 100 s ago, `kept` 50 s ago
    assert sessions.touch(idle) is None
    assert sessions.touch(kept) == "2025-11-25"
    now[0] = 161.0
    assert sessions.touch(kept) is None and len(sessions) == 0


async def test_versions_are_the_gateways_legacy_ones(wire: Wire) -> None:
    for version in LEGACY_VERSIONS:
        assert (await wire.initialize(version))["protocolVersion"] == version
    status, _, body = await wire.post(
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"MCP-Protocol-Version": "2026-07-28"},  # modern: not this server's era
    )
    assert status == 400 and body["error"]["code"] == -32600


async def test_a_2024_11_05_session_gets_that_versions_shapes(wire: Wire) -> None:
    result = await wire.initialize("2024-11-05")
    assert result["protocolVersion"] == "2024-11-05"
    assert set(result["serverInfo"]) == {"name", "version"}  # no title before 2025-06-18
    listed = (await wire.rpc("tools/list"))["result"]["tools"]
    assert all(set(tool) <= {"name", "description", "inputSchema"} for tool in listed)
    called = await wire.call("get_contact", {"contactId": "c_002"})
    assert "structuredContent" not in called and called["content"][0]["type"] == "text"
    assert called["isError"] is False


async def test_every_tool_answers_within_its_output_schema(wire: Wire) -> None:
    await wire.initialize()
    listed = (await wire.rpc("tools/list"))["result"]
    assert [t["name"] for t in listed["tools"]] == [t["name"] for t in TOOLS]
    assert "nextCursor" not in listed
    schemas = {t["name"]: t["outputSchema"] for t in listed["tools"]}
    calls = [
        ("search_contacts", {"query": "orbital", "limit": 1}),
        ("get_contact", {"contactId": "c_002"}),
        ("create_note", {"contactId": "c_002", "body": " Sent the contract. "}),
        ("list_deals", {}),
        ("list_deals", {"stage": "proposal", "minAmount": 50000}),
    ]
    results = {}
    for name, arguments in calls:
        result = await wire.call(name, arguments)
        assert result["isError"] is False, result
        Draft202012Validator(schemas[name]).validate(result["structuredContent"])
        assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
        results[name, json.dumps(arguments)] = result["structuredContent"]

    found = results["search_contacts", json.dumps({"query": "orbital", "limit": 1})]
    assert found["total"] == 2 and len(found["contacts"]) == 1
    note = results["create_note", json.dumps(calls[2][1])]["note"]
    assert note["body"] == "Sent the contract." and note["createdAt"].endswith("Z")
    contact = await wire.call("get_contact", {"contactId": "c_002"})
    assert note in contact["structuredContent"]["notes"]
    assert [d["id"] for d in contact["structuredContent"]["openDeals"]] == ["d_102"]
    deals = results["list_deals", json.dumps(calls[4][1])]["deals"]
    assert [d["id"] for d in deals] == ["d_107"]
    everything = results["list_deals", "{}"]
    assert everything["totalAmount"] == sum(d["amount"] for d in everything["deals"])
    assert [d["amount"] for d in everything["deals"]] == sorted(
        (d["amount"] for d in everything["deals"]), reverse=True
    )


async def test_bad_calls(wire: Wire) -> None:
    await wire.initialize()
    invalid = await wire.call("search_contacts", {"limit": 500, "extra": 1})
    assert invalid["isError"] is True
    text = invalid["content"][0]["text"]
    assert "'query' is a required property" in text and "limit" in text and "extra" in text
    missing = await wire.call("get_contact", {"contactId": "c_999"})
    assert missing["isError"] is True and "c_999" in missing["content"][0]["text"]
    unknown = await wire.rpc("tools/call", {"name": "drop_database", "arguments": {}})
    assert unknown["error"]["code"] == -32602
    assert (await wire.rpc("resources/list"))["error"]["code"] == -32601
    bad_cursor = await wire.rpc("tools/list", {"cursor": "zzz"})
    assert bad_cursor["error"]["code"] == -32602


async def test_transport_refusals(wire: Wire) -> None:
    await wire.initialize()
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    assert (await wire.post(listing, headers={"Origin": "https://evil.example"}))[0] == 403
    assert (await wire.post(listing, headers={"Origin": "http://localhost:6274"}))[0] == 200
    assert (await wire.post(listing, headers={"MCP-Protocol-Version": "1999-01-01"}))[0] == 400
    assert (await wire.post(listing, headers={"Content-Type": "text/plain"}))[0] == 415
    assert (await wire.post(listing, headers={"Accept": "text/html"}))[0] == 406
    status, _, body = await wire.post(b"{not json")
    assert status == 400 and body["error"]["code"] == -32700
    status, _, body = await wire.post(
        b'{"jsonrpc": "2.0", "id": 1, "method": "x", "p": "' + b"x" * MAX_BODY_BYTES + b'"}'
    )
    assert status == 413
    status, _, body = await wire.post({"jsonrpc": "1.0", "id": 1, "method": "ping"})
    assert body["error"]["code"] == -32600
    # a response from the client (we never ask anything): accepted, nothing to answer
    assert (await wire.post({"jsonrpc": "2.0", "id": 9, "result": {}}))[0] == 202


async def test_sse_only_client_gets_one_event(wire: Wire) -> None:
    await wire.initialize()
    headers = {
        "Accept": "text/event-stream",
        "Content-Type": "application/json",
        "Mcp-Session-Id": wire.session or "",
    }
    async with wire.client.post(
        "/mcp", json={"jsonrpc": "2.0", "id": 4, "method": "ping"}, headers=headers
    ) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = await resp.text()
    assert text.startswith("event: message\ndata: ")
    assert json.loads(text.split("data: ", 1)[1]) == {"jsonrpc": "2.0", "id": 4, "result": {}}


async def test_batches_only_on_2025_03_26(wire: Wire) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 0}},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "get_contact", "arguments": {"contactId": "c_001"}},
        },
    ]
    await wire.initialize("2025-11-25")
    assert (await wire.post(batch))[0] == 400
    await wire.initialize("2025-03-26")
    status, _, body = await wire.post(batch)
    assert status == 200
    assert [r["id"] for r in body] == [1, 2]
    assert body[1]["result"]["structuredContent"]["contact"]["name"] == "Ada Lovelace"
    assert (await wire.post([]))[0] == 400


async def test_official_sdk_client(aiohttp_server: Any) -> None:
    server = await aiohttp_server(ExampleUpstream().app())
    http = httpx2.AsyncClient(timeout=10)
    client = Client(
        streamable_http_client(str(server.make_url("/mcp")), http_client=http),
        mode="legacy",
        read_timeout_seconds=10,
    )
    async with http, client:
        assert client.server_info is not None and client.server_info.name == "example-crm"
        tools = (await client.list_tools()).tools
        assert [t.name for t in tools] == [t["name"] for t in TOOLS]
        result = await client.call_tool("list_deals", {"contactId": "c_004"})
        assert not result.is_error
        assert result.structured_content["deals"][0]["company"] == "Orbital Dynamics"
