"""The baseline: the simplest aiohttp handler that parses a JSON-RPC POST and returns a fixed
`tools/call` result. Also serves as the fast stub upstream MCP server (`--upstream`). Both run
on uvloop, the loop the gateway itself runs on, so the ratios compare the request paths and
not the loops."""

from __future__ import annotations

import argparse
import json
import uuid

import uvloop
from aiohttp import web

RESULT = {"content": [{"type": "text", "text": "ok"}], "isError": False}


async def baseline(request: web.Request) -> web.Response:
    message = json.loads(await request.read())
    return web.json_response({"jsonrpc": "2.0", "id": message.get("id"), "result": RESULT})


async def upstream(request: web.Request) -> web.Response:
    """Just enough of an MCP server (legacy Streamable HTTP) for the gateway's proxy."""
    message = json.loads(await request.read())
    method = message.get("method")
    if "id" not in message:
        return web.Response(status=202)
    if method == "initialize":
        result = {
            "protocolVersion": message["params"].get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "stub", "version": "1"},
        }
        return web.json_response(
            {"jsonrpc": "2.0", "id": message["id"], "result": result},
            headers={"Mcp-Session-Id": uuid.uuid4().hex},
        )
    if method == "tools/list":
        tools = [
            {
                "name": "echo",
                "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
            }
        ]
        return web.json_response(
            {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": tools}}
        )
    return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": RESULT})


async def delete(request: web.Request) -> web.Response:
    return web.Response(status=204)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", action="store_true")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/mcp", upstream if args.upstream else baseline)
    app.router.add_delete("/mcp", delete)
    web.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
