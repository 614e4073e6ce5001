"""The client matrix's Python SDK 1.x driver (tests/test_client_matrix.py runs it in its own
virtualenv): matrix_steps.py on each URL, then what it saw as one JSON object on stdout."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
from matrix_steps import ARGUMENTS, TOOL, Seen, each_url, steps
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.types import LoggingMessageNotificationParams


async def run(url: str, key: str) -> Seen:
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=10)
    logs: list[str] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logs.append(params.level)

    async with http, streamable_http_client(url, http_client=http) as (read, write, _):
        async with ClientSession(read, write, logging_callback=on_log) as session:
            protocol = (await session.initialize()).protocolVersion

            async def call() -> Seen:
                result: Any = await session.call_tool(TOOL, ARGUMENTS)
                text = result.content[0].text if result.content else None
                return {"isError": bool(result.isError), "text": text, "meta": result.meta}

            async def list_tools() -> Seen:
                try:
                    return {"tools": [tool.name for tool in (await session.list_tools()).tools]}
                except McpError as exc:
                    error = exc.error
                    return {"code": error.code, "message": error.message, "data": error.data}

            async def ask_logs(level: Any) -> None:
                await session.set_logging_level(level)

            return await steps(protocol, call, list_tools, ask_logs, logs)


async def main(key: str, pause_s: float, urls: list[str]) -> None:
    print(json.dumps({"runs": await each_url(urls, pause_s, lambda url: run(url, key))}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
