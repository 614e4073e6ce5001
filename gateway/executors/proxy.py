"""callUrl executor: `tools/call` proxied to the bound config's upstream MCP server.

The gateway is an MCP client of the upstream (legacy era, Streamable HTTP), built on
:mod:`settings_api.upstream`. :class:`UpstreamPool` keeps one initialized upstream session per
replica and (config id, upstream URL, header set), shared by every concurrent call:

- the first calls share one ``initialize`` (+ ``notifications/initialized``): 50 concurrent
  first calls cause exactly one handshake, and a failed handshake fails every call that waited
  for it (the next call tries again);
- an upstream answering HTTP 404 for the session (expired, or the server restarted) gets one new
  handshake (shared as well) and the call is retried once;
- :meth:`UpstreamPool.invalidate` drops a config's sessions when the config changes, and
  :meth:`UpstreamPool.close` ends every live session with ``DELETE`` (best effort, bounded).

:class:`ProxyExecutor` bounds each call by ``timeout_s`` (handshake and retry included) and
each integration's calls in flight by ``max_inflight`` (refused at once past it), caps relayed
bodies (their size, and their nesting through :mod:`settings_api.upstream`), forwards upstream
progress/log notifications to the client when it can receive them, and maps every failure to a
:class:`~gateway.transport.errors.McpError`. Upstream header values are secrets: they never appear
in errors or logs (and are scrubbed from upstream text we relay).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import hashlib
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import aiohttp

from gateway.context import Notify, RequestContext
from gateway.deadline import Deadline, RunningLoop
from gateway.observability import metrics
from gateway.transport.errors import INTERNAL_ERROR, McpError
from settings_api.bulkhead import DEFAULT_MAX_INFLIGHT, Bulkhead
from settings_api.upstream import HttpClient, MessageHandler, UpstreamError, UpstreamSession
from settings_api.upstream_url import secret_values

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT_S",
    "DEFAULT_MAX_INFLIGHT",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_RELAY_MAX_BODY_BYTES",
    "DEFAULT_UPSTREAM_TIMEOUT_S",
    "FORWARDED_NOTIFICATIONS",
    "INTERNAL_ERROR",
    "ProxyExecutor",
    "UpstreamPool",
]

logger = logging.getLogger(__name__)

DEFAULT_UPSTREAM_TIMEOUT_S = 30.0
DEFAULT_RELAY_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_CLOSE_TIMEOUT_S = 2.0
DEFAULT_MAX_SESSIONS = 1024
# Server notifications relayed to the client (when it accepted SSE); others are dropped.
FORWARDED_NOTIFICATIONS = frozenset({"notifications/progress", "notifications/message"})
# `_meta` keys under this prefix describe the client <-> gateway exchange (modern era:
# protocol version, client info, ...), not the gateway <-> upstream one: not passed on.
_GATEWAY_META_PREFIX = "io.modelcontextprotocol/"

PoolKey = tuple[str | None, str, str]


# --------------------------------------------------------------------------- pool


class _Entry:
    """One pooled upstream: its live session, the handshake in flight, and who is using it."""

    __slots__ = ("dropped", "headers", "inflight", "init_task", "key", "session", "url")

    def __init__(self, key: PoolKey, url: str, headers: Mapping[str, str]) -> None:
        self.key = key
        self.url = url
        self.headers = dict(headers)
        self.session: UpstreamSession | None = None  # initialized and believed live
        self.init_task: asyncio.Task[UpstreamSession] | None = None
        self.inflight = 0
        self.dropped = False  # out of the pool: end the session once the last call is done


class UpstreamPool:
    """Initialized upstream MCP sessions, one per (config id, upstream URL, headers).

    ``http`` is the app's shared client session (connections are reused; never one per call).
    ``timeout_s`` bounds a shared handshake (callers bound their own wait separately),
    ``max_body_bytes`` caps every upstream answer (SSE streams counted whole), ``close_timeout_s``
    bounds the best-effort ``DELETE`` of sessions, and ``max_sessions`` caps the pool (least
    recently used entries are dropped first).
    """

    def __init__(
        self,
        http: HttpClient,
        *,
        timeout_s: float = DEFAULT_UPSTREAM_TIMEOUT_S,
        max_body_bytes: int = DEFAULT_RELAY_MAX_BODY_BYTES,
        close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        if timeout_s <= 0 or close_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if max_body_bytes < 1 or max_sessions < 1:
            raise ValueError("max_body_bytes and max_sessions must be at least 1")
        self._http = http
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.close_timeout_s = close_timeout_s
        self.max_sessions = max_sessions
        self._entries: collections.OrderedDict[PoolKey, _Entry] = collections.OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def closed(self) -> bool:
        return self._closed

    async def request(
        self,
        config_id: str | None,
        url: str,
        headers: Mapping[str, str],
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_message: MessageHandler | None = None,
    ) -> dict[str, Any]:
        """Send one JSON-RPC request on the pooled session; return the upstream's JSON-RPC
        response (a ``result`` or an ``error``, as sent).

        Initializes the session if needed, and once more (with one retry of the request) when
        the upstream answers 404 for it. Failures are :class:`UpstreamError` (a handshake past
        the pool's ``timeout_s`` is ``timeout``). No deadline of its own otherwise: the caller
        bounds the whole operation.
        """
        if self._closed:
            raise UpstreamError("connect", "the gateway is shutting down")
        entry = self._acquire(config_id, url, headers)
        try:
            session = await self._ready(entry)
            try:
                return await self._send(session, method, params, on_message)
            except UpstreamError as exc:
                if exc.reason != "http-status" or exc.status != 404:
                    raise
            # The upstream no longer knows the session (expired, or the server restarted):
            # one new handshake, shared with the calls that saw the same 404, and one retry.
            logger.info("upstream session expired (config %s); re-initializing", config_id)
            session = await self._ready(entry, stale=session)
            return await self._send(session, method, params, on_message)
        finally:
            self._release(entry)

    def invalidate(self, config_id: str | None) -> int:
        """Drop the sessions of ``config_id`` (its config changed); return how many.

        Calls in flight finish on the old session, which is then ended in the background.
        """
        keys = [key for key in self._entries if key[0] == config_id]
        for key in keys:
            self._drop(self._entries.pop(key))
        return len(keys)

    async def close(self) -> None:
        """End every live upstream session with DELETE, best effort, within
        ``close_timeout_s``; later requests fail as ``connect``."""
        self._closed = True
        entries = list(self._entries.values())
        self._entries.clear()
        handshakes: set[asyncio.Task[Any]] = set()
        for entry in entries:
            entry.dropped = True
            if entry.init_task is not None and not entry.init_task.done():
                entry.init_task.cancel()
                handshakes.add(entry.init_task)
            self._end_session(entry)
        pending: set[asyncio.Task[Any]] = handshakes | self._background
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=self.close_timeout_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    # ------------------------------------------------------------------ internals

    def _acquire(self, config_id: str | None, url: str, headers: Mapping[str, str]) -> _Entry:
        key = (config_id, url, _fingerprint(headers))
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(key, url, headers)
            self._entries[key] = entry
            while len(self._entries) > self.max_sessions:
                _, oldest = self._entries.popitem(last=False)
                self._drop(oldest)
        else:
            self._entries.move_to_end(key)
        entry.inflight += 1
        return entry

    def _release(self, entry: _Entry) -> None:
        entry.inflight -= 1
        if entry.dropped and entry.inflight == 0:
            self._end_session(entry)

    def _drop(self, entry: _Entry) -> None:
        entry.dropped = True
        if entry.inflight == 0:
            if entry.init_task is not None and not entry.init_task.done():
                entry.init_task.cancel()  # nobody waits for it any more
            self._end_session(entry)

    async def _ready(
        self, entry: _Entry, *, stale: UpstreamSession | None = None
    ) -> UpstreamSession:
        """The entry's initialized session; starts (or joins) the handshake when there is none
        or when it is ``stale``."""
        if stale is not None and entry.session is stale:
            entry.session = None
        if entry.session is not None:
            return entry.session
        task = entry.init_task
        if task is None or task.done():
            task = asyncio.create_task(self._initialize(entry), name="mcpgw-upstream-initialize")
            task.add_done_callback(_retrieve_exception)
            entry.init_task = task
        # Shielded: a caller that gives up (its deadline, a client gone) must not cancel the
        # handshake other calls are waiting for. The task has its own bound.
        return await asyncio.shield(task)

    async def _initialize(self, entry: _Entry) -> UpstreamSession:
        session = UpstreamSession(
            self._http, entry.url, entry.headers, max_body_bytes=self.max_body_bytes
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                await session.initialize()
        except BaseException as exc:
            if session.session_id is not None and not self._closed:
                self._terminate_later(session)  # e.g. notifications/initialized failed
            if isinstance(exc, TimeoutError):  # callers' own deadlines never reach this task
                raise UpstreamError(
                    "timeout", f"upstream did not answer within {self.timeout_s:g} s"
                ) from None
            raise
        entry.session = session
        if entry.dropped and entry.inflight == 0:
            self._end_session(entry)
        return session

    async def _send(
        self,
        session: UpstreamSession,
        method: str,
        params: Mapping[str, Any] | None,
        on_message: MessageHandler | None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": session.new_id(), "method": method}
        if params is not None:
            message["params"] = dict(params)

        async def handle(incoming: dict[str, Any]) -> None:
            if "id" in incoming:
                await _answer_server_request(session, incoming)
            elif on_message is not None:
                await on_message(incoming)

        reply = await session.send(message, on_message=handle)
        if reply.message is None:  # pragma: no cover - post_message always reads requests
            raise UpstreamError("invalid-response", "upstream sent no response")
        return reply.message

    def _end_session(self, entry: _Entry) -> None:
        session, entry.session = entry.session, None
        if session is not None:
            self._terminate_later(session)

    def _terminate_later(self, session: UpstreamSession) -> None:
        if session.session_id is None:
            return  # a stateless upstream: nothing to end
        task = asyncio.create_task(self._terminate(session), name="mcpgw-upstream-delete")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _terminate(self, session: UpstreamSession) -> None:
        try:
            async with asyncio.timeout(self.close_timeout_s):
                await session.terminate()
        except TimeoutError:
            logger.debug("upstream session DELETE timed out")
        except Exception as exc:  # best effort: e.g. the HTTP client is already closed
            logger.debug("upstream session DELETE failed: %s", type(exc).__name__)


_FINGERPRINTS: dict[int, tuple[Mapping[str, str], str]] = {}
_FINGERPRINTS_MAX = 1024


def _fingerprint(headers: Mapping[str, str]) -> str:
    """A digest of the header set, so a config whose headers change never reuses a session
    opened with the old ones (values are never stored in the key). Remembered per mapping
    object: a view's headers are never changed in place."""
    held = _FINGERPRINTS.get(id(headers))
    if held is not None and held[0] is headers:
        return held[1]
    if len(_FINGERPRINTS) >= _FINGERPRINTS_MAX:
        _FINGERPRINTS.clear()
    _FINGERPRINTS[id(headers)] = (headers, fingerprint := _digest(headers))
    return fingerprint


def _digest(headers: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name, value in sorted((k.lower(), v) for k, v in headers.items()):
        digest.update(name.encode() + b"\x00" + value.encode() + b"\x00")
    return digest.hexdigest()


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    # Every waiter may have given up; mark the outcome as seen so asyncio does not log it.
    if not task.cancelled():
        task.exception()


async def _answer_server_request(session: UpstreamSession, request: dict[str, Any]) -> None:
    """Answer a server-to-client request seen on the stream: ``ping`` is answered, anything
    else (sampling, elicitation, roots: capabilities the gateway never declares) is refused,
    so the upstream does not wait for an answer that would never come."""
    reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
    if request.get("method") == "ping":
        reply["result"] = {}
    else:
        reply["error"] = {"code": -32601, "message": "Method not supported by the gateway"}
    try:
        await session.send(reply)
    except UpstreamError as exc:
        logger.debug("could not answer an upstream request: %s", exc.reason)


# --------------------------------------------------------------------------- executor


class ProxyExecutor:
    """The callUrl :class:`~gateway.context.ToolExecutor`: the call goes to the upstream.

    ``timeout_s`` (MCPGW_UPSTREAM_TIMEOUT_S; default: the pool's) bounds each call as a whole,
    handshake, notifications and retry included. ``max_inflight``
    (MCPGW_UPSTREAM_MAX_INFLIGHT) bounds the calls in flight per integration: the bulkhead sits
    in front of the shared pool and HTTP client, and a call past it is refused at once, so a
    tenant whose upstream is slow holds up no one but itself.
    """

    def __init__(self, pool: UpstreamPool, *, timeout_s: float | None = None,
                 max_inflight: int = DEFAULT_MAX_INFLIGHT) -> None:
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.pool = pool
        self.timeout_s = pool.timeout_s if timeout_s is None else timeout_s
        self.bulkhead = Bulkhead(max_inflight)
        self._loop = RunningLoop()

    async def call_tool(
        self,
        ctx: RequestContext,
        tool: Mapping[str, Any],
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        view = ctx.integration
        if not view.upstream_url:
            metrics.upstream_failed("none")
            raise McpError(
                INTERNAL_ERROR, "This integration has no upstream configured", {"upstream": "none"}
            )
        if view.secrets_error is not None:
            # Never call the upstream without the headers it expects (e.g. its credentials).
            raise self._failure(
                ctx,
                tool,
                f"Upstream headers unavailable: {view.secrets_error}",
                {"upstream": "secrets-unreadable"},
            )
        params: dict[str, Any] = {"name": tool["name"], "arguments": arguments}
        upstream_meta = _upstream_meta(meta)
        if upstream_meta:
            params["_meta"] = upstream_meta
        on_message = _Forwarder(ctx.notify) if ctx.notify is not None else None
        slot = (view.tenant_id, view.integration_id)
        if not self.bulkhead.try_enter(slot):
            limit = self.bulkhead.limit
            raise self._failure(
                ctx,
                tool,
                f"Upstream MCP server busy: this integration already has {limit} calls in "
                "flight, its limit (MCPGW_UPSTREAM_MAX_INFLIGHT); retry when one has finished",
                {"upstream": "busy", "limit": limit},
            )
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self._exchange(ctx, tool, params, on_message)
            outcome = "ok"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self.bulkhead.leave(slot)
            metrics.upstream_done(outcome, time.perf_counter() - started)

    async def _exchange(
        self,
        ctx: RequestContext,
        tool: Mapping[str, Any],
        params: dict[str, Any],
        on_message: MessageHandler | None,
    ) -> dict[str, Any]:
        view = ctx.integration
        assert view.upstream_url is not None
        try:
            with Deadline(self._loop.get(), self.timeout_s):
                response = await self.pool.request(
                    view.config_id,
                    view.upstream_url,
                    view.upstream_headers,
                    "tools/call",
                    params,
                    on_message=on_message,
                )
        except TimeoutError:
            raise self._failure(
                ctx,
                tool,
                f"Upstream MCP server timed out after {self.timeout_s:g} s",
                {"upstream": "timeout"},
            ) from None
        except UpstreamError as exc:
            raise self._upstream_failure(ctx, tool, exc) from None
        except (aiohttp.ClientError, OSError) as exc:  # pragma: no cover - post_message maps these
            raise self._failure(
                ctx,
                tool,
                f"Upstream MCP server unreachable: {_connect_detail(exc)}",
                {"upstream": "connect"},
            ) from None
        return self._relay(ctx, tool, response)

    def _relay(
        self,
        ctx: RequestContext,
        tool: Mapping[str, Any],
        response: dict[str, Any],
    ) -> dict[str, Any]:
        if "error" in response:
            error = response["error"]
            code = error.get("code") if isinstance(error, dict) else None
            if not isinstance(code, int) or isinstance(code, bool):
                raise self._invalid(ctx, tool, "its JSON-RPC error has no integer code")
            message = error.get("message")
            if not isinstance(message, str):
                message = "Upstream MCP server error"
            # The upstream's own answer, relayed as is, except for echoed secrets.
            metrics.upstream_failed("jsonrpc-error")
            secrets = _secrets_of(ctx)
            raise McpError(
                code, _scrub(message, secrets), _scrub_json(error.get("data"), secrets)
            )
        result = response.get("result")
        if not isinstance(result, dict):
            raise self._invalid(ctx, tool, "its result is not a JSON object")
        return result

    def _invalid(self, ctx: RequestContext, tool: Mapping[str, Any], why: str) -> McpError:
        return self._failure(
            ctx,
            tool,
            f"Upstream MCP server sent an invalid response: {why}",
            {"upstream": "invalid-response"},
        )

    def _upstream_failure(
        self, ctx: RequestContext, tool: Mapping[str, Any], exc: UpstreamError
    ) -> McpError:
        reason = exc.reason
        if reason == "connect":
            detail = _connect_detail(exc.__cause__) if exc.__cause__ is not None else exc.message
            message = f"Upstream MCP server unreachable: {detail}"
        elif reason == "timeout":  # the shared handshake's own bound (the pool's timeout)
            message = f"Upstream MCP server timed out after {self.pool.timeout_s:g} s"
        elif reason == "http-status" and exc.status is not None:
            data = {"upstream": reason, "status": exc.status}
            return self._failure(
                ctx, tool, f"Upstream MCP server answered HTTP {exc.status}", data
            )
        elif reason == "too-large":
            message = (
                f"Upstream MCP server response exceeds the {self.pool.max_body_bytes} byte limit"
            )
        elif reason == "invalid-response":
            message = f"Upstream MCP server sent an invalid response: {exc.message}"
        elif reason == "jsonrpc-error":  # the handshake was refused
            message = f"Upstream MCP server refused the session: {exc.message}"
        else:  # pragma: no cover - reasons of the catalog reader only
            message = f"Upstream MCP server failed: {exc.message}"
        return self._failure(ctx, tool, _scrub(message, _secrets_of(ctx)), {"upstream": reason})

    def _failure(
        self, ctx: RequestContext, tool: Mapping[str, Any], message: str, data: dict[str, Any]
    ) -> McpError:
        logger.info(
            "upstream tools/call failed: integration=%s/%s config=%s tool=%s upstream=%s%s",
            ctx.integration.tenant_id,
            ctx.integration.integration_id,
            ctx.integration.config_id,
            tool.get("name"),
            data["upstream"],
            f" status={data['status']}" if "status" in data else "",
        )
        metrics.upstream_failed(data["upstream"])
        return McpError(INTERNAL_ERROR, message, data)


class _Forwarder:
    """Relays the upstream's progress and log notifications to the client, in order.

    A failing sink (client gone) stops the forwarding, never the call.
    """

    def __init__(self, notify: Notify) -> None:
        self._notify: Callable[[dict[str, Any]], Awaitable[None]] | None = notify

    async def __call__(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if self._notify is None or method not in FORWARDED_NOTIFICATIONS:
            return
        out: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        params = message.get("params")
        if isinstance(params, dict):
            out["params"] = params
        try:
            await self._notify(out)
        except Exception as exc:
            logger.debug("client notification sink failed: %s", type(exc).__name__)
            self._notify = None


def _upstream_meta(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(meta, Mapping):
        return None
    return {
        key: value
        for key, value in meta.items()
        if not (isinstance(key, str) and key.startswith(_GATEWAY_META_PREFIX))
    }


def _connect_detail(exc: BaseException) -> str:
    """A short, stable description of a connection failure (never the URL or a header)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError | socket.gaierror):
        return "host not found"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError
                  | ssl.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection closed by the server"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "connection broken mid-response"
    code = exc.errno if isinstance(exc, OSError) else None
    if isinstance(exc, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, ConnectionResetError) or code == errno.ECONNRESET:
        return "connection reset"
    if code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "network unreachable"
    return type(exc).__name__


def _secrets_of(ctx: RequestContext) -> list[str]:
    """What to scrub from upstream text relayed to the client (only failures need it)."""
    view = ctx.integration
    url_secrets = secret_values(view.upstream_url) if view.upstream_url else []
    return _secret_pieces([*view.upstream_headers.values(), *url_secrets])


def _secret_pieces(values: Iterable[str]) -> list[str]:
    """Header values, and their long parts ("Bearer <token>" -> the token), longest first."""
    pieces: set[str] = set()
    for value in values:
        for piece in [value, *(p for p in value.split() if len(p) >= 8)]:
            if len(piece) >= 4:
                pieces.add(piece)
    return sorted(pieces, key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for piece in secrets:
        if piece in text:
            text = text.replace(piece, "[redacted]")
    return text


def _scrub_json(value: Any, secrets: list[str]) -> Any:
    if not secrets:
        return value
    if isinstance(value, str):
        return _scrub(value, secrets)
    if isinstance(value, list):
        return [_scrub_json(item, secrets) for item in value]
    if isinstance(value, dict):
        return {
            _scrub(k, secrets) if isinstance(k, str) else k: _scrub_json(v, secrets)
            for k, v in value.items()
        }
    return value
