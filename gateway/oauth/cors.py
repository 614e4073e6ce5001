"""CORS of the OAuth documents and endpoints: browser-based MCP clients (the Inspector's web
UI) read the metadata and call the token endpoint from another origin. None of them uses
cookies or ambient credentials, so any origin may."""

from __future__ import annotations

from aiohttp import web

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, MCP-Protocol-Version",
    "Access-Control-Max-Age": "600",
}


async def preflight(request: web.Request) -> web.Response:
    """The answer to a CORS preflight (`OPTIONS`)."""
    return web.Response(status=204, headers=CORS_HEADERS)
