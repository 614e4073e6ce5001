"""The example server's Streamable HTTP transport (legacy era) at ``/mcp``: HTTP checks, sessions,
and the JSON-RPC methods ``initialize``, ``ping``, ``tools/list`` and ``tools/call``.

The protocol facts (versions, header names, error codes, the error type and SSE framing) are
mcp_core's, the gateway's own, so the two sides of the demo cannot drift apart.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.example_upstream.catalog import INSTRUCTIONS, TOOLS
from gateway.example_upstream.crm import Crm
from gateway.example_upstream.sessions import Sessions
from mcp_core import sse
from mcp_core.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SESSION_NOT_FOUND,
    McpError,
    error_response,
)
from mcp_core.headers import PROTOCOL_VERSION_HEADER, SESSION_ID_HEADER
from mcp_core.messages import is_request_id, valid_id_or_none
from mcp_core.protocol_2024 import result_for
from mcp_core.versions import DEFAULT_LEGACY_VERSION, LATEST_LEGACY_VERSION, LEGACY_VERSIONS

__all__ = ["MAX_BODY_BYTES", "ExampleUpstream"]

SERVER_INFO = {"name": "example-crm", "title": "Example CRM", "version": "1.0.0"}
MAX_BODY_BYTES = 1024 * 1024
PAGE_SIZE = 50
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# The only protocol version with JSON-RPC batches (also the legacy era's default).
BATCH_VERSION = DEFAULT_LEGACY_VERSION


@dataclass
class ExampleUpstream:
    """The MCP server: ``app()`` serves it at ``/mcp``; ``crm`` holds its data."""

    crm: Crm = field(default_factory=Crm)
    sessions: Sessions = field(default_factory=Sessions)

    def app(self) -> web.Application:
        """An aiohttp application serving this server at ``/mcp``."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/mcp", self._post)
        app.router.add_delete("/mcp", self._delete)
        app.router.add_get("/mcp", self._get)
        return app

    # ------------------------------------------------------------------ HTTP

    async def _get(self, request: web.Request) -> web.Response:
        return web.Response(
            status=405,
            headers={"Allow": "POST, DELETE"},
            text="this server does not open streams: POST messages\n",
        )

    async def _delete(self, request: web.Request) -> web.Response:
        try:
            _check_origin(request)
            session_id, _ = self._session(request)
        except McpError as exc:
            return _error_response(exc)
        self.sessions.end(session_id)
        return web.Response(status=204)

    async def _post(self, request: web.Request) -> web.StreamResponse:
        try:
            _check_origin(request)
            json_ok, sse_ok = _accepts(request.headers.get("Accept"))
            if not (json_ok or sse_ok):
                raise _refusal(
                    406,
                    INVALID_REQUEST,
                    "Not Acceptable: accept application/json or text/event-stream",
                )
            if request.content_type != "application/json":
                raise _refusal(
                    415, INVALID_REQUEST, "Unsupported Media Type: send application/json"
                )
            try:
                message = json.loads(await request.read())
            except ValueError:
                raise _refusal(400, PARSE_ERROR, "Parse error: the body is not JSON") from None
            header_version = request.headers.get(PROTOCOL_VERSION_HEADER)
            if header_version is not None and header_version not in LEGACY_VERSIONS:
                raise _refusal(
                    400,
                    INVALID_REQUEST,
                    f"Unsupported protocol version {header_version[:40]!r}; "
                    f"supported: {', '.join(LEGACY_VERSIONS)}",
                )
            headers: dict[str, str] = {}
            reply = self._handle_body(request, message, headers)
        except McpError as exc:
            return _error_response(exc)
        except web.HTTPRequestEntityTooLarge:
            return _error_response(
                _refusal(413, INVALID_REQUEST, f"Request body over {MAX_BODY_BYTES} bytes")
            )
        if reply is None:
            return web.Response(status=202, headers=headers)
        if sse_ok and not json_ok:
            return await _send_sse(request, reply, headers)
        return web.json_response(reply, headers=headers)

    def _handle_body(self, request: web.Request, message: Any, headers: dict[str, str]) -> Any:
        """The JSON-RPC reply (object or batch array), or None when nothing answers (202)."""
        if isinstance(message, list):
            _, version = self._session(request)
            if version != BATCH_VERSION:
                raise _refusal(
                    400,
                    INVALID_REQUEST,
                    f"Batches are only part of protocol version {BATCH_VERSION}",
                )
            if not message:
                raise _refusal(400, INVALID_REQUEST, "Invalid Request: empty batch")
            replies = [
                r
                for item in message
                if (r := self._handle_message(request, item, headers, batch=True))
            ]
            return replies or None
        return self._handle_message(request, message, headers, batch=False)

    def _handle_message(
        self, request: web.Request, message: Any, headers: dict[str, str], *, batch: bool
    ) -> dict[str, Any] | None:
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return error_response(
                None, INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message"
            )
        method = message.get("method")
        if method is None and ("result" in message or "error" in message):
            return None  # a response to a request of ours: we never send any
        msg_id = message.get("id")
        if not isinstance(method, str) or ("id" in message and not is_request_id(msg_id)):
            return error_response(
                valid_id_or_none(message), INVALID_REQUEST, "Invalid Request: bad method or id"
            )
        params = message.get("params", {})
        if not isinstance(params, dict):
            return error_response(msg_id, INVALID_PARAMS, "Invalid params: must be an object")
        if method == "initialize":
            if batch:
                return error_response(
                    msg_id, INVALID_REQUEST, "initialize must not be part of a batch"
                )
            answer = self._initialize(params, headers)
            return _result(msg_id, result_for(method, DEFAULT_LEGACY_VERSION, answer))
        # A batch checked the session once; batches are 2025-03-26 only.
        version = BATCH_VERSION if batch else self._session(request)[1]
        if "id" not in message:
            return None  # notifications (notifications/initialized, cancelled, ...)
        if method == "ping":
            return _result(msg_id, {})
        if method == "tools/list":
            return self._tools_list(msg_id, params, version)
        if method == "tools/call":
            name = params.get("name")
            arguments = params.get("arguments", {})
            if not isinstance(name, str) or not self.crm.has_tool(name):
                return error_response(msg_id, INVALID_PARAMS, f"Unknown tool: {str(name)[:128]}")
            if not isinstance(arguments, dict):
                return error_response(msg_id, INVALID_PARAMS, "arguments must be an object")
            return _result(msg_id, result_for(method, version, self.crm.call(name, arguments)))
        return error_response(msg_id, METHOD_NOT_FOUND, f"Method not found: {method[:100]}")

    # ------------------------------------------------------------------ sessions

    def _initialize(self, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        asked = params.get("protocolVersion")
        version = asked if asked in LEGACY_VERSIONS else LATEST_LEGACY_VERSION
        headers[SESSION_ID_HEADER] = self.sessions.start(version)
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": SERVER_INFO,
            "instructions": INSTRUCTIONS,
        }

    def _session(self, request: web.Request) -> tuple[str, str]:
        """The request's live session id (refreshed) and its protocol version, or the 400 / 404
        refusal."""
        session_id = request.headers.get(SESSION_ID_HEADER)
        if not session_id:
            raise _refusal(
                400,
                INVALID_REQUEST,
                f"Bad Request: {SESSION_ID_HEADER} header is required (initialize first)",
            )
        version = self.sessions.touch(session_id)
        if version is None:
            raise _refusal(404, SESSION_NOT_FOUND, "Session not found: initialize again")
        return session_id, version

    # ------------------------------------------------------------------ methods

    def _tools_list(self, msg_id: Any, params: dict[str, Any], version: str) -> dict[str, Any]:
        cursor = params.get("cursor")
        start = 0
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor.isdigit() or int(cursor) > len(TOOLS):
                return error_response(msg_id, INVALID_PARAMS, "Invalid params: unknown cursor")
            start = int(cursor)
        end = start + PAGE_SIZE
        result: dict[str, Any] = {"tools": copy.deepcopy(TOOLS[start:end])}
        if end < len(TOOLS):
            result["nextCursor"] = str(end)
        return _result(msg_id, result_for("tools/list", version, result))


def _refusal(status: int, code: int, message: str) -> McpError:
    """A request answered at the HTTP level (`status`, a JSON-RPC error body) instead of by a
    method."""
    return McpError(code, message, http_status=status)


def _check_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is None:
        return
    host = urlsplit(origin).hostname
    if host not in LOOPBACK_HOSTS:
        raise _refusal(403, INVALID_REQUEST, "Forbidden: Origin not allowed")


def _accepts(header: str | None) -> tuple[bool, bool]:
    """(JSON acceptable, SSE acceptable); no Accept header accepts anything."""
    if header is None:
        return True, True
    types = {part.split(";", 1)[0].strip().lower() for part in header.split(",")}
    anything = "*/*" in types
    return (
        anything or "application/json" in types or "application/*" in types,
        anything or "text/event-stream" in types or "text/*" in types,
    )


async def _send_sse(
    request: web.Request, reply: Any, headers: dict[str, str]
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={**headers, "Content-Type": sse.SSE_CONTENT_TYPE, "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    await resp.write(sse.event(json.dumps(reply)))
    await resp.write_eof()
    return resp


def _result(msg_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def _error_response(exc: McpError) -> web.Response:
    return web.json_response(exc.response(None), status=exc.http_status or 400)
