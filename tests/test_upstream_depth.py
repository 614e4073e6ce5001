"""Deep upstream data (issue #18): whatever an upstream MCP server answers is bounded in depth
like client bodies (64 levels of arrays and objects), so no tenant's upstream can make the
gateway recurse until it fails.

- tools/call: a deeper result (JSON or SSE) is a JSON-RPC error naming the upstream failure,
  never a 500; the gateway keeps serving;
- catalogs (POST /configs, :syncTools): a deeper catalog, on any tools/list page, is a 502
  problem and nothing is stored;
- a catalog given to the validator directly is bounded too (each tool at 64 levels).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import Api, make_settings
from mcp_helpers import modern_headers, modern_message
from mcp_stub import StubUpstream

from gateway.server import build_app
from mcp_core.json_codec import dumps_bytes
from settings_api.tools import normalize_tools

TOOLS = [{"name": "search_contacts", "inputSchema": {"type": "object"}}]
ENV = {"MCPGW_UPSTREAM_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128"}  # the stubs are on 127.0.0.1


def nested(levels: int) -> str:
    """JSON text of objects nested `levels` deep (too deep for json.dumps at 1000)."""
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


def deep_schema(levels: int) -> dict[str, Any]:
    """An object schema whose `properties` nest `levels` deep."""
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"child": schema}}
    return schema


def tools_page(tools: str, cursor: str | None = None) -> str:
    more = f',"nextCursor":{json.dumps(cursor)}' if cursor else ""
    return f'{{"tools":[{tools}]{more}}}'


DEEP_ANNOTATIONS = tools_page(
    '{"name":"deep","inputSchema":{"type":"object"},"annotations":' + nested(900) + "}"
)
DEEP_SCHEMA = tools_page(json.dumps({"name": "deep", "inputSchema": deep_schema(200)}))


@pytest.fixture
async def gateway(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", **ENV)
    return await aiohttp_client(build_app(settings))


@pytest.fixture
def api(gateway: TestClient, auth: Callable[..., dict[str, str]]) -> Api:
    return Api(gateway, auth("acme"))


async def upstream(aiohttp_server: Any, stub: StubUpstream) -> str:
    return str((await aiohttp_server(stub.app())).make_url("/mcp"))


async def call_tool(client: TestClient, key: str) -> tuple[int, Any]:
    message = modern_message("tools/call", {"name": "search_contacts", "arguments": {}})
    headers = modern_headers(message, key)
    body = message
    async with client.post(
        "/v1/tenants/acme/integrations/crm/mcp:call", json=body, headers=headers
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def configs_of(api: Api) -> list[dict[str, Any]]:
    _, page = await api.call("GET", "/crm/configs", 200)
    return page["items"]


def assert_too_deep_problem(status: int, problem: Any) -> None:
    assert status == 502, (status, problem)
    assert problem["type"].endswith("/upstream-failed"), problem
    assert "more than 64 levels deep" in problem["detail"], problem


@pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
async def test_a_tool_result_nested_1000_levels_is_a_json_rpc_error_not_a_500(
    api: Api, gateway: TestClient, aiohttp_server: Any, sse: bool
) -> None:
    stub = StubUpstream(tools=TOOLS, sse=sse)
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    _, config = await api.call(
        "POST", "/crm/configs", 201, json={"upstreamUrl": await upstream(aiohttp_server, stub)}
    )
    key = await api.enable(config["configId"], ["search_contacts"])
    stub.raw_results["tools/call"] = [
        '{"content":[{"type":"text","text":"deep"}],"structuredContent":' + nested(1000) + "}",
        '{"content":[{"type":"text","text":"fine"}],"isError":false}',
    ]

    status, body = await call_tool(gateway, key)
    assert status == 200, (status, body)
    error = body["error"]
    assert error["code"] == -32603, body
    assert error["data"] == {"upstream": "invalid-response"}, body
    assert error["message"].startswith("Upstream MCP server sent an invalid response"), body
    assert "more than 64 levels deep" in error["message"], body

    # The gateway keeps serving, the same session included.
    status, body = await call_tool(gateway, key)
    assert status == 200 and body["result"]["content"][0]["text"] == "fine", body


@pytest.mark.parametrize(
    "catalog", [DEEP_SCHEMA, DEEP_ANNOTATIONS], ids=["schema-200-properties", "annotations-900"]
)
async def test_a_deep_upstream_catalog_is_a_problem_and_is_not_stored(
    api: Api, aiohttp_server: Any, catalog: str
) -> None:
    stub = StubUpstream(tools=TOOLS, raw_results={"tools/list": [catalog]})
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    status, problem = await api.call(
        "POST", "/crm/configs", json={"upstreamUrl": await upstream(aiohttp_server, stub)}
    )
    assert_too_deep_problem(status, problem)
    assert problem["reason"] == "invalid-response"
    assert await configs_of(api) == []


async def test_a_deep_second_tools_list_page_is_refused_too(api: Api, aiohttp_server: Any) -> None:
    first = tools_page(json.dumps(TOOLS[0]), cursor="offset-1")
    stub = StubUpstream(tools=TOOLS, raw_results={"tools/list": [first, DEEP_ANNOTATIONS]})
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    status, problem = await api.call(
        "POST", "/crm/configs", json={"upstreamUrl": await upstream(aiohttp_server, stub)}
    )
    assert_too_deep_problem(status, problem)
    assert stub.calls["tools/list"] == 2
    assert await configs_of(api) == []


async def test_a_sync_that_finds_a_deep_catalog_keeps_the_stored_one(
    api: Api, aiohttp_server: Any
) -> None:
    stub = StubUpstream(tools=TOOLS, sse=True)
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    _, config = await api.call(
        "POST", "/crm/configs", 201, json={"upstreamUrl": await upstream(aiohttp_server, stub)}
    )
    stub.raw_results["tools/list"] = ["{}", DEEP_SCHEMA]  # the first tools/list was answered

    status, problem = await api.call("POST", f"/crm/configs/{config['configId']}:syncTools")
    assert_too_deep_problem(status, problem)
    [stored] = await configs_of(api)
    assert stored["tools"] == config["tools"]


def test_the_catalog_validator_bounds_each_tools_depth() -> None:
    # However a catalog arrives, its schema checks never recurse through unbounded depth.
    tools, errors = normalize_tools(
        [{"name": "deep", "inputSchema": deep_schema(200)}, {"name": "fine"}]
    )
    assert [(e.field, e.message) for e in errors] == [
        ("tools[0]", "the tool nests arrays and objects more than 64 levels deep")
    ]
    assert [tool["name"] for tool in tools] == ["fine"]


def test_a_value_too_deep_to_encode_is_refused_as_not_json() -> None:
    # The last line of defence (e.g. a catalog stored before upstream depth was bounded): the
    # transport answers a ValueError with -32603, a RecursionError would be a 500.
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValueError, match="nests too deeply"):
        dumps_bytes({"result": deep})
