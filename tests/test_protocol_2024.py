"""2024-11-05 sessions are served in their own version (docs/mcp-endpoints.md): what they
receive on both URLs (the simulator's results on testUrl, the upstream's relayed on callUrl,
and tools/list) holds only what that version's schema defines; later sessions see it all."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from mcp_helpers import (
    CALL,
    TENANT,
    TEST,
    auth,
    build_mcp_app,
    error_of,
    legacy,
    open_session,
    send,
    state_of,
)
from mcp_stub import StubUpstream

from gateway.context import Endpoint
from gateway.executors import ProxyExecutor, SimulatorExecutor, UpstreamPool
from mcp_core.protocol_2024 import notification_for, result_for
from mcp_core.version import __version__

OLD = "2024-11-05"
LATER_TOOL_FIELDS = ("title", "outputSchema", "annotations", "icons", "_meta")
STATS_SCHEMA = {
    "type": "object",
    "properties": {"count": {"type": "integer"}},
    "required": ["count"],
}
TOOLS: tuple[dict[str, Any], ...] = (
    {
        "name": "contact_stats",
        "title": "Contact statistics",
        "description": "Counts",
        "inputSchema": {"type": "object", "properties": {}},
        "outputSchema": STATS_SCHEMA,
        "annotations": {"readOnlyHint": True},
        "icons": [{"src": "https://icons.test/stats.png"}],
        "_meta": {"vendor/x": 1},
    },
)
# What the upstream answers to tools/call: every field and content kind later versions added.
UPSTREAM_RESULT = {
    "content": [
        {
            "type": "text",
            "text": '{"count": 3}',
            "annotations": {"audience": ["user"], "priority": 0.5, "lastModified": "2025-01-01"},
            "_meta": {"vendor/y": 2},
        },
        {
            "type": "resource_link",
            "uri": "https://crm.test/contacts",
            "name": "contacts",
            "title": "All contacts",
        },
        {"type": "audio", "data": "AAAA", "mimeType": "audio/wav"},
        {
            "type": "resource",
            "resource": {"uri": "file:///a.txt", "text": "a", "_meta": {"k": 1}},
        },
    ],
    "structuredContent": {"count": 3},
    "isError": False,
    "_meta": {"vendor/z": 3},
}


@pytest.fixture
async def stub() -> StubUpstream:
    return StubUpstream(
        tools=list(TOOLS), raw_results={"tools/call": [json.dumps(UPSTREAM_RESULT)]}
    )


@pytest.fixture
async def mcp(
    aiohttp_client: Any,
    aiohttp_server: Any,
    tmp_path: Path,
    upstream_pool: UpstreamPool,
    stub: StubUpstream,
) -> AsyncIterator[TestClient]:
    """The data-plane app with the real simulator on testUrl and the real proxy on callUrl,
    bound to a stub upstream."""
    upstream = await aiohttp_server(stub.app())
    app = build_mcp_app(tmp_path)
    simulator = SimulatorExecutor()
    client = await aiohttp_client(app)
    gateway = state_of(client)
    resolver = gateway.resolver
    view = resolver.views[(TENANT, "crm")]  # type: ignore[attr-defined]
    resolver.views[(TENANT, "crm")] = dataclasses.replace(  # type: ignore[attr-defined]
        view,
        tools=TOOLS,
        tools_by_name={t["name"]: t for t in TOOLS},
        upstream_url=str(upstream.make_url("/mcp")),
    )
    gateway.executors = {Endpoint.CALL: ProxyExecutor(upstream_pool), Endpoint.TEST: simulator}
    yield client
    simulator.close()


async def call(mcp: TestClient, url: str, version: str) -> dict[str, Any]:
    session = await open_session(mcp, version, url=url)
    resp, body = await legacy(
        mcp,
        "tools/call",
        {"name": "contact_stats", "arguments": {}},
        session=session,
        version=None,
        url=url,
    )
    assert resp.status == 200, body
    result: dict[str, Any] = body["result"]
    return result


async def test_initialize_answers_2024_11_05_and_the_session_keeps_it(mcp: TestClient) -> None:
    resp, body = await legacy(
        mcp,
        "initialize",
        {"protocolVersion": OLD, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        version=None,
    )
    assert resp.status == 200, body
    assert body["result"]["protocolVersion"] == OLD
    assert body["result"]["serverInfo"] == {"name": "CRM", "version": __version__}
    session = resp.headers["Mcp-Session-Id"]
    # Its own version in the header is the session's; another one is refused.
    resp, body = await legacy(mcp, "ping", session=session, version=OLD)
    assert resp.status == 200 and body["result"] == {}, body
    resp, body = await legacy(mcp, "tools/list", session=session, version="2025-11-25")
    assert resp.status == 400
    error_of(body, -32600)


@pytest.mark.parametrize("url", [CALL, TEST])
async def test_tools_list_holds_only_2024_fields(mcp: TestClient, url: str) -> None:
    session = await open_session(mcp, OLD, url=url)
    resp, body = await legacy(mcp, "tools/list", session=session, version=None, url=url)
    assert resp.status == 200, body
    assert body["result"]["tools"] == [
        {"name": "contact_stats", "description": "Counts", "inputSchema": TOOLS[0]["inputSchema"]}
    ]
    later = await open_session(mcp, "2025-11-25", url=url)
    resp, body = await legacy(mcp, "tools/list", session=later, url=url)
    assert body["result"]["tools"] == list(TOOLS)  # and the shared objects were not changed


async def test_simulated_result_on_test_url(mcp: TestClient) -> None:
    later = await call(mcp, TEST, "2025-11-25")
    assert "structuredContent" in later  # the simulator honours the outputSchema
    old = await call(mcp, TEST, OLD)
    assert set(old) <= {"content", "isError", "_meta"}
    assert old["content"] == later["content"]
    assert old.get("isError") is later.get("isError")


async def test_relayed_result_on_call_url(mcp: TestClient) -> None:
    assert await call(mcp, CALL, "2025-11-25") == UPSTREAM_RESULT
    assert await call(mcp, CALL, OLD) == {
        "content": [
            {
                "type": "text",
                "text": '{"count": 3}',
                "annotations": {"audience": ["user"], "priority": 0.5},
            },
            {"type": "text", "text": "contacts: https://crm.test/contacts"},
            {
                "type": "text",
                "text": "[audio content omitted: protocol 2024-11-05 cannot carry it]",
            },
            {"type": "resource", "resource": {"uri": "file:///a.txt", "text": "a"}},
        ],
        "isError": False,
        "_meta": {"vendor/z": 3},
    }


async def test_relayed_progress_loses_its_message(mcp: TestClient, stub: StubUpstream) -> None:
    stub.sse = True
    stub.raw_results.clear()
    session = await open_session(mcp, OLD)
    message = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "contact_stats", "arguments": {}, "_meta": {"progressToken": "p"}},
    }
    headers = {**auth(), "Accept": "application/json, text/event-stream", "Mcp-Session-Id": session}
    resp, text = await send(mcp, message, headers)
    assert resp.status == 200 and resp.content_type == "text/event-stream", text
    events = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
    progress = [e["params"] for e in events if e.get("method") == "notifications/progress"]
    assert progress and all("message" not in p for p in progress), progress
    assert progress[0] == {"progressToken": "p", "progress": 1, "total": stub.progress_steps}
    assert events[-1]["id"] == 7 and "result" in events[-1]


async def test_batches_are_refused_in_a_2024_session(mcp: TestClient) -> None:
    session = await open_session(mcp, OLD)
    headers = {**auth(), "Accept": "application/json", "Mcp-Session-Id": session}
    resp, body = await send(mcp, [{"jsonrpc": "2.0", "id": 1, "method": "ping"}], headers)
    assert resp.status == 400
    assert "2024-11-05" in error_of(body, -32600)["data"]


# --- the shaping itself -------------------------------------------------------------------------


def test_initialize_keeps_only_2024_capabilities_and_server_info() -> None:
    result = {
        "protocolVersion": OLD,
        "capabilities": {
            "tools": {"listChanged": False, "future": True},
            "logging": {},
            "completions": {},
            "resources": {"subscribe": False, "listChanged": False},
        },
        "serverInfo": {"name": "s", "version": "1", "title": "S", "icons": []},
        "instructions": "hi",
    }
    assert result_for("initialize", "2025-03-26", result) == {
        "protocolVersion": OLD,
        "capabilities": {
            "tools": {"listChanged": False},
            "logging": {},
            "resources": {"subscribe": False, "listChanged": False},
        },
        "serverInfo": {"name": "s", "version": "1"},
        "instructions": "hi",
    }
    later = {**result, "protocolVersion": "2025-11-25"}
    assert result_for("initialize", OLD, later) is later


def test_a_structured_only_result_gets_its_json_as_text() -> None:
    shaped = result_for("tools/call", OLD, {"structuredContent": {"a": 1}})
    assert shaped == {"content": [{"type": "text", "text": '{"a":1}'}]}


def test_prompts_and_resources_lists_hold_only_2024_fields() -> None:
    prompts = {
        "prompts": [
            {
                "name": "p",
                "title": "P",
                "arguments": [{"name": "a", "title": "A", "required": True}],
                "icons": [],
            }
        ],
        "nextCursor": "c",
    }
    assert result_for("prompts/list", OLD, prompts) == {
        "prompts": [{"name": "p", "arguments": [{"name": "a", "required": True}]}],
        "nextCursor": "c",
    }
    resources = {"resources": [{"uri": "u", "name": "n", "title": "T", "size": 3}]}
    assert result_for("resources/list", OLD, resources) == {
        "resources": [{"uri": "u", "name": "n"}]
    }


def test_notifications_of_later_sessions_pass_as_they_are() -> None:
    note = {
        "method": "notifications/progress",
        "params": {"progressToken": 1, "progress": 1, "message": "m"},
    }
    assert notification_for("2025-11-25", note) is note
    assert notification_for(OLD, note)["params"] == {"progressToken": 1, "progress": 1}
