"""The upstreams callUrl's calls share: one per replica and (config id, upstream URL, header
set), used by every concurrent call, in the era the upstream speaks.

- the era is probed once per upstream URL and remembered per replica: an upstream that
  answers ``server/discover`` for 2026-07-28 is called statelessly (no handshake, no session);
  any other gets one MCP session (legacy era);
- the first calls share one probe and ``initialize`` (+ ``notifications/initialized``): 50
  concurrent first calls cause exactly one handshake, and a failed handshake fails every call
  that waited for it (the next call tries again, probing the era again);
- an upstream answering HTTP 404 for the session (expired, or the server restarted) gets one new
  handshake (shared as well) and the call is retried once; a modern upstream that answers a
  call as a legacy server would (a 4xx without a modern error, a refused version, an invalid
  request) has its era probed again and the call is retried once;
- a config that changes has a new config id, hence new sessions; the pool keeps the
  ``max_sessions`` most recently used and ends the others with ``DELETE`` once their calls are
  done, and :meth:`UpstreamPool.close` ends every live session (best effort, bounded).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from mcp_core.client import (
    PROBE_TIMEOUT_S,
    HttpClient,
    MessageHandler,
    StatelessUpstream,
    Upstream,
    UpstreamError,
    UpstreamSession,
    connect,
    legacy_params,
)
from mcp_core.errors import (
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    SESSION_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from mcp_core.versions import Era

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT_S",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_RELAY_MAX_BODY_BYTES",
    "DEFAULT_UPSTREAM_TIMEOUT_S",
    "UpstreamPool",
]

logger = logging.getLogger(__name__)

DEFAULT_UPSTREAM_TIMEOUT_S = 30.0
DEFAULT_RELAY_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_CLOSE_TIMEOUT_S = 2.0
DEFAULT_MAX_SESSIONS = 1024

PoolKey = tuple[str | None, str, str]
_LEGACY_REFUSALS = frozenset({UNSUPPORTED_PROTOCOL_VERSION, INVALID_REQUEST, SESSION_NOT_FOUND})


class _Entry:
    """One pooled upstream: its live connection (a session, or a stateless modern upstream),
    the handshake in flight, and who is using it."""

    __slots__ = ("dropped", "headers", "inflight", "init_task", "key", "session", "url")

    def __init__(self, key: PoolKey, url: str, headers: Mapping[str, str]) -> None:
        self.key = key
        self.url = url
        self.headers = dict(headers)
        self.session: Upstream | None = None  # initialized and believed live
        self.init_task: asyncio.Task[Upstream] | None = None
        self.inflight = 0
        self.dropped = False  # out of the pool: end the session once the last call is done


class UpstreamPool:
    """Upstreams ready for calls, one per (config id, upstream URL, headers), and the era each
    upstream URL speaks.

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
        # The era each upstream URL was found to speak (a property of the server, not of a
        # config), at most max_sessions of them.
        self._eras: collections.OrderedDict[str, Era] = collections.OrderedDict()
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
        request_headers: Mapping[str, str] | None = None,
        trace_headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send one JSON-RPC request to the pooled upstream; return its JSON-RPC response (a
        ``result`` or an ``error``, as sent). ``request_headers``: what a modern upstream must
        also receive for this request (a ``tools/call``'s ``Mcp-Param-*``); ``trace_headers``:
        what an upstream of either era receives (the W3C trace context).

        Probes the era and initializes a session if needed, and once more (with one retry of
        the request) when the upstream no longer answers as before. Failures are
        :class:`UpstreamError` (a handshake past the pool's ``timeout_s`` is ``timeout``). No
        deadline of its own otherwise: the caller bounds the whole operation.
        """
        if self._closed:
            raise UpstreamError("connect", "the gateway is shutting down")
        entry = self._acquire(config_id, url, headers)
        try:
            session = await self._ready(entry)
            try:
                response = await self._send(
                    session, method, params, on_message, request_headers, trace_headers
                )
            except UpstreamError as exc:
                if not _stale(session, exc):
                    raise
            else:
                if not _refused_as_legacy(session, response):
                    return response
            # The upstream no longer answers as it did (its session expired, the server
            # restarted, or it was replaced by one of another era): one new handshake, shared
            # with the calls that saw the same, and one retry.
            self._forget(entry, session, config_id)
            session = await self._ready(entry, stale=session)
            return await self._send(
                session, method, params, on_message, request_headers, trace_headers
            )
        finally:
            self._release(entry)

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

    async def _ready(self, entry: _Entry, *, stale: Upstream | None = None) -> Upstream:
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

    async def _initialize(self, entry: _Entry) -> Upstream:
        modern = StatelessUpstream(
            self._http, entry.url, entry.headers, max_body_bytes=self.max_body_bytes
        )
        session = UpstreamSession(
            self._http, entry.url, entry.headers, max_body_bytes=self.max_body_bytes
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                upstream = await connect(
                    modern,
                    session,
                    era=self._eras.get(entry.url),
                    probe_timeout_s=min(PROBE_TIMEOUT_S, self.timeout_s / 2),
                )
        except BaseException as exc:
            # The remembered era may be what failed: the next attempt probes again.
            self._eras.pop(entry.url, None)
            if session.session_id is not None and not self._closed:
                self._terminate_later(session)  # e.g. notifications/initialized failed
            if isinstance(exc, TimeoutError):  # callers' own deadlines never reach this task
                raise UpstreamError(
                    "timeout", f"upstream did not answer within {self.timeout_s:g} s"
                ) from None
            raise
        self._remember(entry.url, upstream.era)
        entry.session = upstream
        if entry.dropped and entry.inflight == 0:
            self._end_session(entry)
        return upstream

    def _remember(self, url: str, era: Era) -> None:
        self._eras[url] = era
        self._eras.move_to_end(url)
        while len(self._eras) > self.max_sessions:
            self._eras.popitem(last=False)

    def _forget(self, entry: _Entry, stale: Upstream, config_id: str | None) -> None:
        """Before a new handshake for an upstream that answered unlike before."""
        if stale.era is Era.LEGACY:
            logger.info("upstream session expired (config %s); re-initializing", config_id)
            return
        logger.info(
            "upstream no longer answers protocol %s (config %s); probing its era again",
            stale.protocol_version,
            config_id,
        )
        self._eras.pop(entry.url, None)

    async def _send(
        self,
        session: Upstream,
        method: str,
        params: Mapping[str, Any] | None,
        on_message: MessageHandler | None,
        request_headers: Mapping[str, str] | None,
        trace_headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        if isinstance(session, StatelessUpstream):
            if trace_headers:
                request_headers = {**(request_headers or {}), **trace_headers}
            return await session.exchange(
                method,
                params,
                on_message=_notifications_only(on_message) if on_message is not None else None,
                headers=request_headers,
            )
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": session.new_id(), "method": method}
        legacy = legacy_params(params)
        if legacy is not None:
            message["params"] = legacy

        async def handle(incoming: dict[str, Any]) -> None:
            if "id" in incoming:
                await _answer_server_request(session, incoming)
            elif on_message is not None:
                await on_message(incoming)

        reply = await session.send(message, on_message=handle, headers=trace_headers)
        if reply.message is None:  # pragma: no cover - post_message always reads requests
            raise UpstreamError("invalid-response", "upstream sent no response")
        return reply.message

    def _end_session(self, entry: _Entry) -> None:
        session, entry.session = entry.session, None
        if session is not None:
            self._terminate_later(session)

    def _terminate_later(self, session: Upstream) -> None:
        if session.session_id is None:
            return  # a stateless upstream: nothing to end
        task = asyncio.create_task(self._terminate(session), name="mcpgw-upstream-delete")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _terminate(self, session: Upstream) -> None:
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


def _stale(upstream: Upstream, exc: UpstreamError) -> bool:
    """Whether `exc` says the upstream no longer answers as it did: 404 for a legacy session
    (expired, or the server restarted); for a modern upstream, a 4xx without a modern error,
    as a legacy server answers a modern request."""
    if exc.reason != "http-status":
        return False
    if upstream.era is Era.LEGACY:
        return exc.status == 404
    return exc.status in (400, 404, 405)


def _refused_as_legacy(upstream: Upstream, response: Mapping[str, Any]) -> bool:
    """Whether a modern upstream's error says it no longer speaks our modern version: it
    refuses the version, or calls a well-formed request invalid or sessionless, as a legacy
    server does."""
    error = response.get("error")
    return (
        upstream.era is Era.MODERN
        and isinstance(error, dict)
        and error.get("code") in _LEGACY_REFUSALS
    )


def _notifications_only(on_message: MessageHandler) -> MessageHandler:
    """A 2026-07-28 server sends no requests on a response stream; any that comes is dropped
    (there is no session to answer it in)."""

    async def handle(message: dict[str, Any]) -> None:
        if "id" not in message:
            await on_message(message)

    return handle


async def _answer_server_request(session: UpstreamSession, request: dict[str, Any]) -> None:
    """Answer a server-to-client request seen on the stream: ``ping`` is answered, anything
    else (sampling, elicitation, roots: capabilities the gateway never declares) is refused,
    so the upstream does not wait for an answer that would never come."""
    reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
    if request.get("method") == "ping":
        reply["result"] = {}
    else:
        reply["error"] = {
            "code": METHOD_NOT_FOUND,
            "message": "Method not supported by the gateway",
        }
    try:
        await session.send(reply)
    except UpstreamError as exc:
        logger.debug("could not answer an upstream request: %s", exc.reason)
