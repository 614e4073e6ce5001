"""One JSON-RPC exchange with an upstream MCP server over Streamable HTTP: the request's
headers (the tenant-header policy), the POST, and the answer read as JSON or as an SSE
stream, bounded in size and nesting.

None of these functions applies a timeout of its own: callers bound whole operations with
``asyncio.timeout``, so that one deadline covers every round trip.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from mcp_core.client.errors import UpstreamError, connect_error, quote, too_large
from mcp_core.client.http_client import HttpClient
from mcp_core.headers import PROTOCOL_VERSION_HEADER, SESSION_ID_HEADER, refused_header
from mcp_core.json_codec import NOT_PARSED, dumps_bytes, fast_loads, strict_loads
from mcp_core.json_limits import depth_reason, too_deep
from mcp_core.sse import SSE_CONTENT_TYPE, SseEvent, SseParser

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MessageHandler",
    "RpcReply",
    "mcp_headers",
    "post_message",
    "read_body_limited",
    "read_rpc_response",
    "result_of",
]

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
_ACCEPT = f"application/json, {SSE_CONTENT_TYPE}"
# What aiohttp refuses to send in a header (every control character but tab): refused here
# before any connection is made, with an error that says so.
_FORBIDDEN_HEADER_CHARS_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

MessageHandler = Callable[[dict[str, Any]], Awaitable[None]]
"""Receives server-to-client requests/notifications seen on an SSE stream (e.g. progress)."""


# Not frozen: one is made per upstream call, and a frozen dataclass's __init__ sets each field
# through object.__setattr__. Nothing changes one after it is made.
@dataclass(slots=True)
class RpcReply:
    """What one POST produced: the HTTP status and headers, and the JSON-RPC response if any."""

    status: int
    headers: CIMultiDictProxy[str]
    message: dict[str, Any] | None  # None for notifications/responses sent to the server


def mcp_headers(
    extra: Mapping[str, str],
    *,
    session_id: str | None = None,
    protocol_version: str | None = None,
) -> CIMultiDict[str]:
    """Request headers for an MCP request: the tenant's headers, then the transport's own.

    This is the tenant-header policy of every upstream request: framing and hop-by-hop names
    (Host, Content-Length, ...: :func:`mcp_core.headers.refused_header`) are dropped, a name
    or value holding a control character is refused (``not-allowed``: it could inject a header),
    and the transport headers are set last (case-insensitively) so that a tenant's header set
    cannot break the protocol by overriding Accept, Content-Type or the session id.
    """
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in extra.items():
        if refused_header(name):
            continue
        if _FORBIDDEN_HEADER_CHARS_RE.search(name) or _FORBIDDEN_HEADER_CHARS_RE.search(value):
            # The name may be shown (names are not secrets); the value never is.
            raise UpstreamError(
                "not-allowed",
                f"upstream header {quote(name)} holds a control character: not sent",
            )
        headers.add(name, value)
    headers["Accept"] = _ACCEPT
    headers["Content-Type"] = "application/json"
    if protocol_version is not None:
        headers[PROTOCOL_VERSION_HEADER] = protocol_version
    else:
        headers.popall(PROTOCOL_VERSION_HEADER, None)
    if session_id is not None:
        headers[SESSION_ID_HEADER] = session_id
    else:
        headers.popall(SESSION_ID_HEADER, None)
    return headers


async def read_body_limited(response: aiohttp.ClientResponse, max_body_bytes: int) -> bytes:
    """Read the whole body, failing with ``too-large`` as soon as it exceeds the limit (counted
    after decompression: a small compressed body can stand for a huge one)."""
    if response.content_length is not None and response.content_length > max_body_bytes:
        raise too_large(max_body_bytes)
    body = bytearray()
    # iter_any() yields what has arrived; aiohttp's flow control keeps its buffer small.
    async for chunk in response.content.iter_any():
        if len(body) + len(chunk) > max_body_bytes:
            raise too_large(max_body_bytes)
        body += chunk
    return bytes(body)


async def read_rpc_response(
    response: aiohttp.ClientResponse,
    request_id: int | str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    on_message: MessageHandler | None = None,
) -> dict[str, Any]:
    """Return the JSON-RPC response to ``request_id`` from a JSON or SSE HTTP answer.

    On SSE, server requests/notifications that precede the response go to ``on_message`` (or
    are dropped) and reading stops at the response. Errors are ``UpstreamError``s.
    """
    content_type = response.content_type.lower()
    if content_type == "application/json":
        message = parse_json(await read_body_limited(response, max_body_bytes))
        if not _is_response_to(message, request_id):
            raise UpstreamError("invalid-response", "upstream answer is not a JSON-RPC response")
        return message
    if content_type == SSE_CONTENT_TYPE:
        return await _read_sse_response(response, request_id, max_body_bytes, on_message)
    raise UpstreamError(
        "invalid-response", f"upstream answered with unexpected content type {quote(content_type)}"
    )


async def _read_sse_response(
    response: aiohttp.ClientResponse,
    request_id: int | str,
    max_body_bytes: int,
    on_message: MessageHandler | None,
) -> dict[str, Any]:
    parser = SseParser()
    received = 0
    async for chunk in response.content.iter_any():
        received += len(chunk)
        # Counted over the whole stream: a server trickling notifications forever is bounded
        # here by size and by the caller's deadline in time.
        if received > max_body_bytes:
            raise too_large(max_body_bytes)
        for event in parser.feed(chunk):
            found = await _handle_sse_event(event, request_id, on_message)
            if found is not None:
                return found
    for event in parser.finish():
        found = await _handle_sse_event(event, request_id, on_message)
        if found is not None:
            return found
    raise UpstreamError("invalid-response", "upstream SSE stream ended without a response")


async def _handle_sse_event(
    event: SseEvent, request_id: int | str, on_message: MessageHandler | None
) -> dict[str, Any] | None:
    # MCP messages use the default event type; empty data is the spec's "priming" event.
    if event.event != "message" or not event.data.strip():
        return None
    message = parse_json(event.data.encode())
    if _is_response_to(message, request_id):
        return message
    if isinstance(message, dict) and isinstance(message.get("method"), str):
        if on_message is not None:
            await on_message(message)
        return None
    if isinstance(message, dict) and ("result" in message or "error" in message):
        return None  # a response to some other request: not ours to interpret
    raise UpstreamError("invalid-response", "upstream SSE event is not a JSON-RPC message")


async def post_message(
    session: HttpClient,
    url: str | URL,
    message: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    on_message: MessageHandler | None = None,
    error_bodies: bool = False,
) -> RpcReply:
    """POST one JSON-RPC message and, for a request, read its response (JSON or SSE).

    ``headers`` are sent as given (build them with :func:`mcp_headers`). Non-2xx answers raise
    ``http-status``, except, with ``error_bodies`` (the 2026-07-28 transport, which answers
    JSON-RPC errors with 4xx statuses), a 4xx whose body is a JSON-RPC error response to the
    request: that is the reply. Connection failures raise ``connect``. Timeouts are the
    caller's job.
    """
    body = dumps_bytes(message)
    method = message.get("method")
    is_request = isinstance(method, str) and "id" in message
    try:
        # No redirects: following one could hand the caller's credentials to another origin.
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            if error_bodies and is_request and 400 <= resp.status < 500:
                error = await _error_body(resp, message["id"], max_body_bytes)
                if error is not None:
                    return RpcReply(resp.status, resp.headers, error)
            if not 200 <= resp.status < 300:
                what = quote(method) if isinstance(method, str) else "message"
                raise UpstreamError(
                    "http-status",
                    f"upstream answered HTTP {resp.status} to {what}",
                    status=resp.status,
                )
            if not is_request:
                # Notifications get 202 and no body; whatever came is ignored.
                return RpcReply(resp.status, resp.headers, None)
            reply = await read_rpc_response(
                resp, message["id"], max_body_bytes=max_body_bytes, on_message=on_message
            )
            return RpcReply(resp.status, resp.headers, reply)
    except TimeoutError:
        raise  # aiohttp's own timeouts subclass OSError; they are timeouts, not "connect"
    except (aiohttp.ClientError, OSError) as exc:
        # Not chained as the cause: callers must not turn the detail into a tenant's message.
        raise connect_error(exc) from None


async def _error_body(
    response: aiohttp.ClientResponse, request_id: int | str, max_body_bytes: int
) -> dict[str, Any] | None:
    """The JSON-RPC error response a 4xx answer carries, or None (no JSON body, or not an
    error response to the request: the status alone then speaks)."""
    if response.content_type.lower() != "application/json":
        return None
    try:
        message = await read_rpc_response(response, request_id, max_body_bytes=max_body_bytes)
    except UpstreamError:
        return None
    return message if "error" in message else None


def result_of(response: Mapping[str, Any]) -> dict[str, Any]:
    """The ``result`` object of a JSON-RPC response; raise ``jsonrpc-error`` for an error."""
    if "error" in response:
        error = response["error"]
        code = error.get("code") if isinstance(error, dict) else None
        text = error.get("message") if isinstance(error, dict) else None
        code_part = str(code) if isinstance(code, int) and not isinstance(code, bool) else "?"
        text_part = quote(text) if isinstance(text, str) else "(no message)"
        raise UpstreamError("jsonrpc-error", f"upstream JSON-RPC error {code_part}: {text_part}")
    result = response.get("result")
    if not isinstance(result, dict):
        raise UpstreamError("invalid-response", "upstream JSON-RPC result is not an object")
    return result


def parse_json(raw: bytes) -> Any:
    """One upstream message (a whole body, or one SSE event's data), parsed and bounded in
    depth like client bodies: whatever reads, re-encodes or validates it later recurses."""
    value = fast_loads(raw)
    if value is NOT_PARSED:
        try:
            value = strict_loads(raw)
        except RecursionError:
            raise _too_deep() from None
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise UpstreamError("invalid-response", "upstream answer is not valid JSON") from None
    if too_deep(value, raw=raw):
        raise _too_deep()
    return value


def _too_deep() -> UpstreamError:
    return UpstreamError("invalid-response", depth_reason(what="upstream answer"))


def _same_id(a: object, b: object) -> bool:
    # type check: in Python True == 1, but a JSON true is not the request id 1.
    return type(a) is type(b) and a == b


def _is_response_to(message: Any, request_id: int | str) -> bool:
    if not isinstance(message, dict) or "method" in message:
        return False
    msg_id = message.get("id")
    if "result" in message:
        return _same_id(msg_id, request_id)
    if "error" in message:
        # id null: the server could not read our id (parse error); still our answer.
        return msg_id is None or _same_id(msg_id, request_id)
    return False
