"""MCP client for upstream servers (Streamable HTTP transport, legacy protocol era).

The control plane uses :func:`fetch_tool_catalog` to read an upstream's tool catalog. The
lower-level pieces (:func:`post_message`, :func:`read_rpc_response`, :class:`SseParser`,
:class:`UpstreamSession`) are kept small and public because the data plane reuses them to proxy
``tools/call``.

None of these functions applies a timeout on its own: callers bound whole operations with
``asyncio.timeout`` so that one deadline covers every round trip. Caller headers are secrets
(``Authorization`` and friends): their values never go into exception messages or logs.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib.metadata
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from settings_api.egress import NOT_ALLOWED_MESSAGE, EgressRefused, refused_header
from settings_api.json_codec import NOT_PARSED, dumps_bytes, fast_loads
from settings_api.json_limits import depth_reason, too_deep
from settings_api.upstream_http import LeanHttpClient, LeanResponse
from settings_api.upstream_url import secret_values

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "LATEST_PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "UNREACHABLE_MESSAGE",
    "UPSTREAM_ERROR_REASONS",
    "MessageHandler",
    "RpcReply",
    "SseEvent",
    "SseParser",
    "UpstreamError",
    "UpstreamSession",
    "fetch_tool_catalog",
    "mcp_headers",
    "post_message",
    "read_body_limited",
    "read_rpc_response",
    "result_of",
]

logger = logging.getLogger(__name__)

# What carries the HTTP exchanges: aiohttp's client (the settings API), or the data plane's
# lean one, which implements the part of aiohttp's interface used here.
HttpClient = aiohttp.ClientSession | LeanHttpClient
HttpResponse = aiohttp.ClientResponse | LeanResponse

LATEST_PROTOCOL_VERSION = "2025-11-25"
# The legacy-era versions this client can speak; tools/list is the same in all of them.
SUPPORTED_PROTOCOL_VERSIONS: tuple[str, ...] = ("2025-11-25", "2025-06-18", "2025-03-26")
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
UPSTREAM_ERROR_REASONS: tuple[str, ...] = (
    "connect",
    "timeout",
    "http-status",
    "invalid-response",
    "jsonrpc-error",
    "too-large",
    "too-many-pages",
    "not-allowed",
)
# What a tenant learns of any failure to connect or to get an HTTP answer: one message for a
# closed port, a reset, a TLS failure or a non-HTTP answer, so that errors cannot map what
# listens where (the gateway's log keeps the detail).
UNREACHABLE_MESSAGE = "the upstream could not be reached or did not answer as an MCP server"

SESSION_ID_HEADER = "Mcp-Session-Id"
PROTOCOL_VERSION_HEADER = "MCP-Protocol-Version"
_ACCEPT = "application/json, text/event-stream"
# Longest piece of upstream-provided text copied into an error message.
_MAX_QUOTED_CHARS = 200
# Session ids must be visible ASCII (MCP transports spec); anything else could smuggle headers.
_SESSION_ID_RE = re.compile(r"[\x21-\x7e]+")
_LINE_END_RE = re.compile(r"\r\n|\r|\n")
_CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f]")

try:
    _CLIENT_VERSION = importlib.metadata.version("mcp-gateway")
except importlib.metadata.PackageNotFoundError:  # running from a source tree without install
    _CLIENT_VERSION = "0.0.0"

MessageHandler = Callable[[dict[str, Any]], Awaitable[None]]
"""Receives server-to-client requests/notifications seen on an SSE stream (e.g. progress)."""


class UpstreamError(Exception):
    """The upstream MCP server could not be read; `reason` is a short stable slug.

    Reasons: see :data:`UPSTREAM_ERROR_REASONS`. ``status`` is the HTTP status for
    ``http-status`` errors (the data plane needs it to spot an expired session, 404).
    """

    def __init__(self, reason: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"UpstreamError({self.reason!r}, {self.message!r})"


# --------------------------------------------------------------------------- SSE


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched server-sent event."""

    event: str
    data: str
    id: str | None = None


class SseParser:
    """Incremental ``text/event-stream`` parser (WHATWG rules) fed with raw bytes.

    Lines may end in CRLF, LF or CR and may be split across chunks at any byte. It keeps only
    the current unterminated line, so memory is bounded by what the caller chooses to feed.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []  # pieces of the current, not yet terminated line
        self._skip_lf = False  # the last chunk ended in CR: a leading LF completes that CRLF
        self._at_start = True
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Consume a chunk of the stream; return the events it completed."""
        return self._consume(self._decoder.decode(chunk))

    def finish(self) -> list[SseEvent]:
        """Flush at end of stream.

        The SSE standard drops an event that was not terminated by a blank line; we dispatch it
        anyway because some servers close the stream right after the last ``data:`` line.
        """
        events = self._consume(self._decoder.decode(b"", final=True))
        if self._parts:
            line = "".join(self._parts)
            self._parts.clear()
            events.extend(self._line(line))
        events.extend(self._dispatch())
        return events

    def _consume(self, text: str) -> list[SseEvent]:
        if not text:
            return []
        if self._at_start:
            self._at_start = False
            text = text.removeprefix("\ufeff")
        pos = 0
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                pos = 1
        events: list[SseEvent] = []
        for match in _LINE_END_RE.finditer(text, pos):
            self._parts.append(text[pos : match.start()])
            line = "".join(self._parts)
            self._parts.clear()
            events.extend(self._line(line))
            pos = match.end()
            if match.group() == "\r" and pos == len(text):
                self._skip_lf = True
        if pos < len(text):
            self._parts.append(text[pos:])
        return events

    def _line(self, line: str) -> list[SseEvent]:
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # comment / keep-alive
            return []
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\x00" not in value:
            self._last_id = value
        # "retry" and unknown fields are irrelevant to a request/response exchange.
        return []

    def _dispatch(self) -> list[SseEvent]:
        if not self._data:
            self._event = ""
            return []
        event = SseEvent(
            event=self._event or "message", data="\n".join(self._data), id=self._last_id
        )
        self._data = []
        self._event = ""
        return [event]


# --------------------------------------------------------------------------- one exchange


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
    """Request headers for an MCP POST: the caller's headers, then the transport's own.

    The transport headers are set last (case-insensitively) so a caller's header set cannot
    break the protocol by overriding Accept, Content-Type or the session id; framing and
    hop-by-hop names (Host, Content-Length, ...: :func:`settings_api.egress.refused_header`)
    are dropped, on the catalog read and the call path alike.
    """
    headers: CIMultiDict[str] = CIMultiDict(
        (name, value) for name, value in extra.items() if not refused_header(name))
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


async def read_body_limited(response: HttpResponse, max_body_bytes: int) -> bytes:
    """Read the whole body, failing with ``too-large`` as soon as it exceeds the limit."""
    if response.content_length is not None and response.content_length > max_body_bytes:
        raise _too_large(max_body_bytes)
    if type(response) is LeanResponse:  # all there already: no async iteration
        whole = response.content.arrived()
        if whole is not None:
            if len(whole) > max_body_bytes:
                raise _too_large(max_body_bytes)
            return whole
    body = bytearray()
    # iter_any() yields what has arrived; aiohttp's flow control keeps its own buffer small.
    async for chunk in response.content.iter_any():
        if len(body) + len(chunk) > max_body_bytes:
            raise _too_large(max_body_bytes)
        body += chunk
    return bytes(body)


async def read_rpc_response(
    response: HttpResponse,
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
        message = _parse_json(await read_body_limited(response, max_body_bytes))
        if not _is_response_to(message, request_id):
            raise UpstreamError("invalid-response", "upstream answer is not a JSON-RPC response")
        return message
    if content_type == "text/event-stream":
        return await _read_sse_response(response, request_id, max_body_bytes, on_message)
    raise UpstreamError(
        "invalid-response", f"upstream answered with unexpected content type {_quote(content_type)}"
    )


async def _read_sse_response(
    response: HttpResponse,
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
            raise _too_large(max_body_bytes)
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
    message = _parse_json(event.data.encode())
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
    url: str,
    message: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    on_message: MessageHandler | None = None,
) -> RpcReply:
    """POST one JSON-RPC message and, for a request, read its response (JSON or SSE).

    ``headers`` are sent as given (build them with :func:`mcp_headers`). Non-2xx answers raise
    ``http-status``; connection failures raise ``connect``. Timeouts are the caller's job.
    """
    body = dumps_bytes(message)
    method = message.get("method")
    is_request = isinstance(method, str) and "id" in message
    try:
        # No redirects: following one could hand the caller's credentials to another origin.
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            if not 200 <= resp.status < 300:
                what = _quote(method) if isinstance(method, str) else "message"
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
        raise _connect_error(exc) from None


def result_of(response: Mapping[str, Any]) -> dict[str, Any]:
    """The ``result`` object of a JSON-RPC response; raise ``jsonrpc-error`` for an error."""
    if "error" in response:
        error = response["error"]
        code = error.get("code") if isinstance(error, dict) else None
        text = error.get("message") if isinstance(error, dict) else None
        code_part = str(code) if isinstance(code, int) and not isinstance(code, bool) else "?"
        text_part = _quote(text) if isinstance(text, str) else "(no message)"
        raise UpstreamError("jsonrpc-error", f"upstream JSON-RPC error {code_part}: {text_part}")
    result = response.get("result")
    if not isinstance(result, dict):
        raise UpstreamError("invalid-response", "upstream JSON-RPC result is not an object")
    return result


# --------------------------------------------------------------------------- session


class UpstreamSession:
    """One MCP session with an upstream over Streamable HTTP (legacy era, 2025-xx).

    Tracks the session id and negotiated version so every request after ``initialize`` carries
    them. Not safe for concurrent requests that race ``initialize``; one session per task.
    """

    def __init__(
        self,
        http: HttpClient,
        url: str,
        headers: Mapping[str, str],
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._http = http
        self.url = url
        self._headers = dict(headers)
        self.max_body_bytes = max_body_bytes
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self.initialize_result: dict[str, Any] | None = None
        self._next_id = 0
        self._sent_headers: tuple[tuple[str | None, str | None], CIMultiDict[str]] | None = None

    def headers(self) -> CIMultiDict[str]:
        """Headers for the next POST (caller headers plus session id and version); the same
        object while those stay the same (nothing changes it: it is only sent)."""
        state = (self.session_id, self.protocol_version)
        if self._sent_headers is None or self._sent_headers[0] != state:
            self._sent_headers = (state, mcp_headers(
                self._headers, session_id=self.session_id, protocol_version=self.protocol_version
            ))
        return self._sent_headers[1]

    def new_id(self) -> int:
        """A fresh JSON-RPC request id, unique within this session."""
        self._next_id += 1
        return self._next_id

    async def send(
        self, message: Mapping[str, Any], *, on_message: MessageHandler | None = None
    ) -> RpcReply:
        """POST a prepared JSON-RPC message with this session's headers."""
        return await post_message(
            self._http,
            self.url,
            message,
            self.headers(),
            max_body_bytes=self.max_body_bytes,
            on_message=on_message,
        )

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_message: MessageHandler | None = None,
    ) -> dict[str, Any]:
        """Send a request and return its ``result`` (``jsonrpc-error`` on an error response)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.new_id(), "method": method}
        if params is not None:
            message["params"] = dict(params)
        reply = await self.send(message, on_message=on_message)
        if reply.message is None:  # pragma: no cover - post_message always reads requests
            raise UpstreamError("invalid-response", "upstream sent no response")
        return result_of(reply.message)

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification (the server answers 202 with no body)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self.send(message)

    async def initialize(self) -> dict[str, Any]:
        """Run the initialize handshake; return the server's InitializeResult."""
        self.session_id = None
        self.protocol_version = None
        message = {
            "jsonrpc": "2.0",
            "id": self.new_id(),
            "method": "initialize",
            "params": {
                "protocolVersion": LATEST_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "mcp-gateway", "version": _CLIENT_VERSION},
            },
        }
        reply = await self.send(message)
        if reply.message is None:  # pragma: no cover - post_message always reads requests
            raise UpstreamError("invalid-response", "upstream sent no initialize response")
        result = result_of(reply.message)
        version = result.get("protocolVersion")
        if not isinstance(version, str):
            raise UpstreamError("invalid-response", "upstream initialize result lacks a version")
        if version not in SUPPORTED_PROTOCOL_VERSIONS:
            raise UpstreamError(
                "invalid-response", f"upstream chose unsupported protocol version {_quote(version)}"
            )
        session_id = reply.headers.get(SESSION_ID_HEADER)
        if session_id is not None and not _SESSION_ID_RE.fullmatch(session_id):
            raise UpstreamError("invalid-response", "upstream sent a malformed Mcp-Session-Id")
        self.session_id = session_id
        self.protocol_version = version
        self.initialize_result = result
        await self.notify("notifications/initialized")
        return result

    async def list_tools(self, *, max_pages: int = 100) -> list[dict[str, Any]]:
        """Every tool of the upstream, following ``nextCursor``, in the upstream's order."""
        tools: list[dict[str, Any]] = []
        names: set[str] = set()
        seen_cursors: set[str] = set()
        cursor: str | None = None
        for _ in range(max_pages):
            result = await self.request(
                "tools/list", {"cursor": cursor} if cursor is not None else None
            )
            page = result.get("tools")
            if not isinstance(page, list):
                raise UpstreamError("invalid-response", "upstream tools/list result lacks tools")
            for tool in page:
                name = tool.get("name") if isinstance(tool, dict) else None
                if not isinstance(name, str) or not name:
                    raise UpstreamError("invalid-response", "upstream tool without a string name")
                if name in names:
                    raise UpstreamError(
                        "invalid-response", f"upstream lists tool {_quote(name)} twice"
                    )
                names.add(name)
                tools.append(tool)
            next_cursor = result.get("nextCursor")
            # "" is treated as "no more pages": some servers serialise an absent cursor so.
            if next_cursor is None or next_cursor == "":
                return tools
            if not isinstance(next_cursor, str):
                raise UpstreamError("invalid-response", "upstream nextCursor is not a string")
            if next_cursor in seen_cursors:
                # A cursor seen before would make us loop until max_pages for nothing.
                raise UpstreamError("invalid-response", "upstream repeated a tools/list cursor")
            seen_cursors.add(next_cursor)
            cursor = next_cursor
        raise UpstreamError(
            "too-many-pages", f"upstream tools/list has more than {max_pages} pages"
        )

    async def terminate(self) -> None:
        """End the session with DELETE, best effort (servers may answer 405, or be gone)."""
        if self.session_id is None:
            return
        headers = self.headers()
        self.session_id = None
        try:
            async with self._http.delete(self.url, headers=headers, allow_redirects=False):
                pass  # any status is fine: the server may not support explicit termination
        except (aiohttp.ClientError, OSError) as exc:
            logger.debug("upstream session termination failed: %s", type(exc).__name__)


# --------------------------------------------------------------------------- catalog


async def fetch_tool_catalog(
    session: HttpClient,
    url: str,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_pages: int = 100,
) -> list[dict[str, Any]]:
    """Initialize an MCP session with `url`, list every tool (following nextCursor) and close
    the session.

    The whole operation, DELETE included, is bounded by ``timeout_s``. Every failure is an
    :class:`UpstreamError`; tools are returned as the upstream sent them, in its order.
    """
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    if max_pages < 1:
        raise ValueError("max_pages must be at least 1")
    upstream = UpstreamSession(session, url, headers, max_body_bytes=max_body_bytes)
    deadline = asyncio.get_running_loop().time() + timeout_s
    tools: list[dict[str, Any]] = []
    failure: Exception | None = None
    try:
        async with asyncio.timeout_at(deadline):
            await upstream.initialize()
            tools = await upstream.list_tools(max_pages=max_pages)
    except (TimeoutError, UpstreamError, aiohttp.ClientError, OSError) as exc:
        failure = exc
    # Free the upstream session on success and failure alike, but never past the deadline.
    # (A cancelled caller skips this: cancellation must not wait on the network.)
    if upstream.session_id is not None and asyncio.get_running_loop().time() < deadline:
        try:
            async with asyncio.timeout_at(deadline):
                await upstream.terminate()
        except TimeoutError:
            logger.debug("upstream session termination skipped: deadline reached")
    if failure is not None:
        secrets = [*headers.values(), *secret_values(url)]
        raise _redacted(_as_upstream_error(failure, timeout_s), secrets) from failure
    return tools


# --------------------------------------------------------------------------- helpers


def _as_upstream_error(exc: Exception, timeout_s: float) -> UpstreamError:
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, TimeoutError):
        return UpstreamError("timeout", f"upstream did not answer within {timeout_s:g} s")
    return _connect_error(exc)


def _connect_error(exc: BaseException) -> UpstreamError:
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(cause, EgressRefused):
        logger.info("upstream address refused by the egress policy: %s", cause.reason)
        return UpstreamError("not-allowed", NOT_ALLOWED_MESSAGE)
    # Only exception types (and OS error text) go to the log: aiohttp messages can embed the
    # URL, which may carry credentials of its own.
    detail = type(exc).__name__
    if cause is not exc:
        detail = f"{detail} ({type(cause).__name__})"
    if isinstance(cause, OSError) and cause.strerror:
        detail = f"{detail}: {cause.strerror}"
    logger.info("upstream unreachable: %s", detail)
    return UpstreamError("connect", UNREACHABLE_MESSAGE)


def _too_large(max_body_bytes: int) -> UpstreamError:
    return UpstreamError("too-large", f"upstream answer exceeds {max_body_bytes} bytes")


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON; accepting them would poison catalogs we re-serialise later.
    raise ValueError(f"invalid JSON constant {name}")


def _parse_json(raw: bytes) -> Any:
    """One upstream message (a whole body, or one SSE event's data), parsed and bounded in
    depth like client bodies: whatever reads, re-encodes or validates it later recurses."""
    value = fast_loads(raw)
    if value is NOT_PARSED:
        try:
            value = json.loads(raw, parse_constant=_reject_constant)
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


def _quote(text: str) -> str:
    """Upstream-provided text made safe for a one-line message: clipped, no control chars."""
    clean = _CONTROL_CHARS_RE.sub(" ", text)
    if len(clean) > _MAX_QUOTED_CHARS:
        clean = clean[:_MAX_QUOTED_CHARS] + "…"
    return repr(clean)


def _redacted(error: UpstreamError, secrets: Iterable[str]) -> UpstreamError:
    """Strip caller header values an upstream may have echoed (e.g. in an error message)."""
    message = error.message
    for value in secrets:
        # The whole value, and its long parts ("Bearer <token>" -> the token alone).
        for piece in [value, *(p for p in value.split() if len(p) >= 8)]:
            if len(piece) >= 4 and piece in message:
                message = message.replace(piece, "[redacted]")
    if message == error.message:
        return error
    return UpstreamError(error.reason, message, status=error.status)
