"""A stub upstream MCP server (Streamable HTTP, legacy era only) for tests. Not a test module.

Usage with pytest-aiohttp::

    stub = StubUpstream(tools=[{"name": "echo", "inputSchema": {"type": "object"}}])
    server = await aiohttp_server(stub.app())
    url = str(server.make_url("/mcp"))

Failure modes (``mode``) apply to JSON-RPC requests whose method is in ``fail_on`` (default:
every request, not notifications; list a notification method to make it fail too).
"reset" drops the connection without an answer; "session-expired" answers 404 as for an unknown
session. ``expire_sessions()`` forgets every live session (later requests on them get 404).

On SSE, every answer starts with one ``notifications/message`` per level in ``log_levels``
(whatever the client asked: filtering is the gateway's job), and a ``tools/call`` whose
``params._meta`` carries a ``progressToken`` is answered after ``progress_steps``
``notifications/progress`` for that token, each sent ``progress_delay_s`` after the previous
one.

``raw_results[method]`` answers that method with pre-encoded JSON text as its ``result`` (the
n-th request gets the n-th text, the last one repeating): JSON nested deeper than the json
module can encode, or one deep page of a paginated ``tools/list``.

``disconnects`` counts requests whose client (the gateway) went away before the answer was
complete: while a "slow" request waits, or while an SSE answer is being streamed. It counts
the handler's cancellation (aiohttp's test server cancels handlers whose client hung up) as
well as a connection seen closed (servers that do not cancel).
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["STUB_PROTOCOL_VERSIONS", "StubUpstream", "make_tools"]

STUB_PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
MODES = (
    "ok",
    "http-500",
    "garbage",
    "slow",
    "jsonrpc-error",
    "huge",
    "repeat-cursor",
    "reset",
    "session-expired",
)
HUGE_BODY_BYTES = 10 * 1024 * 1024 + 512 * 1024  # > 10 MiB, past the client's 8 MiB default
_CHUNK = 64 * 1024


def make_tools(count: int, prefix: str = "tool") -> list[dict[str, Any]]:
    """``count`` distinct, schema-complete tools named ``{prefix}_0`` ... in order."""
    return [
        {
            "name": f"{prefix}_{i}",
            "title": f"Tool {i}",
            "description": f"Test tool number {i}",
            "inputSchema": {
                "type": "object",
                "properties": {"q": {"type": "string"}},
                "required": ["q"],
            },
            "annotations": {"readOnlyHint": True},
        }
        for i in range(count)
    ]


@dataclass
class StubUpstream:
    """Configurable upstream MCP server; inspect ``calls``/``sessions``/``received_headers``."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 50  # tools/list pagination via nextCursor
    sse: bool = False  # answer requests with text/event-stream instead of application/json
    mode: str = "ok"  # one of MODES
    delay_s: float = 0.0  # for mode "slow"
    fail_on: set[str] | None = None  # methods the mode applies to; None = every request
    require_headers: dict[str, str] = field(default_factory=dict)  # else 401
    stateful: bool = True  # issue Mcp-Session-Id on initialize and require it afterwards
    error_code: int = -32603  # for mode "jsonrpc-error"
    error_message: str = "stub upstream failure"
    error_data: Any = None  # for mode "jsonrpc-error": sent as error.data when not None
    progress_steps: int = 3  # SSE tools/call with a progressToken: notifications sent first
    log_levels: tuple[str, ...] = ("info",)  # SSE: one notifications/message per level
    server_version: str | None = None  # force the negotiated protocolVersion
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    sessions: set[str] = field(default_factory=set)
    ended_sessions: set[str] = field(default_factory=set)
    received_headers: list[dict[str, str]] = field(default_factory=list)
    received_messages: list[dict[str, Any]] = field(default_factory=list)
    progress_delay_s: float = 0.0  # SSE: pause before each progress notification
    disconnects: int = 0  # requests abandoned by the client before their answer was complete
    set_cookie: str | None = None  # sent as Set-Cookie on every JSON answer when set
    raw_results: dict[str, list[str]] = field(default_factory=dict)  # method -> result texts
    # Requests at a protocol version the stub does not speak (the gateway's 2026-07-28 probe),
    # refused with 400 as a legacy-only server does, before anything else is recorded.
    probes: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown stub mode {self.mode!r}")
        if self.page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._closing = asyncio.Event()

    def expire_sessions(self) -> None:
        """Forget every live session, as a server does when they expire or it restarts."""
        self.sessions.clear()

    def app(self, path: str = "/mcp") -> web.Application:
        """The aiohttp application serving the MCP endpoint at `path`."""
        app = web.Application()
        app.router.add_post(path, self._post)
        app.router.add_delete(path, self._delete)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        # Wake "slow" handlers so test teardown does not wait out delay_s.
        self._closing.set()

    # ------------------------------------------------------------------ HTTP layer

    def _check_auth(self, request: web.Request) -> web.Response | None:
        for name, value in self.require_headers.items():
            if request.headers.get(name) != value:
                return web.json_response({"error": "unauthorized"}, status=401)
        return None

    def _check_session(self, request: web.Request) -> web.Response | None:
        if not self.stateful:
            return None
        session_id = request.headers.get("Mcp-Session-Id")
        if session_id is None:
            return _rpc_error_response(None, -32600, "missing Mcp-Session-Id", status=400)
        if session_id not in self.sessions:
            return _rpc_error_response(None, -32001, "session not found", status=404)
        return None

    async def _delete(self, request: web.Request) -> web.Response:
        self.calls["DELETE"] += 1
        if (denied := self._check_auth(request)) is not None:
            return denied
        if not self.stateful:
            return web.Response(status=405)
        session_id = request.headers.get("Mcp-Session-Id")
        if session_id is None or session_id not in self.sessions:
            return web.Response(status=404)
        self.sessions.discard(session_id)
        self.ended_sessions.add(session_id)
        return web.Response(status=204)

    async def _post(self, request: web.Request) -> web.StreamResponse:
        version = request.headers.get("MCP-Protocol-Version")
        if version is not None and version not in STUB_PROTOCOL_VERSIONS:
            self.probes += 1
            return _rpc_error_response(None, -32600, "unsupported version", status=400)
        self.received_headers.append(dict(request.headers))
        if (denied := self._check_auth(request)) is not None:
            return denied
        accept = request.headers.get("Accept", "")
        if "application/json" not in accept or "text/event-stream" not in accept:
            return web.Response(status=406, text="Accept must list both media types")
        if request.content_type != "application/json":
            return web.Response(status=415)
        try:
            message = json.loads(await request.read())
        except ValueError:
            return _rpc_error_response(None, -32700, "parse error", status=400)
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            return _rpc_error_response(None, -32600, "invalid request", status=400)
        method: str = message["method"]
        self.calls[method] += 1
        self.received_messages.append(message)
        is_request = "id" in message

        if method != "initialize" and (bad := self._check_session(request)) is not None:
            return bad

        if self._fails(method, is_request):
            failed = await self._failure(request, message)
            if failed is not None:
                return failed

        if not is_request:
            return web.Response(status=202)
        headers: dict[str, str] = {}
        if self.set_cookie is not None:
            headers["Set-Cookie"] = self.set_cookie
        raw = self._raw_answer(message)
        if raw is not None:
            if self.sse:
                return await self._send_sse(request, {}, headers, message, raw=raw)
            return web.Response(text=raw, content_type="application/json", headers=headers)
        response = self._dispatch(message, headers)
        if self.sse:
            return await self._send_sse(request, response, headers, message)
        return web.json_response(response, headers=headers)

    def _raw_answer(self, message: dict[str, Any]) -> str | None:
        texts = self.raw_results.get(message["method"])
        if not texts or "id" not in message:
            return None
        text = texts[min(self.calls[message["method"]], len(texts)) - 1]
        return f'{{"jsonrpc":"2.0","id":{json.dumps(message["id"])},"result":{text}}}'

    def _fails(self, method: str, is_request: bool) -> bool:
        if self.mode in ("ok", "repeat-cursor"):
            return False
        if self.fail_on is None:
            return is_request
        return method in self.fail_on

    async def _failure(
        self, request: web.Request, message: dict[str, Any]
    ) -> web.StreamResponse | None:
        """The failure answer for ``self.mode``; None lets the request proceed ("slow")."""
        if self.mode == "http-500":
            return web.Response(status=500, text="internal error")
        if self.mode == "garbage":
            return web.Response(
                status=200, text="<html>this is not json{", content_type="application/json"
            )
        if self.mode == "jsonrpc-error":
            error = _rpc_error(message.get("id"), self.error_code, self.error_message)
            if self.error_data is not None:
                error["error"]["data"] = self.error_data
            return web.json_response(error)
        if self.mode == "session-expired":
            return _rpc_error_response(None, -32001, "session not found", status=404)
        if self.mode == "reset":
            return self._reset(request)
        if self.mode == "huge":
            return await self._send_huge(request, message)
        if self.mode == "slow":
            if await self._wait(request, self.delay_s):
                return web.Response(status=499)  # never reaches the client: it is gone
            return None
        raise AssertionError(self.mode)  # pragma: no cover

    async def _wait(self, request: web.Request, delay_s: float) -> bool:
        """Sleep ``delay_s`` (cut short when the stub shuts down); True, and counted in
        ``disconnects``, if the client hung up meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay_s
        try:
            while not self._closing.is_set():
                if request.transport is None or request.transport.is_closing():
                    self.disconnects += 1
                    return True
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._closing.wait(), timeout=min(left, 0.01))
                except TimeoutError:
                    pass
        except asyncio.CancelledError:
            self.disconnects += 1
            raise
        return False

    def _reset(self, request: web.Request) -> web.Response:
        # SO_LINGER 0 turns the close into a TCP reset: the client sees the connection drop
        # without any HTTP answer.
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return web.Response(status=500)  # never reaches the client

    async def _send_huge(self, request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        # A valid JSON-RPC response, chunked with no Content-Length, so only counting the
        # bytes as they arrive can stop the client.
        padding = HUGE_BODY_BYTES
        head = json.dumps({"jsonrpc": "2.0", "id": message.get("id")})[:-1]
        head += ', "result": {"tools": [{"name": "big", "description": "'
        tail = '"}]}}'
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            await resp.write(head.encode())
            block = b"x" * _CHUNK
            while padding > 0:
                await resp.write(block[: min(_CHUNK, padding)])
                padding -= _CHUNK
            await resp.write(tail.encode())
            await resp.write_eof()
        except ConnectionError:
            pass  # the client gave up reading, as it should
        return resp

    async def _send_sse(
        self,
        request: web.Request,
        response: dict[str, Any],
        headers: dict[str, str],
        message: dict[str, Any] | None = None,
        raw: str | None = None,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200, headers={**headers, "Content-Type": "text/event-stream"}
        )
        await resp.prepare(request)
        logs = [
            {
                "jsonrpc": "2.0",
                "method": "notifications/message",
                "params": {"level": level, "data": "working on it"},
            }
            for level in self.log_levels
        ]
        # A priming event (id + empty data, as the 2025-11-25 transport recommends), a comment,
        # server notifications, then the response itself spread over several data lines.
        payload = [raw] if raw is not None else json.dumps(response, indent=1).split("\n")
        progress = [
            f"data: {json.dumps(note)}\n\n" for note in self._progress_notifications(message)
        ]
        chunks = [
            "id: 1\ndata:\n\n",
            ": keep-alive\n\n",
            *(f"id: 2\ndata: {json.dumps(log)}\n\n" for log in logs),
            *progress,
            "id: 3\r\nevent: message\r\n",
            *(f"data: {line}\r\n" for line in payload),
            "\r\n",
        ]
        try:
            for chunk in chunks:
                if chunk in progress and self.progress_delay_s > 0:
                    if await self._wait(request, self.progress_delay_s):
                        return resp
                await resp.write(chunk.encode())
            await resp.write_eof()
        except ConnectionError:
            self.disconnects += 1
        return resp

    def _progress_notifications(self, message: dict[str, Any] | None) -> list[dict[str, Any]]:
        if message is None or message.get("method") != "tools/call":
            return []
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        if token is None:
            return []
        return [
            {
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {
                    "progressToken": token,
                    "progress": step,
                    "total": self.progress_steps,
                    "message": f"step {step}",
                },
            }
            for step in range(1, self.progress_steps + 1)
        ]

    # ------------------------------------------------------------------ JSON-RPC layer

    def _dispatch(self, message: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        msg_id = message.get("id")
        method = message["method"]
        params = message.get("params") or {}
        if not isinstance(params, dict):
            return _rpc_error(msg_id, -32602, "params must be an object")
        if method == "initialize":
            return _rpc_result(msg_id, self._initialize(params, headers))
        if method == "ping":
            return _rpc_result(msg_id, {})
        if method == "tools/list":
            return self._tools_list(msg_id, params)
        if method == "tools/call":
            return self._tools_call(msg_id, params)
        return _rpc_error(msg_id, -32601, f"method not found: {method}")

    def _initialize(self, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        asked = params.get("protocolVersion")
        version = self.server_version or (
            asked if asked in STUB_PROTOCOL_VERSIONS else STUB_PROTOCOL_VERSIONS[0]
        )
        if self.stateful:
            session_id = uuid.uuid4().hex
            self.sessions.add(session_id)
            headers["Mcp-Session-Id"] = session_id
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "stub-upstream", "version": "0.0.0"},
        }

    def _tools_list(self, msg_id: Any, params: dict[str, Any]) -> dict[str, Any]:
        cursor = params.get("cursor")
        start = 0
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor.startswith("offset-"):
                return _rpc_error(msg_id, -32602, "invalid cursor")
            try:
                start = int(cursor.removeprefix("offset-"))
            except ValueError:
                return _rpc_error(msg_id, -32602, "invalid cursor")
        end = start + self.page_size
        result: dict[str, Any] = {"tools": self.tools[start:end]}
        if self.mode == "repeat-cursor":
            result["nextCursor"] = "offset-0"  # a broken server that never advances
        elif end < len(self.tools):
            result["nextCursor"] = f"offset-{end}"
        return _rpc_result(msg_id, result)

    def _tools_call(self, msg_id: Any, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        if not any(tool.get("name") == name for tool in self.tools):
            return _rpc_error(msg_id, -32602, f"Unknown tool: {name}")
        arguments = params.get("arguments") or {}
        text = json.dumps(arguments, sort_keys=True)
        return _rpc_result(msg_id, {"content": [{"type": "text", "text": text}], "isError": False})


def _rpc_result(msg_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def _rpc_error(msg_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


def _rpc_error_response(msg_id: Any, code: int, message: str, *, status: int = 200) -> web.Response:
    return web.json_response(_rpc_error(msg_id, code, message), status=status)
