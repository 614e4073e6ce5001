"""CPU µs per JSON-RPC dispatch: jsonrpcserver's defaults vs the way gateway/dispatch.py uses it.

    .venv/bin/python bench/dispatch_bench.py [--calls 20000]

Every variant parses the same `tools/list` request from JSON and serializes its answer, so the
figures differ only in dispatch. Best of five rounds of CPU time (process_time), per call, on
uvloop (the gateway's loop).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop
from aiohttp.test_utils import make_mocked_request
from jsonrpcserver import Result, Success, async_dispatch

from gateway.context import Endpoint, IntegrationView, KeyEntry, RequestContext
from gateway.dispatch import dispatch_one, lean_validator
from mcp_core.versions import Era

TOOLS: tuple[dict[str, Any], ...] = tuple(
    {"name": f"tool_{i}", "inputSchema": {"type": "object"}} for i in range(3)
)
REQUEST = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/list",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        },
    }
)


async def plain_tools_list(ctx: RequestContext, **params: Any) -> Result:
    return Success({"tools": list(ctx.integration.tools)})


class NoTools:
    """The context's executor: `tools/list` never calls it."""

    async def call_tool(self, *args: Any) -> dict[str, Any]:
        raise AssertionError("tools/list calls no executor")


def context() -> RequestContext:
    view = IntegrationView(
        tenant_id="acme",
        integration_id="crm",
        name="CRM",
        enabled=True,
        description=None,
        config_id="c1",
        upstream_url=None,
        upstream_headers={},
        tools=TOOLS,
        tools_by_name={t["name"]: t for t in TOOLS},
    )
    key = KeyEntry(key_id="k1", tenant_id="acme", integration_id="crm", scope="mcp:invoke")
    return RequestContext(
        key=key,
        integration=view,
        endpoint=Endpoint.TEST,
        executor=NoTools(),
        era=Era.MODERN,
        protocol_version="2026-07-28",
        request=make_mocked_request("POST", "/mcp"),
    )


def variants(ctx: RequestContext) -> dict[str, Callable[[], Awaitable[str]]]:
    plain = {"tools/list": plain_tools_list}

    async def baseline() -> str:
        return json.dumps(json.loads(REQUEST))

    async def library_default() -> str:
        return await async_dispatch(REQUEST, methods=plain, context=ctx)

    async def lean_validator_only() -> str:
        return await async_dispatch(REQUEST, methods=plain, context=ctx, validator=lean_validator)

    async def gateway_path() -> str:
        # What the transport does: structural check, dispatch_one, modern result decoration
        # (resultType, serverInfo, ttlMs, cacheScope).
        message = json.loads(REQUEST)
        lean_validator(message)
        return json.dumps(await dispatch_one(message, ctx))

    return {
        "json.loads + json.dumps only (floor)": baseline,
        "jsonrpcserver default (jsonschema validator)": library_default,
        "+ lean validator=": lean_validator_only,
        "gateway.dispatch (async_dispatch_to_serializable, lean validator=)": gateway_path,
    }


async def measure(run: Callable[[], Awaitable[str]], calls: int) -> float:
    for _ in range(min(calls, 1000)):  # warm-up
        await run()
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(calls):
            await run()
        best = min(best, time.process_time() - start)
    return best / calls * 1e6


async def main(calls: int) -> None:
    ctx = context()
    print(f"{calls} calls per round, best of 5, CPU µs per dispatch")
    for name, run in variants(ctx).items():
        print(f"  {await measure(run, calls):7.1f} µs  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    uvloop.run(main(parser.parse_args().calls))
