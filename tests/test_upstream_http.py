"""Tests for settings_api.upstream_http.LeanHttpClient, the data plane's keep-alive HTTP/1.1
client, against real in-process servers (aiohttp's, and plain asyncio ones for answers an HTTP
server would never send).

Covered:

* the request on the wire: request line, Host, Content-Length, body, caller and default
  headers (a caller's header replaces a default one of the same name, case-insensitively),
  framing headers owned by the client; the response's status, headers, content type and length;
* keep-alive: sequential requests share one connection, concurrent ones do not mix up; no reuse
  after ``Connection: close``, after a body left unread, after a server closes an idle
  connection, after the client's idle timeout, beyond ``max_idle_per_origin``; an unread but
  complete body over the flow-control mark does not stall the next request; a response the
  client never asked for (extra bytes after an answer) does not poison the next exchange;
* bodies: chunked (with extensions and trailers), streamed SSE (each event arrives before the
  next is sent), delimited by the connection's close, several MB with flow control, 204/202
  with no body, 100 Continue skipped;
* failures, as aiohttp's exception types: truncated bodies, resets, closes without an answer,
  malformed HTTP, protocol switches, nothing listening;
* header injection (CR, LF, NUL in names or values, caller or default headers) is refused
  before anything is sent; URL handling (query, port, IPv6, user:password → Basic auth,
  non-ASCII path percent-encoded, invalid URLs → ``aiohttp.InvalidURL``);
* ``close()`` and use after close; ``delete()``;
* settings_api.upstream's ``post_message`` and ``fetch_tool_catalog`` over the lean client;
* TLS with a self-signed certificate: trusted through ``ssl_context``, refused by default;
* a core subset again on uvloop, which the gateway runs on in production.

Not covered here: the Host header for the default ports (80/443 cannot be bound in a test).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import inspect
import ipaddress
import json
import random
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import CIMultiDict, CIMultiDictProxy

from settings_api.upstream import (
    UpstreamError,
    fetch_tool_catalog,
    mcp_headers,
    post_message,
)
from settings_api.upstream_http import _HIGH_WATER, LeanHttpClient, LeanResponse

try:
    from mcp_stub import StubUpstream, make_tools
except ImportError:  # tests/ imported as a package
    from tests.mcp_stub import StubUpstream, make_tools

ServerFactory = Callable[..., Awaitable[TestServer]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# Long enough for a loaded CI machine, short enough that a hang fails fast instead of stalling.
STEP_TIMEOUT_S = 5.0
DEFAULT_UA = "lean-test/1.0"


# --------------------------------------------------------------------------- helpers


@pytest.fixture
async def client() -> AsyncIterator[LeanHttpClient]:
    http = LeanHttpClient(headers={"User-Agent": DEFAULT_UA})
    yield http
    await http.close()


async def _tag_peer(request: web.Request, response: web.StreamResponse) -> None:
    # The client's port as the server sees it: equal ports mean one reused connection.
    assert request.transport is not None
    response.headers["X-Peer-Port"] = str(request.transport.get_extra_info("peername")[1])


async def serve(aiohttp_server: ServerFactory, handler: Handler, **kwargs: Any) -> TestServer:
    """An aiohttp server answering every method and path with ``handler``; each response
    carries the client's port in ``X-Peer-Port``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    app.on_response_prepare.append(_tag_peer)
    return await aiohttp_server(app, **kwargs)


def url_of(server: TestServer, path: str) -> str:
    host = f"[{server.host}]" if ":" in server.host else server.host
    return f"{server.scheme}://{host}:{server.port}{path}"


async def read_all(response: LeanResponse) -> bytes:
    return b"".join([chunk async for chunk in response.content.iter_any()])


@dataclass
class Answer:
    """A response read to the end."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def peer(self) -> int:
        return int(self.headers["X-Peer-Port"])


async def post(client: LeanHttpClient, url: str, data: bytes = b"",
               headers: Mapping[str, str] | None = None) -> Answer:
    """One POST read to the end."""
    async with asyncio.timeout(STEP_TIMEOUT_S):
        async with client.post(url, data=data, headers=headers or {}) as resp:
            return Answer(resp.status, resp.headers, await read_all(resp))


async def ok_handler(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@dataclass
class RawRequest:
    """One request as it came off the socket."""

    head: bytes
    body: bytes

    @property
    def request_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode()

    @property
    def header_lines(self) -> list[str]:
        return self.head.decode().split("\r\n")[1:-2]

    def headers(self, name: str) -> list[str]:
        found: list[str] = []
        for line in self.header_lines:
            key, _, value = line.partition(":")
            if key.lower() == name.lower():
                found.append(value.strip())
        return found


async def read_request(reader: asyncio.StreamReader) -> RawRequest | None:
    """The next request on a connection (Content-Length framing only), None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    request = RawRequest(head, b"")
    lengths = request.headers("Content-Length")
    if lengths:
        request.body = await reader.readexactly(int(lengths[0]))
    return request


@dataclass
class RawServer:
    """A plain TCP server whose handler writes whatever bytes a test needs; counts the
    connections it accepted."""

    handler: RawHandler
    host: str = "127.0.0.1"
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: some tests are about exactly that
        except asyncio.CancelledError:
            pass  # __aexit__ stops handlers still waiting; asyncio logs cancelled ones
        finally:
            self._tasks.discard(task)
            writer.close()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_for_event(event: asyncio.Event) -> None:
    async with asyncio.timeout(STEP_TIMEOUT_S):
        await event.wait()


# --------------------------------------------------------------------------- the exchange


async def test_post_round_trip(aiohttp_server: ServerFactory, client: LeanHttpClient) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append({
            "method": request.method, "path_qs": request.path_qs, "version": request.version,
            "headers": request.headers.copy(), "body": await request.read(),
        })
        return web.Response(
            status=201, body=b'{"answer": 42}',
            headers={"Content-Type": "Application/JSON; charset=utf-8", "X-Reply": "yes"})

    server = await serve(aiohttp_server, handler)
    payload = b'{"question": "life"}'
    async with client.post(url_of(server, "/rpc"), data=payload,
                           headers={"X-Trace": "t-1", "Content-Type": "application/json"},
                           allow_redirects=False) as resp:
        assert resp.status == 201
        assert resp.headers["X-Reply"] == "yes"
        assert resp.headers["x-reply"] == "yes"  # case-insensitive, as aiohttp's
        assert resp.content_type == "application/json"  # parameters dropped, lower-cased
        assert resp.content_length == len(b'{"answer": 42}')
        assert await read_all(resp) == b'{"answer": 42}'

    [request] = seen
    assert request["method"] == "POST"
    assert request["path_qs"] == "/rpc"
    assert request["version"] == aiohttp.HttpVersion11
    headers = request["headers"]
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    assert headers["Content-Length"] == str(len(payload))
    assert request["body"] == payload
    assert headers["X-Trace"] == "t-1"
    assert headers["Content-Type"] == "application/json"
    assert headers.getall("User-Agent") == [DEFAULT_UA]  # the client's default header


async def test_request_bytes_on_the_wire(client: LeanHttpClient) -> None:
    requests: list[RawRequest] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert request is not None
        requests.append(request)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with RawServer(handler) as server:
        # Framing is the client's own: a caller's Host, Content-Length, Transfer-Encoding or
        # Connection must not reach the wire (they could desynchronise the server).
        answer = await post(client, server.url("/path?x=1"), b"abc", {
            "X-One": "1", "Host": "evil.example", "content-length": "999",
            "Transfer-Encoding": "chunked", "Connection": "close"})

    assert answer.status == 200
    [request] = requests
    assert request.request_line == "POST /path?x=1 HTTP/1.1"
    assert request.headers("Host") == [f"127.0.0.1:{server.port}"]
    assert request.headers("Content-Length") == ["3"]
    assert request.headers("Transfer-Encoding") == []
    assert request.headers("Connection") == []
    assert request.headers("X-One") == ["1"]
    assert request.headers("User-Agent") == [DEFAULT_UA]
    assert request.body == b"abc"


async def test_caller_header_overrides_default_case_insensitively(
        aiohttp_server: ServerFactory) -> None:
    seen: list[CIMultiDict[str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.copy())
        return web.Response()

    server = await serve(aiohttp_server, handler)
    http = LeanHttpClient(headers={"User-Agent": "default/1", "X-Default": "d"})
    try:
        await post(http, url_of(server, "/"), headers={"user-agent": "mine/2"})
        await post(http, url_of(server, "/"), headers={"X-DEFAULT": "mine"})
    finally:
        await http.close()

    first, second = seen
    assert first.getall("User-Agent") == ["mine/2"]  # one header, the caller's
    assert first.getall("X-Default") == ["d"]
    assert second.getall("X-Default") == ["mine"]
    assert second.getall("User-Agent") == ["default/1"]


async def test_response_headers_repeat_and_content_type_defaults(
        client: LeanHttpClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n"
                     b"Content-Length: 2\r\n\r\nhi")
        await writer.drain()

    async with RawServer(handler) as server, client.post(server.url(), data=b"",
                                                          headers={}) as resp:
        assert resp.headers.getall("Set-Cookie") == ["a=1", "b=2"]
        # No Content-Type: aiohttp's default, which read_rpc_response then rejects.
        assert resp.content_type == "application/octet-stream"
        assert resp.content_length == 2
        assert await read_all(resp) == b"hi"


# --------------------------------------------------------------------------- keep-alive


async def test_sequential_requests_reuse_one_connection(
        aiohttp_server: ServerFactory, client: LeanHttpClient) -> None:
    transports: list[object] = []

    async def handler(request: web.Request) -> web.Response:
        transports.append(request.transport)
        return web.Response(text=request.path)

    server = await serve(aiohttp_server, handler)
    answers = [await post(client, url_of(server, f"/{i}")) for i in range(3)]

    assert [a.body for a in answers] == [b"/0", b"/1", b"/2"]
    assert len({a.peer for a in answers}) == 1
    assert transports[0] is transports[1] is transports[2]


async def test_concurrent_requests_get_their_own_answers(
        aiohttp_server: ServerFactory, client: LeanHttpClient) -> None:
    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(random.uniform(0, 0.02))  # answers finish out of order
        return web.Response(body=body[::-1])

    server = await serve(aiohttp_server, handler)
    for _ in range(2):  # the second round runs on the connections the first left idle
        payloads = [f"request-{i}".encode() for i in range(20)]
        answers = await asyncio.gather(*(post(client, url_of(server, "/"), p)
                                         for p in payloads))
        assert [a.body for a in answers] == [p[::-1] for p in payloads]


async def test_connection_close_answer_is_not_reused(
        aiohttp_server: ServerFactory, client: LeanHttpClient) -> None:
    async def handler(request: web.Request) -> web.Response:
        response = web.Response(text="bye")
        if request.path == "/close":
            response.force_close()  # sends Connection: close
        return response

    server = await serve(aiohttp_server, handler)
    first = await post(client, url_of(server, "/close"))
    second = await post(client, url_of(server, "/"))
    third = await post(client, url_of(server, "/"))

    assert first.headers["Connection"].lower() == "close"
    assert first.body == second.body == b"bye"
    assert first.peer != second.peer
    assert second.peer == third.peer  # a keep-alive answer is reused as usual


async def test_body_left_unread_closes_the_connection(
        aiohttp_server: ServerFactory, client: LeanHttpClient) -> None:
    gone = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path != "/slow":
            return web.Response(text="fine")
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first part")
        try:
            await asyncio.sleep(STEP_TIMEOUT_S)  # the rest never comes while the client waits
        finally:
            gone.set()  # cancelled when the client drops the connection
        return response

    server = await serve(aiohttp_server, handler)
    async with asyncio.timeout(STEP_TIMEOUT_S):
        async with client.post(url_of(server, "/slow"), data=b"", headers={}) as resp:
            first_peer = int(resp.headers["X-Peer-Port"])
            async for chunk in resp.content.iter_any():
                assert chunk == b"first part"
                break  # leave with the body unfinished

    await wait_for_event(gone)  # the client closed that connection
    answer = await post(client, url_of(server, "/"))
    assert answer.body == b"fine"
    assert answer.peer != first_peer


async def test_complete_but_unread_body_over_the_flow_control_mark_does_not_stall(
        aiohttp_server: ServerFactory, client: LeanHttpClient) -> None:
    # One byte over the mark: reading pauses on the very chunk that completes the body, so the
    # connection is complete (reusable) while its reading is paused. A caller that drops such
    # a body unread (post_message does for error statuses) must not leave the next request on
    # that connection waiting forever for bytes nobody reads.
    big = b"x" * (_HIGH_WATER + 1)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=big if request.path == "/big" else b"small")

    server = await serve(aiohttp_server, handler)
    async with asyncio.timeout(STEP_TIMEOUT_S):
        async with client.post(url_of(server, "/big"), data=b"", headers={}) as resp:
            # everything arrived, nothing read (the body has no event to wait on)
            while not resp.content.done:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    for _ in range(2):
        answer = await post(client, url_of(server, "/small"))
        assert answer.body == b"small"


@pytest.mark.parametrize("when", ["with-the-answer", "while-idle"])
async def test_unsolicited_bytes_after_an_answer_do_not_poison_the_next_request(
        client: LeanHttpClient, when: str) -> None:
    # A server that sends more than one answer (the start of a second response, here one that
    # claims a 50-byte body) must not have that junk read as the answer to the next request:
    # the next request goes to a fresh connection.
    junk = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nsmuggled"
    sent_junk = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            if not sent_junk.is_set():  # the very first request, on any connection
                answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                if when == "with-the-answer":
                    writer.write(answer + junk)
                else:
                    writer.write(answer)
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    writer.write(junk)
                await writer.drain()
                sent_junk.set()
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
                await writer.drain()

    async with RawServer(handler) as server:
        assert (await post(client, server.url())).body == b"ok"
        await wait_for_event(sent_junk)
        await asyncio.sleep(0.05)  # let the junk reach the client
        answer = await post(client, server.url())
        assert (answer.status, answer.body) == (200, b"second")
        assert server.connections == 2


async def test_server_closing_an_idle_connection(client: LeanHttpClient) -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One answer that says keep-alive, then the server closes anyway (as a server's own
        # keep-alive timeout does).
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    async with RawServer(handler) as server:
        assert (await post(client, server.url())).body == b"one"
        await wait_for_event(closed)
        # The FIN is already in the client's socket: one loop turn is enough to see it.
        await asyncio.sleep(0.1)
        assert (await post(client, server.url())).body == b"one"
        assert server.connections == 2


async def test_client_idle_timeout_drops_old_connections(aiohttp_server: ServerFactory) -> None:
    server = await serve(aiohttp_server, ok_handler)
    http = LeanHttpClient(idle_timeout_s=0.05)
    try:
        first = await post(http, url_of(server, "/"))
        again = await post(http, url_of(server, "/"))
        await asyncio.sleep(0.15)
        later = await post(http, url_of(server, "/"))
    finally:
        await http.close()
    assert first.peer == again.peer
    assert later.peer != first.peer


async def test_at_most_max_idle_connections_are_kept(aiohttp_server: ServerFactory) -> None:
    both_in = asyncio.Barrier(2)

    async def handler(request: web.Request) -> web.Response:
        await both_in.wait()  # two requests at once: two connections
        return web.Response(text="ok")

    server = await serve(aiohttp_server, handler)
    http = LeanHttpClient(max_idle_per_origin=1)
    try:
        pair = [url_of(server, "/"), url_of(server, "/")]
        first = await asyncio.gather(*(post(http, u) for u in pair))
        second = await asyncio.gather(*(post(http, u) for u in pair))
    finally:
        await http.close()
    first_ports = {a.peer for a in first}
    second_ports = {a.peer for a in second}
    assert len(first_ports) == len(second_ports) == 2
    assert len(first_ports & second_ports) == 1  # one was kept idle, the other closed


async def test_an_idle_connection_is_closed_when_its_time_is_up(client: LeanHttpClient) -> None:
    # Not only when the origin is next used: an upstream called once must not keep a socket
    # of the gateway's open for good.
    http = LeanHttpClient(idle_timeout_s=0.05)
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        closed.set()  # EOF: the client closed its end

    try:
        async with RawServer(handler) as server:
            assert (await post(http, server.url())).body == b"ok"
            await asyncio.wait_for(closed.wait(), STEP_TIMEOUT_S)
    finally:
        await http.close()


async def test_at_most_max_connections_are_in_use(aiohttp_server: ServerFactory) -> None:
    active = peak = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.03)
        active -= 1
        return web.Response(text="ok")

    server = await serve(aiohttp_server, handler)
    http = LeanHttpClient(max_connections=2)
    try:
        answers = await asyncio.gather(*(post(http, url_of(server, "/")) for _ in range(6)))
    finally:
        await http.close()
    assert [a.body for a in answers] == [b"ok"] * 6
    assert peak == 2


async def test_a_waiter_that_gives_up_leaves_its_turn_to_the_next(
        aiohttp_server: ServerFactory) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.query.get("slow"):
            await release.wait()
        return web.Response(text="ok")

    server = await serve(aiohttp_server, handler)
    http = LeanHttpClient(max_connections=1)
    try:
        slow = asyncio.create_task(post(http, url_of(server, "/?slow=1")))
        await asyncio.sleep(0.05)  # it holds the only connection
        gives_up = asyncio.create_task(post(http, url_of(server, "/")))
        waits = asyncio.create_task(post(http, url_of(server, "/")))
        await asyncio.sleep(0.05)
        assert not gives_up.done() and not waits.done()
        gives_up.cancel()
        release.set()
        assert (await slow).body == b"ok"
        assert (await asyncio.wait_for(waits, STEP_TIMEOUT_S)).body == b"ok"
        with pytest.raises(asyncio.CancelledError):
            await gives_up
        assert (await post(http, url_of(server, "/"))).body == b"ok"  # no slot was lost
    finally:
        await http.close()


async def test_a_waiter_cancelled_just_as_its_turn_came_passes_the_turn_on(
        aiohttp_server: ServerFactory) -> None:
    # The slot is handed over when a connection is released; a waiter cancelled in that same
    # moment (before it ran) must hand it to the next waiter, or the slot is lost for good.
    server = await serve(aiohttp_server, ok_handler)
    http = LeanHttpClient(max_connections=1)
    try:
        holder = http.post(url_of(server, "/"), data=b"", headers={})
        response = await holder.__aenter__()
        await read_all(response)
        woken = asyncio.create_task(post(http, url_of(server, "/")))
        after = asyncio.create_task(post(http, url_of(server, "/")))
        await asyncio.sleep(0.05)  # both wait for the one slot
        await holder.__aexit__(None, None, None)  # the slot goes to `woken`...
        woken.cancel()  # ...which is cancelled before it could run
        assert (await asyncio.wait_for(after, STEP_TIMEOUT_S)).body == b"ok"
        with pytest.raises(asyncio.CancelledError):
            await woken
    finally:
        await http.close()


async def test_an_endless_response_head_is_refused(client: LeanHttpClient) -> None:
    from settings_api.upstream_http import MAX_HEAD_BYTES

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Big: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(2 * MAX_HEAD_BYTES // 4096 + 2):  # a header line that never ends
                writer.write(b"a" * 4096)
                await writer.drain()

    async with RawServer(handler) as server:
        with pytest.raises(aiohttp.ClientPayloadError, match="exceed"):
            await post(client, server.url())


# --------------------------------------------------------------------------- bodies


async def test_chunked_answer_from_aiohttp(aiohttp_server: ServerFactory,
                                           client: LeanHttpClient) -> None:
    parts = [b"alpha ", b"beta ", b"gamma"]

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in parts:
            await response.write(part)
        await response.write_eof()
        return response

    server = await serve(aiohttp_server, handler)
    async with client.post(url_of(server, "/"), data=b"", headers={}) as resp:
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert resp.content_length is None
        assert await read_all(resp) == b"".join(parts)
        peer = int(resp.headers["X-Peer-Port"])
    # The last chunk ended the body: the connection is reused.
    assert (await post(client, url_of(server, "/"))).peer == peer


async def test_chunk_extensions_and_trailers(client: LeanHttpClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                         b"Trailer: X-Sum\r\n\r\n"
                         b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n")
            await writer.drain()

    async with RawServer(handler) as server:
        for _ in range(2):  # the parser is back at a message's start after the trailers
            assert (await post(client, server.url())).body == b"hello world"
        assert server.connections == 1


async def test_sse_events_arrive_as_they_are_sent(aiohttp_server: ServerFactory,
                                                  client: LeanHttpClient) -> None:
    first_received = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: one\n\n")
        # The second event is only sent once the client has shown it holds the first: a
        # client that buffered the body would hang here (and fail on the timeout).
        await wait_for_event(first_received)
        await response.write(b"data: two\n\n")
        await response.write_eof()
        return response

    server = await serve(aiohttp_server, handler)
    chunks: list[bytes] = []
    async with asyncio.timeout(STEP_TIMEOUT_S):
        async with client.post(url_of(server, "/"), data=b"", headers={}) as resp:
            assert resp.content_type == "text/event-stream"
            async for chunk in resp.content.iter_any():
                chunks.append(chunk)
                first_received.set()
    assert chunks[0] == b"data: one\n\n"
    assert b"".join(chunks) == b"data: one\n\ndata: two\n\n"


async def test_body_delimited_by_the_connection_closing(client: LeanHttpClient) -> None:
    pieces = [b"no length, ", b"no chunks, ", b"the end is the close"]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        # the handler returns: RawServer closes the connection (a FIN)

    async with RawServer(handler) as server:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            async with client.post(server.url(), data=b"", headers={}) as resp:
                assert resp.content_length is None
                assert await read_all(resp) == b"".join(pieces)
        # Such a connection cannot carry another request: the next one opens a new one.
        async with client.post(server.url(), data=b"", headers={}) as resp:
            assert await read_all(resp) == b"".join(pieces)
        assert server.connections == 2


async def test_large_body_with_flow_control(aiohttp_server: ServerFactory,
                                            client: LeanHttpClient) -> None:
    body = random.Random(7).randbytes(8 * 1024 * 1024 + 123)

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = len(body)
        await response.prepare(request)
        view = memoryview(body)
        for start in range(0, len(body), 64 * 1024):
            await response.write(view[start:start + 64 * 1024])
        await response.write_eof()
        return response

    server = await serve(aiohttp_server, handler)
    received = bytearray()
    sizes: list[int] = []
    async with asyncio.timeout(STEP_TIMEOUT_S * 2):
        async with client.post(url_of(server, "/"), data=b"", headers={}) as resp:
            assert resp.content_length == len(body)
            async for chunk in resp.content.iter_any():
                if not received:
                    # A slow reader: without flow control all 8 MB would pile up meanwhile
                    # and come out as one huge chunk.
                    await asyncio.sleep(0.2)
                received += chunk
                sizes.append(len(chunk))
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    assert len(received) == len(body)
    assert max(sizes) <= 2 * 1024 * 1024  # the unread buffer stayed near the mark
    # Read to the end: reusable, and reading was resumed for the next answer.
    assert (await post(client, url_of(server, "/"))).body == body


@pytest.mark.parametrize("status", [204, 202])
async def test_no_body_answers_complete_and_keep_the_connection(
        aiohttp_server: ServerFactory, client: LeanHttpClient, status: int) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status)

    server = await serve(aiohttp_server, handler)
    answers = [await post(client, url_of(server, "/")) for _ in range(3)]
    assert [(a.status, a.body) for a in answers] == [(status, b"")] * 3
    assert len({a.peer for a in answers}) == 1


async def test_interim_100_continue_is_skipped(client: LeanHttpClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
            await writer.drain()

    async with RawServer(handler) as server:
        async with client.post(server.url(), data=b"", headers={}) as resp:
            assert resp.status == 200
            assert "X-Interim" not in resp.headers  # the interim answer's headers are dropped
            assert await read_all(resp) == b"final"
        assert (await post(client, server.url())).body == b"final"
        assert server.connections == 1


async def test_delete_sends_no_body(aiohttp_server: ServerFactory,
                                    client: LeanHttpClient) -> None:
    seen: list[tuple[str, str | None, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.method, request.headers.get("Content-Length"),
                     await request.read()))
        return web.Response(status=204 if request.method == "DELETE" else 200)

    server = await serve(aiohttp_server, handler)
    async with client.delete(url_of(server, "/mcp"), headers={"Mcp-Session-Id": "s1"},
                             allow_redirects=False) as resp:
        assert resp.status == 204
        peer = int(resp.headers["X-Peer-Port"])
        assert await read_all(resp) == b""
    answer = await post(client, url_of(server, "/mcp"))
    # An empty POST still says Content-Length: 0; a DELETE says nothing.
    assert seen == [("DELETE", None, b""), ("POST", "0", b"")]
    assert answer.peer == peer


# --------------------------------------------------------------------------- failures


def _answer_then_cut(answer: bytes, *, rst: bool = False) -> RawHandler:
    """A handler that writes ``answer`` and then closes (FIN, or RST once the client has seen
    the first bytes)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        if rst:
            await asyncio.sleep(0.1)  # the client has the head and the first bytes
            reset(writer)

    return handler


@pytest.mark.parametrize("answer, rst", [
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..", False,
                 id="short-content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                 False, id="chunked-without-last-chunk"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..", True,
                 id="reset-mid-body"),
    pytest.param(b"HTTP/1.1 200 OK\r\n\r\nuntil close", True, id="reset-until-close-body"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
                 False, id="malformed-chunk-size"),
])
async def test_body_cut_short_is_a_payload_error(client: LeanHttpClient, answer: bytes,
                                                 rst: bool) -> None:
    async with RawServer(_answer_then_cut(answer, rst=rst)) as server:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            async with client.post(server.url(), data=b"", headers={}) as resp:
                assert resp.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await read_all(resp)
        # The broken connection is not reused.
        assert server.connections == 1
        server.handler = _answer_then_cut(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        assert (await post(client, server.url())).body == b"ok"
        assert server.connections == 2


async def test_close_without_an_answer_is_server_disconnected(client: LeanHttpClient) -> None:
    async with RawServer(_answer_then_cut(b"")) as server:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(client, server.url())


async def test_reset_without_an_answer_is_server_disconnected(client: LeanHttpClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        reset(writer)

    async with RawServer(handler) as server:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(client, server.url())


@pytest.mark.parametrize("answer", [
    pytest.param(b"THIS IS NOT HTTP\r\n\r\n", id="garbage"),
    pytest.param(b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n", id="bad-status"),
    pytest.param(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", id="bad-header"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                 id="conflicting-lengths"),
    pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\n\r\n", id="protocol-switch"),
])
async def test_malformed_answer_is_a_payload_error(client: LeanHttpClient,
                                                   answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(STEP_TIMEOUT_S)  # keep the connection open: the parser must fail

    async with RawServer(handler) as server:
        with pytest.raises(aiohttp.ClientPayloadError):
            await post(client, server.url())


async def test_nothing_listening_is_connection_refused(client: LeanHttpClient) -> None:
    with pytest.raises(ConnectionRefusedError):
        await post(client, f"http://127.0.0.1:{free_port()}/")


async def test_post_message_maps_failures_to_upstream_errors(client: LeanHttpClient) -> None:
    message = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with pytest.raises(UpstreamError) as refused:
        await post_message(client, f"http://127.0.0.1:{free_port()}/", message, mcp_headers({}))
    assert refused.value.reason == "connect"
    async with RawServer(_answer_then_cut(b"")) as server:
        with pytest.raises(UpstreamError) as dropped:
            await post_message(client, server.url(), message, mcp_headers({}))
    assert dropped.value.reason == "connect"


# --------------------------------------------------------------------------- header injection


def _recording(requests: list[RawRequest]) -> RawHandler:
    """A handler that keeps every request it reads and answers each with an empty 200."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            requests.append(request)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    return handler


@pytest.mark.parametrize("headers", [
    {"X-Test": "a\r\nX-Evil: 1"},
    {"X-Test": "a\nX-Evil: 1"},
    {"X-Test": "a\rX-Evil: 1"},
    {"X-Test": "a\x00b"},
    {"X-Evil: 1\r\nX-Test": "a"},
    {"X-Test\n": "a"},
    {"X-\x00Test": "a"},
    {"Authorization": "Bearer t\r\n\r\nGET /admin HTTP/1.1"},
], ids=repr)
async def test_header_injection_is_refused_before_sending(
        client: LeanHttpClient, headers: dict[str, str]) -> None:
    requests: list[RawRequest] = []
    handler = _recording(requests)

    async with RawServer(handler) as server:
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            await post(client, server.url(), headers=headers)
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            async with client.delete(server.url(), headers=headers):
                pass
        assert server.connections == 0  # nothing was sent
        # The client is still fine, and the server sees exactly the one clean request.
        await post(client, server.url(), headers={"X-Test": "clean"})
        await asyncio.sleep(0.05)
    assert [r.headers("X-Test") for r in requests] == [["clean"]]
    assert all(b"X-Evil" not in r.head and b"/admin" not in r.head for r in requests)


async def test_default_header_injection_is_refused() -> None:
    http = LeanHttpClient(headers={"User-Agent": "ua\r\nX-Evil: 1"})
    try:
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            http.post("http://127.0.0.1:1/", data=b"", headers={})
    finally:
        await http.close()


async def test_url_with_raw_line_breaks_cannot_inject(client: LeanHttpClient) -> None:
    requests: list[RawRequest] = []
    handler = _recording(requests)

    async with RawServer(handler) as server:
        await post(client, server.url("/a\r\nX-Evil: 1\r\n\r\nGET /b HTTP/1.1"))
    [request] = requests
    assert request.headers("X-Evil") == []
    # One well-formed request line: method, target without spaces, version.
    method, target, version = request.request_line.split(" ")
    assert (method, version) == ("POST", "HTTP/1.1")
    assert target.startswith("/a")


# --------------------------------------------------------------------------- URLs


async def test_query_string_and_port(aiohttp_server: ServerFactory,
                                     client: LeanHttpClient) -> None:
    seen: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.raw_path, request.headers["Host"]))
        return web.Response()

    server = await serve(aiohttp_server, handler)
    await post(client, url_of(server, "/mcp/x?tenant=a&b=%2F&empty=#fragment"))
    await post(client, url_of(server, ""))  # no path at all: "/"
    assert seen == [("/mcp/x?tenant=a&b=%2F&empty=", f"127.0.0.1:{server.port}"),
                    ("/", f"127.0.0.1:{server.port}")]


async def test_ipv6_host(aiohttp_server: ServerFactory, client: LeanHttpClient) -> None:
    hosts: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hosts.append(request.headers["Host"])
        return web.Response(text="v6")

    server = await serve(aiohttp_server, handler, host="::1")
    assert (await post(client, f"http://[::1]:{server.port}/")).body == b"v6"
    assert hosts == [f"[::1]:{server.port}"]


async def test_non_ascii_path_is_percent_encoded(aiohttp_server: ServerFactory,
                                                 client: LeanHttpClient) -> None:
    # The settings API accepts any non-space upstream URL; aiohttp's client sends non-ASCII
    # as UTF-8 percent escapes, and aiohttp's server answers 400 to raw UTF-8 in the target.
    seen: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.raw_path, request.path))
        return web.Response()

    server = await serve(aiohttp_server, handler)
    answer = await post(client, url_of(server, "/café/%41?q=é"))
    assert answer.status == 200
    assert seen == [("/caf%C3%A9/%41?q=%C3%A9", "/café/A")]


async def test_internationalized_host_goes_out_in_its_ascii_form(
        aiohttp_server: ServerFactory, client: LeanHttpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # As aiohttp's client: the name is resolved, sent in Host and given to TLS as punycode.
    hosts: list[str] = []
    dialled: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hosts.append(request.headers["Host"])
        return web.Response()

    server = await serve(aiohttp_server, handler)
    loop = asyncio.get_running_loop()
    resolve = loop.getaddrinfo

    async def to_the_test_server(host: str, port: int, **kw: Any) -> Any:
        dialled.append(host)
        return await resolve("127.0.0.1", port, **kw)

    monkeypatch.setattr(loop, "getaddrinfo", to_the_test_server)
    assert (await post(client, f"http://Bücher.example:{server.port}/mcp")).status == 200
    assert dialled == ["xn--bcher-kva.example"]
    assert hosts == [f"xn--bcher-kva.example:{server.port}"]
    with pytest.raises(aiohttp.InvalidURL):  # no IDNA form (an empty label)
        client.post("http://bü..example/", data=b"", headers={})


async def test_userinfo_becomes_basic_auth(aiohttp_server: ServerFactory,
                                           client: LeanHttpClient) -> None:
    seen: list[tuple[list[str], str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.headers.getall("Authorization", []), request.headers["Host"]))
        return web.Response()

    server = await serve(aiohttp_server, handler)
    base = f"user:pa%40ss@127.0.0.1:{server.port}/p"
    await post(client, f"http://{base}")
    await post(client, f"http://{base}", headers={"authorization": "Bearer mine"})
    await post(client, f"http://tok@127.0.0.1:{server.port}/p")

    expected = "Basic " + base64.b64encode(b"user:pa@ss").decode()
    assert seen == [
        ([expected], f"127.0.0.1:{server.port}"),  # the user info is not in Host
        (["Bearer mine"], f"127.0.0.1:{server.port}"),  # the caller's wins, alone
        (["Basic " + base64.b64encode(b"tok:").decode()], f"127.0.0.1:{server.port}"),
    ]


@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1/file",
    "ws://127.0.0.1:8080/socket",
    "mailto:someone@example.com",
    "127.0.0.1:8080/no-scheme",
    "/relative/path",
    "http:///no-host",
    "http://127.0.0.1:99999/port-out-of-range",
    "http://127.0.0.1:port/not-a-number",
    "http://bad\x00host/",
    "http://127.0.0.1/nul\x00in-path",
])
async def test_invalid_urls(client: LeanHttpClient, url: str) -> None:
    # aiohttp.InvalidURL is a ClientError: post_message maps it like aiohttp's own.
    with pytest.raises(aiohttp.InvalidURL):
        client.post(url, data=b"", headers={})
    with pytest.raises(aiohttp.InvalidURL):
        client.delete(url, headers={})


# --------------------------------------------------------------------------- close()


async def test_close_closes_idle_connections_and_refuses_new_requests() -> None:
    eof = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        eof.set()  # the client closed its end

    http = LeanHttpClient()
    async with RawServer(handler) as server:
        assert (await post(http, server.url())).body == b"ok"
        await asyncio.sleep(0.05)
        assert not eof.is_set()  # kept alive while the client is open
        await http.close()
        await wait_for_event(eof)
        with pytest.raises(RuntimeError, match="closed"):
            http.post(server.url(), data=b"", headers={})
        with pytest.raises(RuntimeError, match="closed"):
            http.delete(server.url(), headers={})
        assert server.connections == 1


async def test_close_ends_a_body_being_read() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstart")
        await writer.drain()
        await asyncio.sleep(STEP_TIMEOUT_S)

    http = LeanHttpClient()
    async with RawServer(handler) as server, asyncio.timeout(STEP_TIMEOUT_S):
        async with http.post(server.url(), data=b"", headers={}) as resp:
            chunks = resp.content.iter_any()
            assert await anext(chunks) == b"start"
            await http.close()
            with pytest.raises(aiohttp.ClientPayloadError):
                await anext(chunks)


# --------------------------------------------------------------------------- upstream.py


def _rpc_handler(*, sse: bool) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        message = await request.json()
        reply = {"jsonrpc": "2.0", "id": message["id"],
                 "result": {"echo": message["params"], "accept": request.headers["Accept"]}}
        if not sse:
            return web.json_response(reply)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"p": 1}}
        await response.write(b": priming\n\ndata: " + json_bytes(note) + b"\n\n")
        await response.write(b"event: message\ndata: " + json_bytes(reply) + b"\n\n")
        await response.write_eof()
        return response

    return handler


def json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


async def test_post_message_reads_a_json_answer(aiohttp_server: ServerFactory,
                                                client: LeanHttpClient) -> None:
    server = await serve(aiohttp_server, _rpc_handler(sse=False))
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "x"}}
    reply = await post_message(client, url_of(server, "/mcp"), message, mcp_headers({}))
    assert reply.status == 200
    assert reply.message == {"jsonrpc": "2.0", "id": 7, "result": {
        "echo": {"name": "x"}, "accept": "application/json, text/event-stream"}}


async def test_a_body_that_arrived_whole_is_still_bounded(client: LeanHttpClient) -> None:
    # A small answer is usually complete when its head is read, and is taken without
    # iterating; the size bound applies all the same, here with no Content-Length to warn.
    body = b'{"jsonrpc":"2.0","id":7,"result":{"content":[]}}'
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n"
              + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "x"}}

    async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(answer)
            await writer.drain()

    async with RawServer(keep_answering) as server:
        with pytest.raises(UpstreamError) as too_large:
            await post_message(client, server.url(), message, mcp_headers({}),
                               max_body_bytes=len(body) - 1)
        assert too_large.value.reason == "too-large"
        reply = await post_message(client, server.url(), message, mcp_headers({}),
                                   max_body_bytes=len(body))
        assert reply.message == {"jsonrpc": "2.0", "id": 7, "result": {"content": []}}


async def test_post_message_reads_an_sse_answer(aiohttp_server: ServerFactory,
                                               client: LeanHttpClient) -> None:
    server = await serve(aiohttp_server, _rpc_handler(sse=True))
    notes: list[dict[str, Any]] = []

    async def on_message(note: dict[str, Any]) -> None:
        notes.append(note)

    message = {"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {"n": 1}}
    reply = await post_message(client, url_of(server, "/mcp"), message, mcp_headers({}),
                               on_message=on_message)
    assert reply.message is not None
    assert reply.message["result"]["echo"] == {"n": 1}
    assert notes == [{"jsonrpc": "2.0", "method": "notifications/progress",
                      "params": {"p": 1}}]


@pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
async def test_fetch_tool_catalog_over_the_lean_client(
        aiohttp_server: ServerFactory, client: LeanHttpClient, sse: bool) -> None:
    # The whole session: initialize, the initialized notification (202, no body), paged
    # tools/list and the closing DELETE.
    stub = StubUpstream(tools=make_tools(5), page_size=2, sse=sse)
    server = await aiohttp_server(stub.app())
    tools = await fetch_tool_catalog(client, url_of(server, "/mcp"),
                                     {"Authorization": "Bearer k"}, timeout_s=STEP_TIMEOUT_S)
    assert tools == stub.tools
    assert stub.calls["tools/list"] == 3
    assert stub.calls["DELETE"] == 1 and len(stub.ended_sessions) == 1  # the session was closed
    assert not stub.sessions
    assert all(h.get("Authorization") == "Bearer k" for h in stub.received_headers)


# --------------------------------------------------------------------------- TLS


def _self_signed(tmp_path: Path, *, dns: list[str], ips: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate for these names and addresses, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lean-test")])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # Its own issuer, so that a client can trust it as a CA (ssl's cafile=).
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


async def _https_server(aiohttp_server: ServerFactory, tmp_path: Path, *,
                        dns: tuple[str, ...] = ("localhost",),
                        ips: tuple[str, ...] = ("127.0.0.1",)) -> tuple[TestServer, Path]:
    """An HTTPS server with a fresh self-signed certificate; returns it and the certificate."""
    cert_path, key_path = _self_signed(tmp_path, dns=list(dns), ips=list(ips))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=f"secure {request.secure} {request.headers['Host']}")

    return await serve(aiohttp_server, handler, ssl=server_ctx), cert_path


def trusting(cert_path: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert_path))


async def test_tls_with_a_trusted_certificate(aiohttp_server: ServerFactory,
                                              tmp_path: Path) -> None:
    server, cert_path = await _https_server(aiohttp_server, tmp_path)
    http = LeanHttpClient(ssl_context=trusting(cert_path))
    try:
        first = await post(http, f"https://127.0.0.1:{server.port}/")
        again = await post(http, f"https://127.0.0.1:{server.port}/")
        # By name too: the certificate is checked against the host name (SNI, SAN DNS).
        by_name = await post(http, f"https://localhost:{server.port}/")
    finally:
        await http.close()
    assert first.body == f"secure True 127.0.0.1:{server.port}".encode()
    assert first.peer == again.peer  # kept alive over TLS too
    assert by_name.body == f"secure True localhost:{server.port}".encode()


async def test_tls_with_an_unknown_certificate_fails(aiohttp_server: ServerFactory,
                                                     tmp_path: Path) -> None:
    server, _ = await _https_server(aiohttp_server, tmp_path)
    http = LeanHttpClient()  # the system's CAs: none of them signed this certificate
    try:
        with pytest.raises(ssl.SSLError, match="certificate verify failed"):
            await post(http, f"https://127.0.0.1:{server.port}/")
    finally:
        await http.close()


async def test_tls_certificate_for_another_host_fails(aiohttp_server: ServerFactory,
                                                      tmp_path: Path) -> None:
    # A trusted issuer is not enough: the certificate must name the host connected to.
    server, cert_path = await _https_server(aiohttp_server, tmp_path, dns=("example.test",),
                                            ips=())
    http = LeanHttpClient(ssl_context=trusting(cert_path))
    try:
        with pytest.raises(ssl.SSLError, match="certificate verify failed"):
            await post(http, f"https://127.0.0.1:{server.port}/")
    finally:
        await http.close()


# --------------------------------------------------------------------------- uvloop


@contextlib.asynccontextmanager
async def _server_factory() -> AsyncIterator[ServerFactory]:
    """What pytest-aiohttp's aiohttp_server fixture gives, on whatever loop is running."""
    servers: list[TestServer] = []

    async def start(app: web.Application, *, host: str = "127.0.0.1",
                    **kwargs: Any) -> TestServer:
        server = TestServer(app, host=host)
        await server.start_server(**kwargs)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            await server.close()


ON_UVLOOP: list[Callable[..., Awaitable[None]]] = [
    test_post_round_trip,
    test_sequential_requests_reuse_one_connection,
    test_body_left_unread_closes_the_connection,
    test_complete_but_unread_body_over_the_flow_control_mark_does_not_stall,
    test_sse_events_arrive_as_they_are_sent,
    test_body_delimited_by_the_connection_closing,
    test_server_closing_an_idle_connection,
    test_large_body_with_flow_control,
    test_close_without_an_answer_is_server_disconnected,
    test_reset_without_an_answer_is_server_disconnected,
    test_tls_with_a_trusted_certificate,
    test_tls_with_an_unknown_certificate_fails,
    test_fetch_tool_catalog_over_the_lean_client,
]


@pytest.mark.parametrize("test", ON_UVLOOP, ids=lambda test: test.__name__)
def test_on_uvloop(test: Callable[..., Awaitable[None]], tmp_path: Path) -> None:
    # uvloop's transports are not asyncio's (the client has a note on that): run the core
    # tests again on the loop the gateway uses in production.
    async def main() -> None:
        async with _server_factory() as factory:
            http = LeanHttpClient(headers={"User-Agent": DEFAULT_UA})
            # The fixtures the tests ask for (and one case of the parametrized catalog test).
            offered = {"aiohttp_server": factory, "client": http, "tmp_path": tmp_path,
                       "sse": True}
            try:
                await test(**{name: offered[name]
                              for name in inspect.signature(test).parameters})
            finally:
                await http.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        runner.run(main())
