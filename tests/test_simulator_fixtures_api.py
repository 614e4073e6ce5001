"""Simulator fixtures: the settings API (PUT/GET/DELETE, validation, audit) and their effect on
testUrl, on both store backends, through the live app."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from mcp_helpers import TEST, modern_headers, modern_message

PRICE_TOOL = {
    "name": "get_price",
    "description": "Price of a SKU",
    "inputSchema": {
        "type": "object",
        "properties": {"sku": {"type": "string"}},
        "required": ["sku"],
    },
    "outputSchema": {
        "type": "object",
        "required": ["sku", "price", "currency"],
        "properties": {
            "sku": {"type": "string"},
            "price": {"type": "number", "minimum": 0},
            "currency": {"enum": ["EUR", "USD"]},
        },
    },
}
OTHER_TOOL = {"name": "ping_crm", "inputSchema": {"type": "object"}}
FIXTURE = {
    "rules": [
        {"match": {"sku": "BOOM"}, "error": {"code": -32001, "message": "warehouse offline"}},
        {
            "match": {"sku": "SLOW"},
            "latencyMs": 400,
            "result": {
                "content": [{"type": "text", "text": "slow"}],
                "structuredContent": {"sku": "SLOW", "price": 1, "currency": "EUR"},
            },
        },
        {
            "match": {"sku": "A-1"},
            "result": {
                "content": [{"type": "text", "text": "scripted A-1"}],
                "structuredContent": {"sku": "A-1", "price": 9.5, "currency": "USD"},
            },
        },
    ]
}
FIXTURES = "/crm/mcp/simulator/fixtures"


@pytest.fixture
async def key(api: Any) -> str:
    return await api.enabled_key([PRICE_TOOL, OTHER_TOOL])


async def call_tool(
    client: TestClient,
    key: str,
    arguments: dict[str, Any],
    *,
    tool: str = "get_price",
    seed: str | None = None,
) -> tuple[int, Any]:
    message = modern_message("tools/call", {"name": tool, "arguments": arguments})
    headers = modern_headers(message, key)
    if seed is not None:
        headers["X-Simulator-Seed"] = seed
    async with client.post(TEST, json=message, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_put_get_delete_round_trip_with_versions_and_audit(api: Any, key: str) -> None:
    _, created = await api.call("PUT", f"{FIXTURES}/get_price", 201, json=FIXTURE)
    assert created["toolId"] == "get_price" and created["fixturesVersion"] == 1
    assert [r["latencyMs"] for r in created["rules"]] == [0, 400, 0]  # defaults made explicit
    _, replaced = await api.call("PUT", f"{FIXTURES}/get_price", 200, json=FIXTURE)
    assert replaced["fixturesVersion"] == 2
    _, read = await api.call("GET", f"{FIXTURES}/get_price", 200)
    assert read == replaced
    await api.call("DELETE", f"{FIXTURES}/get_price", 204)
    await api.call("GET", f"{FIXTURES}/get_price", 404)
    await api.call("DELETE", f"{FIXTURES}/get_price", 404)
    async with api.client.get("/v1/tenants/acme/audit", headers=api.headers) as resp:
        actions = [e["action"] for e in (await resp.json())["items"]]
    assert actions[:3] == [
        "simulator.fixture_deleted",
        "simulator.fixture_put",
        "simulator.fixture_put",
    ]


async def test_unknown_tool_is_404(api: Any, key: str) -> None:
    await api.call("PUT", f"{FIXTURES}/no_such_tool", 404, json=FIXTURE)
    await api.call("PUT", "/nope/mcp/simulator/fixtures/get_price", 404, json=FIXTURE)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {
                "rules": [
                    {
                        "result": {
                            "content": [{"type": "text", "text": "x"}],
                            "structuredContent": {"sku": "A", "price": -1, "currency": "EUR"},
                        }
                    }
                ]
            },
            "rules[0].result.structuredContent.price",
        ),
        ({"rules": [{"latencyMs": 30001, "result": {"content": []}}]}, "rules[0].latencyMs"),
        ({"rules": [{"match": {}}]}, "rules[0]"),
        ({"rules": "all"}, "rules"),
        ({"rules": [], "extra": 1}, "extra"),
    ],
)
async def test_bad_fixtures_are_422_naming_the_field(
    api: Any, key: str, body: Any, field: str
) -> None:
    _, problem = await api.call("PUT", f"{FIXTURES}/get_price", 422, json=body)
    fields = [e["field"] for e in problem["errors"]]
    assert any(f == field or f.startswith(field) for f in fields), fields


async def test_generated_results_are_deterministic_schema_valid_and_seedable(
    client: TestClient, key: str
) -> None:
    status, first = await call_tool(client, key, {"sku": "X-9"})
    assert status == 200
    result = first["result"]
    assert result.get("isError") is not True
    assert result["structuredContent"]["currency"] in ("EUR", "USD")
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    _, again = await call_tool(client, key, {"sku": "X-9"})
    assert json.dumps(again) == json.dumps(first)
    _, other_args = await call_tool(client, key, {"sku": "X-10"})
    _, seeded = await call_tool(client, key, {"sku": "X-9"}, seed="run-2")
    assert other_args["result"] != result and seeded["result"] != result
    _, seeded_again = await call_tool(client, key, {"sku": "X-9"}, seed="run-2")
    assert seeded_again == seeded


async def test_invalid_arguments_are_an_error_result_naming_the_field(
    client: TestClient, key: str
) -> None:
    status, body = await call_tool(client, key, {"sku": 12, "extra": True})
    assert status == 200
    assert body["result"]["isError"] is True
    assert "sku" in body["result"]["content"][0]["text"]


async def test_fixtures_script_results_errors_and_non_blocking_latency(
    api: Any, client: TestClient, key: str
) -> None:
    _, before = await call_tool(client, key, {"sku": "A-1"})
    await api.call("PUT", f"{FIXTURES}/get_price", 201, json=FIXTURE)
    _, scripted = await call_tool(client, key, {"sku": "A-1"})
    assert scripted["result"]["structuredContent"] == {
        "sku": "A-1",
        "price": 9.5,
        "currency": "USD",
    }
    _, failed = await call_tool(client, key, {"sku": "BOOM"})
    assert failed["error"]["code"] == -32001
    assert failed["error"]["message"] == "warehouse offline"
    # A fixture change bumps the version, which reseeds generated answers too.
    _, unmatched = await call_tool(client, key, {"sku": "Z"})
    assert unmatched["result"].get("isError") is not True and before != scripted

    started = time.monotonic()
    slow = asyncio.create_task(call_tool(client, key, {"sku": "SLOW"}))
    await asyncio.sleep(0.05)
    _, quick = await call_tool(client, key, {"sku": "A-1"})
    quick_done = time.monotonic() - started
    assert quick["result"]["structuredContent"]["sku"] == "A-1"
    _, slow_body = await slow
    assert quick_done < 0.35, "the scripted latency must not block other requests"
    assert time.monotonic() - started >= 0.4
    assert slow_body["result"]["content"][0]["text"] == "slow"


async def test_default_rule_answers_everything_else(api: Any, client: TestClient, key: str) -> None:
    await api.call(
        "PUT",
        f"{FIXTURES}/ping_crm",
        201,
        json={"rules": [{"match": {}, "result": {"content": [{"type": "text", "text": "pong"}]}}]},
    )
    for arguments in ({}, {"anything": [1, 2]}):
        _, body = await call_tool(client, key, arguments, tool="ping_crm")
        assert body["result"]["content"] == [{"type": "text", "text": "pong"}]


async def test_other_tenant_cannot_see_or_change_fixtures(api: Any, auth: Any, key: str) -> None:
    await api.call("PUT", f"{FIXTURES}/get_price", 201, json=FIXTURE)
    other = {"Authorization": auth("other")["Authorization"]}
    path = f"{api.base}{FIXTURES}/get_price"
    for method, body in (("GET", None), ("PUT", FIXTURE), ("DELETE", None)):
        async with api.client.request(method, path, json=body, headers=other) as resp:
            assert resp.status == 403
    await api.call("GET", f"{FIXTURES}/get_price", 200)
