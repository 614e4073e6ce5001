"""The tool-call log through the live app, on both store backends: what each `tools/call` records
(outcome, key, run id, arguments or their hash), `GET …/mcp/calls` (filters, pages, problems,
tenants), and that recording never fails a call when the buffer or the store cannot take it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import Api, make_settings
from mcp_helpers import CALL, TEST, modern_headers, modern_message, open_session, send
from polling import until
from prometheus_client import REGISTRY

from gateway.call_log.buffer import CallBuffer
from gateway.server import build_app
from gateway.state import GATEWAY
from settings_api.app import STORE
from settings_api.store import ToolCall

SEARCH = {
    "name": "search_contacts",
    "inputSchema": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
}
HIDDEN = {"name": "delete_everything", "inputSchema": {"type": "object"}}
CALLS = "/crm/mcp/calls"


@pytest.fixture
async def key(api: Api) -> str:
    return await api.enabled_key([SEARCH, HIDDEN], exposed=["search_contacts"])


async def call_tool(
    client: TestClient,
    key: str,
    arguments: Any,
    *,
    tool: str = "search_contacts",
    url: str = TEST,
    run_id: str | None = None,
) -> tuple[int, Mapping[str, str], Any]:
    message = modern_message("tools/call", {"name": tool, "arguments": arguments})
    headers = modern_headers(message, key)
    if run_id is not None:
        headers["X-Run-Id"] = run_id
    resp, body = await send(client, message, headers, url)
    return resp.status, resp.headers, body


async def calls_page(api: Api, query: str = "") -> dict[str, Any]:
    _, page = await api.call("GET", f"{CALLS}{query}", 200)
    return page


async def logged(api: Api, count: int, query: str = "") -> list[dict[str, Any]]:
    """The newest calls once `count` of them are visible (the log is written in batches)."""
    found: list[dict[str, Any]] = []

    async def visible() -> bool:
        nonlocal found
        found = (await calls_page(api, query))["calls"]
        return len(found) >= count

    await until(visible, timeout_s=2.0, interval_s=0.05)
    return found


def sha256_of(arguments: Any) -> str:
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("mcpgw_call_log_dropped_total", {"reason": reason}) or 0.0


async def test_every_outcome_on_test_url_with_arguments_and_run_id(
    api: Api, client: TestClient, key: str
) -> None:
    await api.call(
        "PUT",
        "/crm/mcp/simulator/fixtures/search_contacts",
        201,
        json={
            "rules": [{"match": {"query": "BOOM"}, "error": {"code": -32001, "message": "down"}}]
        },
    )
    arguments = {"query": "Zoë 東京", "b": [1.5, {"z": None, "a": True}]}
    status, headers, body = await call_tool(client, key, arguments, run_id="run-1")
    assert status == 200 and body["result"]["isError"] is False, body
    ok_request_id = headers["X-Request-Id"]
    status, _, body = await call_tool(client, key, {"query": 7}, run_id="run-1")
    assert body["result"]["isError"] is True, body  # arguments against the inputSchema
    status, _, body = await call_tool(client, key, {"query": "BOOM"})
    assert body["error"]["code"] == -32001, body
    status, _, body = await call_tool(client, key, {}, tool="delete_everything")
    assert body["error"]["code"] == -32602 and "Unknown tool" in body["error"]["message"]

    calls = await logged(api, 4)
    assert [c["outcome"] for c in calls] == ["denied", "error", "tool_error", "ok"]
    assert [c["tool"] for c in calls] == [
        "delete_everything",
        "search_contacts",
        "search_contacts",
        "search_contacts",
    ]
    ok = calls[-1]
    settings = await api.call("GET", "/crm/mcp", 200)
    assert ok["url"] == "test" and ok["apiKeyId"] == settings[1]["apiKeyId"]
    assert ok["requestId"] == ok_request_id and ok["runId"] == "run-1"
    assert ok["arguments"] == arguments  # testUrl keeps the trajectory
    assert ok["argumentsSha256"] == sha256_of(arguments)
    assert isinstance(ok["at"], int) and isinstance(ok["durationMs"], int)
    assert [c["at"] for c in calls] == sorted((c["at"] for c in calls), reverse=True)
    assert calls[0]["runId"] is None and calls[0]["arguments"] == {}


async def test_call_url_keeps_only_the_arguments_hash(
    api: Api, client: TestClient, key: str
) -> None:
    arguments = {"query": "ünïcode", "n": 1}
    status, _, body = await call_tool(client, key, arguments, url=CALL)
    assert status == 200 and "error" in body, body  # no upstream configured: a JSON-RPC error
    [entry] = await logged(api, 1)
    assert entry["url"] == "call" and entry["outcome"] == "error"
    assert entry["argumentsSha256"] == sha256_of(arguments)
    assert "arguments" not in entry


async def test_filters_and_pages_newest_first(api: Api, client: TestClient, key: str) -> None:
    for index in range(5):
        run = "run-a" if index % 2 == 0 else "run-b"
        await call_tool(client, key, {"query": f"q{index}"}, run_id=run)
    await call_tool(client, key, {"query": "on call"}, url=CALL, run_id="run-a")
    everything = await logged(api, 6)
    assert len(everything) == 6

    seen: list[dict[str, Any]] = []
    query = "?limit=4&url=test"
    while True:
        page = await calls_page(api, query)
        assert len(page["calls"]) <= 4
        seen += page["calls"]
        if page["nextCursor"] is None:
            break
        query = f"?limit=4&url=test&cursor={page['nextCursor']}"
    assert [c["arguments"]["query"] for c in seen] == ["q4", "q3", "q2", "q1", "q0"]

    run_a = (await calls_page(api, "?runId=run-a"))["calls"]
    assert [c["url"] for c in run_a] == ["call", "test", "test", "test"]
    assert {c["runId"] for c in run_a} == {"run-a"}
    only_call = (await calls_page(api, "?url=call&runId=run-a"))["calls"]
    assert len(only_call) == 1 and only_call[0]["url"] == "call"
    assert (await calls_page(api, "?runId=nobody"))["calls"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?limit=ten", "limit"),
        ("?url=both", "url"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?runId=" + "r" * 257, "runId"),
        ("?runId=a%00b", "runId"),
    ],
)
async def test_bad_query_is_422_naming_the_field(
    api: Api, key: str, query: str, field: str
) -> None:
    status, problem = await api.call("GET", CALLS + query)
    assert status == 422, problem
    assert [e["field"] for e in problem["errors"]] == [field]


async def test_other_tenants_and_unknown_integrations(
    api: Api, client: TestClient, key: str, auth: Any
) -> None:
    await call_tool(client, key, {"query": "mine"})
    await logged(api, 1)
    other = Api(client, auth("globex"), tenant="acme")
    status, problem = await other.call("GET", CALLS)
    assert status == 403, problem
    status, problem = await api.call("GET", "/nothing-here/mcp/calls")
    assert status == 404, problem
    async with client.get(f"/v1/tenants/acme/integrations{CALLS}") as resp:
        assert resp.status == 401


async def test_transport_refusals_and_batches_are_logged(
    api: Api, client: TestClient, key: str
) -> None:
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "search_contacts", "arguments": {"query": "x"}},
    }
    legacy = {"Authorization": f"Bearer {key}", "MCP-Protocol-Version": "2025-11-25"}
    resp, body = await send(client, message, legacy, TEST)  # no session: refused, not run
    assert resp.status == 400, body
    session = await open_session(client, "2025-03-26", key=key, url=TEST)
    batch = [
        {**message, "id": 2},
        {**message, "id": 3, "params": {"name": "delete_everything"}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/list"},
    ]
    headers = {**legacy, "MCP-Protocol-Version": "2025-03-26", "Mcp-Session-Id": session}
    resp, body = await send(client, batch, headers, TEST)
    assert resp.status == 200 and len(body) == 3, body
    calls = await logged(api, 3)
    assert sorted(c["outcome"] for c in calls) == ["denied", "error", "ok"]
    batch_ids = {c["requestId"] for c in calls if c["outcome"] != "error"}
    assert len(batch_ids) == 1 and batch_ids != {None}  # one POST, one request id


async def test_a_nul_in_a_tool_name_spoils_no_batch(api: Api, client: TestClient, key: str) -> None:
    """Postgres text cannot hold NUL: recorded as U+FFFD, the batch (other calls) intact."""
    await call_tool(client, key, {"query": "before"})
    session = await open_session(client, key=key, url=TEST)
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "evil\x00name", "arguments": {"q": "\x00"}},
    }
    headers = {
        "Authorization": f"Bearer {key}",
        "MCP-Protocol-Version": "2025-11-25",
        "Mcp-Session-Id": session,
    }
    _, body = await send(client, message, headers, TEST)
    assert body["error"]["code"] == -32602, body
    await call_tool(client, key, {"query": "after"})
    calls = await logged(api, 3)
    assert [c["tool"] for c in calls] == ["search_contacts", "evil\ufffdname", "search_contacts"]
    assert calls[1]["outcome"] == "denied" and calls[1]["arguments"] == {"q": "\x00"}


async def test_pages_of_large_arguments_stay_bounded(
    api: Api, client: TestClient, key: str
) -> None:
    big = "x" * (300 * 1024)  # within the 512 KiB arguments bound; 14 of them pass 4 MiB
    for index in range(16):
        await call_tool(client, key, {"query": f"{index}", "pad": big})

    async def last_one_written() -> bool:  # one buffer, written in order: all are in
        newest = (await calls_page(api, "?limit=1"))["calls"]
        return bool(newest) and newest[0]["arguments"]["query"] == "15"

    await until(last_one_written, timeout_s=2.0, interval_s=0.05)
    seen, cursor, pages = [], "", 0
    while True:
        page = await calls_page(api, f"?limit=200{cursor}")
        pages += 1
        assert sum(len(c["arguments"]["pad"]) for c in page["calls"]) <= 4 * 1024 * 1024
        seen += [c["arguments"]["query"] for c in page["calls"]]
        if page["nextCursor"] is None:
            break
        cursor = f"&cursor={page['nextCursor']}"
    assert pages == 2 and seen == [str(i) for i in range(15, -1, -1)]


async def test_rate_limited_calls_are_logged(aiohttp_client: Any, tmp_path, database_url, auth):
    settings = make_settings(
        tmp_path, database_url, MCPGW_RATE_LIMIT_BURST="1", MCPGW_RATE_LIMIT_RPS="0.01"
    )
    client = await aiohttp_client(build_app(settings))
    api = Api(client, auth("acme"))
    key = await api.enabled_key([SEARCH])
    await call_tool(client, key, {"query": "first"})
    status, _, body = await call_tool(client, key, {"query": "second"}, run_id="limited")
    assert status == 200 and body["result"]["isError"] is True, body  # the rate-limit result
    calls = await logged(api, 2)
    assert [(c["outcome"], c["runId"]) for c in calls] == [
        ("rate_limited", "limited"),
        ("ok", None),
    ]
    assert calls[0]["arguments"] == {"query": "second"} and calls[0]["durationMs"] == 0


async def test_a_store_outage_drops_calls_and_never_fails_them(
    api: Api, client: TestClient, key: str
) -> None:
    await call_tool(client, key, {"query": "warm"})  # the key and integration are now cached
    await logged(api, 1)
    before = dropped("store_unavailable")
    await client.app[STORE].close()
    for index in range(3):
        status, _, body = await call_tool(client, key, {"query": f"during {index}"})
        assert status == 200 and body["result"]["isError"] is False, body
    await until(lambda: dropped("store_unavailable") >= before + 3, timeout_s=2.0)
    await client.app[STORE].open()  # the store answers again: calls are written again
    await call_tool(client, key, {"query": "after"})
    calls = await logged(api, 2)
    assert [c["arguments"]["query"] for c in calls] == ["after", "warm"]


async def test_a_full_buffer_drops_calls_and_never_fails_them(
    api: Api, client: TestClient, key: str
) -> None:
    client.app[GATEWAY].calls = CallBuffer(max_entries=2)
    before = dropped("buffer_full")
    for index in range(2):  # the writer is not told of this buffer: nothing empties it
        status, _, body = await call_tool(client, key, {"query": f"kept {index}"})
        assert body["result"]["isError"] is False
    status, _, body = await call_tool(client, key, {"query": "dropped"})
    assert status == 200 and body["result"]["isError"] is False, body
    assert dropped("buffer_full") == before + 1
    assert len(client.app[GATEWAY].calls or ()) == 2


def test_the_byte_bound_counts_recorded_arguments() -> None:
    buffer = CallBuffer(max_entries=100, max_bytes=4096)
    entry = ToolCall("t", "i", 1, "test", "k", "tool", "ok", 0, None, None, "h", "x" * 3000)
    before = dropped("buffer_full")
    buffer.add(entry)
    buffer.add(entry)  # past 4096 bytes
    assert len(buffer) == 1 and buffer.dropped == 1
    assert dropped("buffer_full") == before + 1
    assert buffer.take(10) == [entry] and len(buffer) == 0
    buffer.add(entry)  # the room is back once written
    assert len(buffer) == 1
