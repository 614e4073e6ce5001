"""A lean HTTP/1.1 client for the data plane's upstream calls: kept-alive connections per
origin, responses parsed by httptools (the parser uvicorn uses), TLS by the standard library.

aiohttp's client costs about 68 µs of CPU per call on the benchmark's machines, this one about
18 µs (docs/performance.md), and callUrl makes one call per request. It implements only what
:mod:`settings_api.upstream` uses of ``aiohttp.ClientSession``: ``post`` and ``delete`` as
async context managers, never following redirects, and a response with ``status``,
``headers``, ``content_type``, ``content_length`` and ``content.iter_any()``. Failures are
aiohttp's own exception types (``ClientConnectorError``-style ``OSError``s when connecting,
``ServerDisconnectedError``, ``ClientPayloadError``), so callers map them as before.

A connection carries one exchange at a time and goes back to its origin's idle list only when
its response was read to the end and both sides keep it alive; any other exit closes it. The
request line, header names and values are checked for CR, LF and NUL (no header injection);
an internationalized host name is resolved, sent and given to TLS in its ASCII (IDNA) form, as
aiohttp sends it. Bounds: idle connections closed after 15 s, a response's status line and
headers at most 64 KiB (bodies are bounded by the caller), and connections in use at once only
when ``max_connections`` is given (further requests then wait their turn, first come first
served). The data plane gives none: a process-wide cap is one queue shared by every tenant,
where one tenant's slow upstream made everyone else's calls wait (issue #18). Its calls are
bounded per integration in front of this client instead (MCPGW_UPSTREAM_MAX_INFLIGHT), and each
connection in use serves a client request in flight.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import httptools
import idna
from multidict import CIMultiDict, CIMultiDictProxy

from settings_api.egress import EgressPolicy

__all__ = ["LeanHttpClient", "LeanResponse"]

DEFAULT_MAX_IDLE_PER_ORIGIN = 64
DEFAULT_IDLE_TIMEOUT_S = 15.0  # aiohttp's keep-alive default
DEFAULT_MAX_CONNECTIONS: int | None = None  # in use at once, all origins together: no cap
# A response's status line and headers, at most: an upstream cannot make the gateway buffer
# an endless head (bodies are bounded by the caller, MCPGW's relay limit).
MAX_HEAD_BYTES = 64 * 1024
# Unread body bytes held per connection before reading from the socket pauses.
_HIGH_WATER = 256 * 1024
_FORBIDDEN = ("\r", "\n", "\x00")
# Kept as they are in a request target; anything else (non-ASCII, spaces, controls) is sent
# percent-encoded as UTF-8, as aiohttp (yarl) sends it: servers refuse raw bytes there.
_TARGET_SAFE = "".join(map(chr, range(0x21, 0x7F)))
_ORIGINS_MAX = 1024
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})

Origin = tuple[str, str, int]  # scheme, host, port


def _literal_address(host: str, port: int) -> list[tuple[Any, ...]] | None:
    """getaddrinfo's answer for an IP literal, without its trip to a thread (None: a name,
    or an address with a zone, whose interface index getaddrinfo looks up)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4:
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    if "%" in host:
        return None
    return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port, 0, 0))]


class _Target:
    """A parsed request URL: where to connect and what to send in the request line."""

    __slots__ = ("authorization", "host_header", "origin", "path")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise aiohttp.InvalidURL(url)
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:  # not a number, or out of range
            raise aiohttp.InvalidURL(url) from None
        host = parts.hostname
        if not host.isascii():  # an internationalized name goes out as its ASCII form
            try:
                host = idna.encode(host, uts46=True).decode("ascii")  # as yarl encodes it
            except UnicodeError:
                raise aiohttp.InvalidURL(url) from None
        self.origin: Origin = (scheme, host, port)
        shown = f"[{host}]" if ":" in host else host
        default = 443 if scheme == "https" else 80
        self.host_header = shown if port == default else f"{shown}:{port}"
        path = parts.path or "/"
        path = f"{path}?{parts.query}" if parts.query else path
        if any(c in path for c in _FORBIDDEN):
            raise aiohttp.InvalidURL(url)
        self.path = quote(path, safe=_TARGET_SAFE)
        # user:password@ in the URL is HTTP Basic authentication, as aiohttp sends it.
        self.authorization: str | None = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        if any(c in self.host_header for c in _FORBIDDEN):  # the path was checked above
            raise aiohttp.InvalidURL(url)


class _Body:
    """The response body as it arrives: chunks queued by the protocol, read by the caller."""

    __slots__ = ("_chunks", "_conn", "_error", "_size", "_waiter", "done")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self.done = False

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > _HIGH_WATER:
            self._conn.pause()
        self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        if error is not None and not self.done:
            self._error = error
        self.done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def arrived(self) -> bytes | None:
        """The whole body when all of it has arrived (the usual small answer), else None."""
        if not self.done or self._error is not None:
            return None
        chunk = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        return chunk

    def iter_any(self) -> AsyncIterator[bytes]:
        """What has arrived, chunk by chunk, until the body ends (aiohttp's name)."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                chunk = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
                self._chunks.clear()
                self._size = 0
                self._conn.resume()
                yield chunk
                continue
            if self._error is not None:
                raise self._error
            if self.done:
                return
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class LeanResponse:
    """An upstream's answer: status and headers at once, the body as it streams in."""

    __slots__ = ("content", "headers", "status")

    def __init__(self, status: int, headers: CIMultiDictProxy[str], content: _Body) -> None:
        self.status = status
        self.headers = headers
        self.content = content

    @property
    def content_type(self) -> str:
        """The media type, without parameters, lower-cased ("application/octet-stream" when
        none was sent, as aiohttp has it)."""
        raw = self.headers.get("Content-Type")
        if not raw:
            return "application/octet-stream"
        return raw.split(";", 1)[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        return int(raw) if raw is not None and raw.isdigit() else None


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; httptools calls the ``on_*`` methods as it parses."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._head_bytes = 0
        self._headers: list[tuple[str, str]] = []
        self._head: asyncio.Future[LeanResponse] | None = None
        self._body: _Body | None = None
        self._complete = False
        self._keep_alive = False
        self._until_close = False

    # asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances; they have its methods.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(aiohttp.ClientPayloadError("the upstream switched protocols"))
            return
        except httptools.HttpParserError as exc:
            self._fail(aiohttp.ClientPayloadError(f"malformed HTTP response: {exc}"))
            return
        if self._body is None and self._head is not None:  # all of it was head so far
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(aiohttp.ClientPayloadError(
                    f"the response's status line and headers exceed {MAX_HEAD_BYTES} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._complete and self._until_close and self._body is not None and exc is None:
            # Neither a length nor chunks: the body is what came before the server closed.
            self._complete = True
            self._body.finish()
        if not self._complete:
            if self._head is not None and not self._head.done():
                self._head.set_exception(aiohttp.ServerDisconnectedError())
            elif self._body is not None:
                self._body.finish(aiohttp.ClientPayloadError(
                    "the connection closed before the response ended"))

    def pause_writing(self) -> None:  # requests are small; nothing to hold back
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        # An answer when no request is waiting for one (a second answer, or bytes on an idle
        # connection) would be taken for the next request's: fail, which closes the connection.
        if self._head is None or self._complete:
            raise httptools.HttpParserError("an answer no request asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers = []
            return
        self._keep_alive = self.parser.should_keep_alive()
        self._body = _Body(self)
        headers = CIMultiDictProxy(CIMultiDict(self._headers))
        self._until_close = (status not in (204, 304) and "Content-Length" not in headers
                             and "chunked" not in headers.get("Transfer-Encoding", "").lower())
        response = LeanResponse(status, headers, self._body)
        self._headers = []
        if self._head is not None and not self._head.done():
            self._head.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._body is not None:
            self._body.feed(body)

    def on_message_complete(self) -> None:
        if self._body is None:  # the end of an interim answer
            return
        self._complete = True
        self._body.finish()

    # the client's side -------------------------------------------------------------------

    def start(self, request: bytes) -> asyncio.Future[LeanResponse]:
        """Send one request; the future resolves with the response's head."""
        assert self.transport is not None
        self._head = self.loop.create_future()
        self._body = None
        self._complete = self._until_close = False
        self._head_bytes = 0
        self.transport.write(request)
        return self._head

    def reusable(self) -> bool:
        return (self._complete and self._keep_alive and not self.closed
                and self.transport is not None and not self.transport.is_closing())

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def _fail(self, exc: BaseException) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        elif self._body is not None:
            self._body.finish(exc)
        self.close()


class _Exchange:
    """``async with client.post(...) as response``: the connection is given back (or closed)
    on exit."""

    __slots__ = ("_client", "_conn", "_request", "_target")

    def __init__(self, client: LeanHttpClient, target: _Target, request: bytes) -> None:
        self._client = client
        self._target = target
        self._request = request
        self._conn: _Connection | None = None

    async def __aenter__(self) -> LeanResponse:
        conn = await self._client._acquire(self._target.origin)
        try:
            response = await conn.start(self._request)
        except BaseException:
            self._client._release(self._target.origin, conn)  # not reusable: closed
            raise
        self._conn = conn
        return response

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._release(self._target.origin, conn)


class LeanHttpClient:
    """Keep-alive connections per origin (scheme, host, port), at most
    ``max_idle_per_origin`` idle ones, each closed after ``idle_timeout_s`` unused, and (when
    given) at most ``max_connections`` in use at once (further requests wait for a release).
    ``headers`` go on every request unless a request sets the same name. With an ``egress``
    policy, a host any of whose resolved addresses it refuses is never connected to
    (:class:`~settings_api.egress.EgressRefused`); the address connected to is the one checked.
    """

    def __init__(self, *, headers: Mapping[str, str] | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 max_idle_per_origin: int = DEFAULT_MAX_IDLE_PER_ORIGIN,
                 idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
                 egress: EgressPolicy | None = None) -> None:
        if ((max_connections is not None and max_connections < 1) or max_idle_per_origin < 0
                or idle_timeout_s <= 0):
            raise ValueError("max_connections must be at least 1, idle bounds positive")
        self._default_lines = [(name.lower(), f"{name}: {value}")
                               for name, value in (headers or {}).items()]
        # Made here, at start-up: loading the system's CA certificates blocks for a while.
        self._ssl = ssl_context or ssl.create_default_context()
        self._max_idle = max_idle_per_origin
        self._idle_timeout_s = idle_timeout_s
        self._idle: dict[Origin, list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._busy: set[_Connection] = set()
        self._max_connections = max_connections
        self._in_use = 0  # connections handed out or being opened
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._egress = egress
        self.closed = False

    def post(self, url: str, *, data: bytes, headers: Mapping[str, str],
             allow_redirects: bool = False) -> _Exchange:
        """POST ``data``; redirects are never followed (they are answered as they are)."""
        return self._exchange("POST", url, headers, data)

    def delete(self, url: str, *, headers: Mapping[str, str],
               allow_redirects: bool = False) -> _Exchange:
        return self._exchange("DELETE", url, headers, b"")

    async def close(self) -> None:
        self.closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.close()
        self._busy.clear()
        waiters, self._waiters = self._waiters, collections.deque()
        for waiter in waiters:
            waiter.set_exception(RuntimeError("the HTTP client is closed"))

    # internals ---------------------------------------------------------------------------

    def _exchange(self, method: str, url: str, headers: Mapping[str, str],
                  body: bytes) -> _Exchange:
        if self.closed:
            raise RuntimeError("the HTTP client is closed")
        target = self._targets.get(url)
        if target is None:
            target = _Target(url)
            if len(self._targets) >= _ORIGINS_MAX:
                self._targets.clear()
            self._targets[url] = target
        lines = [f"{method} {target.path} HTTP/1.1", f"Host: {target.host_header}"]
        given: set[str] = set()
        for name, value in headers.items():
            lower = name.lower()
            if lower in _FRAMING:
                continue  # framing is this client's
            given.add(lower)
            lines.append(f"{name}: {value}")
        for lower, line in self._default_lines:
            if lower not in given:
                lines.append(line)
        if target.authorization is not None and "authorization" not in given:
            lines.append(f"Authorization: {target.authorization}")
        head = "\r\n".join(lines)
        breaks = len(lines) - 1
        if head.count("\n") != breaks or head.count("\r") != breaks or "\x00" in head:
            raise ValueError("a request header contains CR, LF or NUL")
        if body or method == "POST":
            head += f"\r\nContent-Length: {len(body)}"
        return _Exchange(self, target, (head + "\r\n\r\n").encode() + body)

    async def _acquire(self, origin: Origin) -> _Connection:
        if self._waiters or (self._max_connections is not None
                             and self._in_use >= self._max_connections):
            await self._wait_for_a_slot()  # first come, first served
        else:
            self._in_use += 1
        try:
            idle = self._idle.get(origin)
            while idle:
                conn = idle.pop()
                if not idle:
                    del self._idle[origin]
                if conn.idle_timer is not None:
                    conn.idle_timer.cancel()
                    conn.idle_timer = None
                if not conn.closed:
                    self._busy.add(conn)
                    return conn
                idle = self._idle.get(origin)
            conn = await self._connect(origin)
        except BaseException:
            self._free_slot()
            raise
        self._busy.add(conn)
        return conn

    async def _connect(self, origin: Origin) -> _Connection:
        """A new connection to `origin`: resolved once, every address checked against the
        egress policy, then the checked addresses tried in turn."""
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        infos = _literal_address(host, port) or await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)
        if self._egress is not None:
            self._egress.check_resolved(str(info[4][0]) for info in infos)
        ssl_context = self._ssl if scheme == "https" else None
        first_error: OSError | None = None
        for family, type_, proto, _, address in infos:
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop), sock=sock, ssl=ssl_context,
                    server_hostname=host if ssl_context is not None else None)
            except OSError as exc:
                sock.close()
                first_error = first_error or exc
                continue
            except BaseException:
                sock.close()
                raise
            return conn
        raise first_error or OSError(f"no address to connect to for {host!r}")

    async def _wait_for_a_slot(self) -> None:
        """Wait until a released slot is handed over (it stays counted in `_in_use`)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                self._waiters.remove(waiter)
            elif waiter.exception() is None:  # handed a slot in the same moment: pass it on
                self._free_slot()
            raise

    def _free_slot(self) -> None:
        """A slot is done with: straight to the first waiter, else back to the count."""
        if self._waiters:
            self._waiters.popleft().set_result(None)
        else:
            self._in_use -= 1

    def _release(self, origin: Origin, conn: _Connection) -> None:
        self._busy.discard(conn)
        self._free_slot()
        if self.closed or not conn.reusable():
            conn.close()
            return
        idle = self._idle.get(origin)
        if len(idle or ()) >= self._max_idle:
            conn.close()
            return
        if idle is None:
            idle = self._idle[origin] = []
        # A complete body left unread over the high-water mark leaves reading paused; the
        # next answer on this connection must be read.
        conn.resume()
        conn.idle_timer = conn.loop.call_later(self._idle_timeout_s, self._expire, origin, conn)
        idle.append(conn)

    def _expire(self, origin: Origin, conn: _Connection) -> None:
        """An idle connection's time is up: close it and forget it."""
        conn.idle_timer = None
        idle = self._idle.get(origin)
        if idle is not None and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[origin]
        conn.close()
