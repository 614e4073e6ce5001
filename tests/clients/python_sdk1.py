"""The client matrix's Python SDK 1.x driver (tests/test_client_matrix.py runs it in its own
virtualenv): per URL, list tools, call one, call until the rate limit answers, wait as told and
call again, then the same with tools/list. Prints what it saw as one JSON object."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError

TOOL, ARGUMENTS, TRIES = "search_contacts", {"query": "ada"}, 40


def call_seen(result: Any) -> dict[str, Any]:
    return {
        "isError": bool(result.isError),
        "text": result.content[0].text if result.content else None,
        "meta": result.meta,
    }


async def list_seen(session: ClientSession) -> dict[str, Any]:
    try:
        return {"tools": [tool.name for tool in (await session.list_tools()).tools]}
    except McpError as exc:
        return {"code": exc.error.code, "message": exc.error.message, "data": exc.error.data}


async def run(url: str, key: str) -> dict[str, Any]:
    seen: dict[str, Any] = {"url": url}
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=10)
    async with http, streamable_http_client(url, http_client=http) as (read, write, _):
        async with ClientSession(read, write) as session:
            seen["protocol"] = (await session.initialize()).protocolVersion
            seen["list"] = await list_seen(session)
            seen["call"] = call_seen(await session.call_tool(TOOL, ARGUMENTS))
            for _ in range(TRIES):
                limited = call_seen(await session.call_tool(TOOL, ARGUMENTS))
                if limited["isError"]:
                    break
            seen["limited_call"] = limited
            wait_ms = (limited["meta"] or {}).get("io.mcpgateway/rateLimit", {}).get("retryAfterMs")
            await asyncio.sleep((wait_ms or 0) / 1000)
            seen["retried_call"] = call_seen(await session.call_tool(TOOL, ARGUMENTS))
            for _ in range(TRIES):
                limited_list = await list_seen(session)
                if "code" in limited_list:
                    break
            seen["limited_request"] = limited_list
            await asyncio.sleep(((limited_list.get("data") or {}).get("retryAfterMs") or 0) / 1000)
            seen["retried_request"] = await list_seen(session)
    return seen


async def main(key: str, pause_s: float, urls: list[str]) -> None:
    runs = []
    for index, url in enumerate(urls):
        if index:
            await asyncio.sleep(pause_s)  # the buckets refill between URLs
        runs.append(await run(url, key))
    print(json.dumps({"runs": runs}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
