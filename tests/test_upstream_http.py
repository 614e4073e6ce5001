"""The one HTTP client of every upstream request (mcp_core/client/http_client.py): an aiohttp
``ClientSession`` made by ``create_upstream_client``, against real in-process servers (aiohttp's,
and plain asyncio ones for answers an HTTP server would never send).

Covered, as the upstream modules use the client:

* the request on the wire: request line, Host, Content-Length, body, the client's User-Agent
  (a tenant's header of the same name replaces it), framing headers of a tenant dropped; the
  response's status, headers, content type and length;
* keep-alive: sequential requests share one connection, concurrent ones do not mix up; no reuse
  after ``Connection: close``, after a body left unread, after a server closes an idle
  connection; a response the client never asked for does not poison the next exchange;
* bodies: chunked (with extensions and trailers), streamed SSE (each event arrives before the
  next is sent), delimited by the connection's close, several MB with flow control, 204/202
  with no body, 100 Continue skipped, compressed ones bounded once decompressed;
* failures (truncated bodies, resets, closes without an answer, malformed HTTP, an endless
  head, nothing listening, a URL that cannot be requested) are all ``connect`` with the neutral
  message; redirects are answered as they are, never followed; no cookies are kept;
* header injection (control characters in tenant header names or values) is refused before
  anything is sent; URL handling (query, port, IPv6, user:password → Basic auth unless the
  tenant sets Authorization, non-ASCII path percent-encoded, IDNA hosts);
* ``post_message`` and ``fetch_tool_catalog`` over the client;
* TLS with a self-signed certificate: trusted through ``ssl_context``, refused by default;
* a core subset again on uvloop, which the gateway runs on in production.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import inspect
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
from mcp_stub import StubUpstream, make_tools
from multidict import CIMultiDict, CIMultiDictProxy
from net import closed_url
from tls import self_signed, trusting

from mcp_core.client import (
    UNREACHABLE_MESSAGE,
    UpstreamError,
    UpstreamSession,
    fetch_tool_catalog,
    mcp_headers,
    post_message,
)
from mcp_core.client.http_client import MAX_HEAD_LINE_BYTES, USER_AGENT
from settings_api.egress import create_upstream_client, parse_networks

ServerFactory = Callable[..., Awaitable[TestServer]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# Long enough for a loaded CI machine, short enough that a hang fails fast instead of stalling.
STEP_TIMEOUT_S = 5.0
LOOPBACK = parse_networks("127.0.0.0/8,::1/128")  # the test servers' addresses
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
NOTE = {"jsonrpc": "2.0", "method": "notifications/initialized"}


# --------------------------------------------------------------------------- helpers


def upstream_client(ssl_context: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
    return create_upstream_client(allowed_networks=LOOPBACK, timeout_s=30, ssl_context=ssl_context)


@pytest.fixture
def client(upstream_http: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """The gateway's upstream client (conftest's), under the name these tests use."""
    return upstream_http


async def connect_failure(
    http: aiohttp.ClientSession, url: str, message: Mapping[str, Any] = PING
) -> UpstreamError:
    """The error post_message gives for `url`: it must be the neutral ``connect`` one."""
    async with asyncio.timeout(STEP_TIMEOUT_S):
        with pytest.raises(UpstreamError) as info:
            await post_message(http, url, message, mcp_headers({}))
    assert info.value.reason == "connect"
    assert info.value.message == UNREACHABLE_MESSAGE
    return info.value


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


async def read_all(response: aiohttp.ClientResponse) -> bytes:
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


async def post(
    client: aiohttp.ClientSession,
    url: str,
    data: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """One POST read to the end, as the upstream modules send it (no redirects followed)."""
    async with asyncio.timeout(STEP_TIMEOUT_S):
        async with client.post(
            url, data=data, headers=headers or {}, allow_redirects=False
        ) as resp:
            return Answer(resp.status, resp.headers, await read_all(resp))


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


async def wait_for_event(event: asyncio.Event) -> None:
    async with asyncio.timeout(STEP_TIMEOUT_S):
        await event.wait()


# --------------------------------------------------------------------------- the exchange


async def test_post_round_trip(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            {
                "method": request.method,
                "path_qs": request.path_qs,
                "version": request.version,
                "headers": request.headers.copy(),
                "body": await request.read(),
            }
        )
        return web.Response(
            status=201,
            body=b'{"answer": 42}',
            headers={"Content-Type": "Application/JSON; charset=utf-8", "X-Reply": "yes"},
        )

    server = await serve(aiohttp_server, handler)
    payload = b'{"question": "life"}'
    async with client.post(
        url_of(server, "/rpc"),
        data=payload,
        headers={"X-Trace": "t-1", "Content-Type": "application/json"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 201
        assert resp.headers["X-Reply"] == "yes"
        assert resp.headers["x-reply"] == "yes"
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
    assert headers.getall("User-Agent") == [USER_AGENT]  # the client's default header
    assert "Cookie" not in headers


async def test_tenant_framing_headers_never_reach_the_wire(client: aiohttp.ClientSession) -> None:
    requests: list[RawRequest] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert request is not None
        requests.append(request)
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with RawServer(handler) as server:
        # Framing is the client's own: a tenant's Host, Content-Length, Transfer-Encoding or
        # Connection must not reach the wire (they could desynchronise the server).
        headers = mcp_headers(
            {
                "X-One": "1",
                "Host": "evil.example",
                "content-length": "999",
                "Transfer-Encoding": "chunked",
                "Connection": "close",
            }
        )
        reply = await post_message(client, server.url("/path?x=1"), NOTE, headers)

    assert (reply.status, reply.message) == (202, None)
    [request] = requests
    assert request.request_line == "POST /path?x=1 HTTP/1.1"
    assert request.headers("Host") == [f"127.0.0.1:{server.port}"]
    assert request.headers("Content-Length") == [str(len(request.body))]
    assert request.headers("Transfer-Encoding") == []
    assert request.headers("Connection") == []
    assert request.headers("X-One") == ["1"]
    assert request.headers("User-Agent") == [USER_AGENT]
    assert json.loads(request.body) == NOTE


async def test_a_tenant_header_replaces_a_default_case_insensitively(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
    seen: list[CIMultiDict[str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.copy())
        return web.Response()

    server = await serve(aiohttp_server, handler)
    await post(client, url_of(server, "/"), headers={"user-agent": "mine/2"})
    await post(client, url_of(server, "/"))

    first, second = seen
    assert first.getall("User-Agent") == ["mine/2"]  # one header, the tenant's
    assert second.getall("User-Agent") == [USER_AGENT]


async def test_response_headers_repeat_and_content_type_defaults(
    client: aiohttp.ClientSession,
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nX-Many: a=1\r\nx-many: b=2\r\nContent-Length: 2\r\n\r\nhi"
        )
        await writer.drain()

    async with RawServer(handler) as server, client.post(server.url(), data=b"") as resp:
        assert resp.headers.getall("X-Many") == ["a=1", "b=2"]
        # No Content-Type: aiohttp's default, which read_rpc_response then rejects.
        assert resp.content_type == "application/octet-stream"
        assert resp.content_length == 2
        assert await read_all(resp) == b"hi"


async def test_cookies_are_never_kept(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
    # Upstreams of different tenants may share a host: a cookie one set must never ride along.
    cookies: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        cookies.append(request.headers.get("Cookie"))
        response = web.Response(text="ok")
        response.set_cookie("upstream_session", "tenant-a-secret")
        return response

    server = await serve(aiohttp_server, handler)
    for _ in range(2):
        await post(client, f"http://localhost:{server.port}/")  # a name: jars skip addresses
    assert cookies == [None, None]


async def test_redirects_are_answered_as_they_are(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
    # Following one could hand a tenant's credentials to another origin.
    paths: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        paths.append(request.path)
        raise web.HTTPFound("/elsewhere")

    server = await serve(aiohttp_server, handler)
    with pytest.raises(UpstreamError) as info:
        await post_message(client, url_of(server, "/mcp"), PING, mcp_headers({}))
    assert (info.value.reason, info.value.status) == ("http-status", 302)
    assert paths == ["/mcp"]


# --------------------------------------------------------------------------- keep-alive


async def test_sequential_requests_reuse_one_connection(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
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
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(random.uniform(0, 0.02))  # answers finish out of order
        return web.Response(body=body[::-1])

    server = await serve(aiohttp_server, handler)
    for _ in range(2):  # the second round runs on the connections the first left idle
        payloads = [f"request-{i}".encode() for i in range(20)]
        answers = await asyncio.gather(*(post(client, url_of(server, "/"), p) for p in payloads))
        assert [a.body for a in answers] == [p[::-1] for p in payloads]


async def test_connection_close_answer_is_not_reused(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
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
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
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
        async with client.post(url_of(server, "/slow"), data=b"") as resp:
            first_peer = int(resp.headers["X-Peer-Port"])
            async for chunk in resp.content.iter_any():
                assert chunk == b"first part"
                break  # leave with the body unfinished

    await wait_for_event(gone)  # the client closed that connection
    answer = await post(client, url_of(server, "/"))
    assert answer.body == b"fine"
    assert answer.peer != first_peer


async def test_unsolicited_bytes_after_an_answer_do_not_poison_the_next_request(
    client: aiohttp.ClientSession,
) -> None:
    # A server that sends more than one answer (the start of a second response, here one that
    # claims a 50-byte body) must not have that junk read as the answer to the next request:
    # the next request goes to a fresh connection. (Bytes a server writes later, on a
    # connection kept idle, are aiohttp's to handle: they can only confuse calls to that same
    # server, each bounded by its deadline.)
    junk = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nsmuggled"
    sent_junk = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            if not sent_junk.is_set():  # the very first request, on any connection
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + junk)
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


async def test_server_closing_an_idle_connection(client: aiohttp.ClientSession) -> None:
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


async def test_an_endless_response_head_is_refused(client: aiohttp.ClientSession) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Big: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(2 * MAX_HEAD_LINE_BYTES // 4096 + 2):  # a line that never ends
                writer.write(b"a" * 4096)
                await writer.drain()
            await asyncio.sleep(STEP_TIMEOUT_S)

    async with RawServer(handler) as server:
        await connect_failure(client, server.url())


async def test_too_many_response_headers_are_refused(client: aiohttp.ClientSession) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
            + b"Content-Length: 0\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(STEP_TIMEOUT_S)

    async with RawServer(handler) as server:
        await connect_failure(client, server.url())


# --------------------------------------------------------------------------- bodies


async def test_chunked_answer_from_aiohttp(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
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
    async with client.post(url_of(server, "/"), data=b"") as resp:
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert resp.content_length is None
        assert await read_all(resp) == b"".join(parts)
        peer = int(resp.headers["X-Peer-Port"])
    # The last chunk ended the body: the connection is reused.
    assert (await post(client, url_of(server, "/"))).peer == peer


async def test_chunk_extensions_and_trailers(client: aiohttp.ClientSession) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                b"Trailer: X-Sum\r\n\r\n"
                b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n"
            )
            await writer.drain()

    async with RawServer(handler) as server:
        for _ in range(2):  # the parser is back at a message's start after the trailers
            assert (await post(client, server.url())).body == b"hello world"
        assert server.connections == 1


async def test_sse_events_arrive_as_they_are_sent(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
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
        async with client.post(url_of(server, "/"), data=b"") as resp:
            assert resp.content_type == "text/event-stream"
            async for chunk in resp.content.iter_any():
                chunks.append(chunk)
                first_received.set()
    assert chunks[0] == b"data: one\n\n"
    assert b"".join(chunks) == b"data: one\n\ndata: two\n\n"


async def test_body_delimited_by_the_connection_closing(client: aiohttp.ClientSession) -> None:
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
        for _ in range(2):  # such a connection cannot carry another request: a new one
            async with asyncio.timeout(STEP_TIMEOUT_S):
                async with client.post(server.url(), data=b"") as resp:
                    assert resp.content_length is None
                    assert await read_all(resp) == b"".join(pieces)
        assert server.connections == 2


async def test_large_body_with_flow_control(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
    body = random.Random(7).randbytes(8 * 1024 * 1024 + 123)

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = len(body)
        await response.prepare(request)
        view = memoryview(body)
        for start in range(0, len(body), 64 * 1024):
            await response.write(view[start : start + 64 * 1024])
        await response.write_eof()
        return response

    server = await serve(aiohttp_server, handler)
    received = bytearray()
    sizes: list[int] = []
    async with asyncio.timeout(STEP_TIMEOUT_S * 2):
        async with client.post(url_of(server, "/"), data=b"") as resp:
            assert resp.content_length == len(body)
            async for chunk in resp.content.iter_any():
                if not received:
                    # A slow reader: without flow control all 8 MB would pile up meanwhile
                    # and come out as one huge chunk.
                    await asyncio.sleep(0.2)
                received += chunk
                sizes.append(len(chunk))
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    assert max(sizes) <= 2 * 1024 * 1024  # the unread buffer stayed near the mark
    # Read to the end: reusable, and reading was resumed for the next answer.
    assert (await post(client, url_of(server, "/"))).body == body


@pytest.mark.parametrize("status", [204, 202])
async def test_no_body_answers_complete_and_keep_the_connection(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession, status: int
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status)

    server = await serve(aiohttp_server, handler)
    answers = [await post(client, url_of(server, "/")) for _ in range(3)]
    assert [(a.status, a.body) for a in answers] == [(status, b"")] * 3
    assert len({a.peer for a in answers}) == 1


async def test_interim_100_continue_is_skipped(client: aiohttp.ClientSession) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(
                b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
            )
            await writer.drain()

    async with RawServer(handler) as server:
        async with client.post(server.url(), data=b"") as resp:
            assert resp.status == 200
            assert "X-Interim" not in resp.headers  # the interim answer's headers are dropped
            assert await read_all(resp) == b"final"
        assert (await post(client, server.url())).body == b"final"
        assert server.connections == 1


async def test_a_compressed_answer_is_bounded_once_decompressed(
    client: aiohttp.ClientSession,
) -> None:
    # A small gzip body can stand for a huge one: the relay limit counts what it decodes to.
    message = {"jsonrpc": "2.0", "id": 1, "result": {"pad": "x" * 100_000}}
    packed = gzip.compress(json.dumps(message).encode())
    assert len(packed) < 2_000

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed) + packed
            )
            await writer.drain()

    async with RawServer(handler) as server:
        reply = await post_message(client, server.url(), PING, mcp_headers({}))
        assert reply.message == message
        with pytest.raises(UpstreamError) as info:
            await post_message(client, server.url(), PING, mcp_headers({}), max_body_bytes=50_000)
    assert info.value.reason == "too-large"


async def test_delete_sends_no_body(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
    seen: list[tuple[str, str | None, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.method, request.headers.get("Content-Length"), await request.read()))
        return web.Response(status=204 if request.method == "DELETE" else 200)

    server = await serve(aiohttp_server, handler)
    async with client.delete(
        url_of(server, "/mcp"), headers={"Mcp-Session-Id": "s1"}, allow_redirects=False
    ) as resp:
        assert resp.status == 204
        peer = int(resp.headers["X-Peer-Port"])
        assert await read_all(resp) == b""
    answer = await post(client, url_of(server, "/mcp"))
    [(delete, delete_length, delete_body), post_seen] = seen
    assert (delete, delete_body) == ("DELETE", b"")
    assert delete_length in (None, "0")
    assert post_seen == ("POST", "0", b"")
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


JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(
    "answer, rst",
    [
        pytest.param(
            JSON_HEAD + b'Content-Length: 100\r\n\r\n{"jsonrpc"', False, id="short-content-length"
        ),
        pytest.param(
            JSON_HEAD + b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n',
            False,
            id="chunked-without-last-chunk",
        ),
        pytest.param(
            JSON_HEAD + b'Content-Length: 100\r\n\r\n{"jsonrpc"', True, id="reset-mid-body"
        ),
        pytest.param(
            JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
            False,
            id="malformed-chunk-size",
        ),
    ],
)
async def test_body_cut_short_is_connect(
    client: aiohttp.ClientSession, answer: bytes, rst: bool
) -> None:
    async with RawServer(_answer_then_cut(answer, rst=rst)) as server:
        await connect_failure(client, server.url())
        # The broken connection is not reused.
        assert server.connections == 1
        server.handler = _answer_then_cut(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        assert (await post(client, server.url())).body == b"ok"
        assert server.connections == 2


async def test_a_body_delimited_by_the_close_and_cut_by_a_reset_is_refused(
    client: aiohttp.ClientSession,
) -> None:
    # Without a length, what came before the reset is all there is: not valid JSON here.
    answer = JSON_HEAD + b'\r\n{"jsonrpc"'
    async with RawServer(_answer_then_cut(answer, rst=True)) as server:
        with pytest.raises(UpstreamError) as info:
            await post_message(client, server.url(), PING, mcp_headers({}))
    assert info.value.reason in ("connect", "invalid-response")


async def test_close_without_an_answer_is_connect(client: aiohttp.ClientSession) -> None:
    async with RawServer(_answer_then_cut(b"")) as server:
        await connect_failure(client, server.url())


async def test_reset_without_an_answer_is_connect(client: aiohttp.ClientSession) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        reset(writer)

    async with RawServer(handler) as server:
        await connect_failure(client, server.url())


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"THIS IS NOT HTTP\r\n\r\n", id="garbage"),
        pytest.param(b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n", id="bad-status"),
        pytest.param(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", id="bad-header"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            id="conflicting-lengths",
        ),
    ],
)
async def test_malformed_answer_is_connect(client: aiohttp.ClientSession, answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(STEP_TIMEOUT_S)  # keep the connection open: the parser must fail

    async with RawServer(handler) as server:
        await connect_failure(client, server.url())


async def test_a_protocol_switch_is_not_an_answer(client: aiohttp.ClientSession) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(STEP_TIMEOUT_S)

    async with RawServer(handler) as server, asyncio.timeout(STEP_TIMEOUT_S):
        with pytest.raises(UpstreamError) as info:
            await post_message(client, server.url(), PING, mcp_headers({}))
    # Not a 2xx answer: nothing is read from the switched connection.
    assert (info.value.reason, info.value.status) == ("http-status", 101)


async def test_nothing_listening_is_connect(client: aiohttp.ClientSession) -> None:
    await connect_failure(client, closed_url("/"))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/file",
        "ws://127.0.0.1:8080/socket",
        "mailto:someone@example.com",
        "127.0.0.1:8080/no-scheme",
        "/relative/path",
        "http:///no-host",
        "http://127.0.0.1:99999/port-out-of-range",
        "http://127.0.0.1:port/not-a-number",
        "http://bad\x00host/",
        "http://bü..example/",  # no IDNA form (an empty label)
    ],
)
async def test_a_url_that_cannot_be_requested_is_connect(
    client: aiohttp.ClientSession, url: str
) -> None:
    await connect_failure(client, url)
    session = UpstreamSession(client, url, {})
    with pytest.raises(UpstreamError) as info:
        await session.initialize()
    assert info.value.reason == "connect"


# --------------------------------------------------------------------------- header injection


def _recording(requests: list[RawRequest]) -> RawHandler:
    """A handler that keeps every request it reads and answers each with an empty 202."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            requests.append(request)
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    return handler


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Test": "a\r\nX-Evil: 1"},
        {"X-Test": "a\nX-Evil: 1"},
        {"X-Test": "a\rX-Evil: 1"},
        {"X-Test": "a\x00b"},
        {"X-Test": "a\x01b"},
        {"X-Evil: 1\r\nX-Test": "a"},
        {"X-Test\n": "a"},
        {"X-\x00Test": "a"},
        {"Authorization": "Bearer t\r\n\r\nGET /admin HTTP/1.1"},
    ],
    ids=repr,
)
async def test_header_injection_is_refused_before_sending(
    client: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    requests: list[RawRequest] = []

    async with RawServer(_recording(requests)) as server:
        with pytest.raises(UpstreamError) as info:
            await UpstreamSession(client, server.url(), headers).initialize()
        assert info.value.reason == "not-allowed"
        assert all(
            value not in info.value.message  # the name may be shown, never a value
            for value in headers.values()
            if len(value) > 1
        )
        assert not any(c in info.value.message for c in "\r\n\x00")
        assert server.connections == 0  # nothing was sent
        # The client is still fine, and the server sees exactly the one clean request.
        await post_message(client, server.url(), NOTE, mcp_headers({"X-Test": "clean"}))
    assert [r.headers("X-Test") for r in requests] == [["clean"]]
    assert all(b"X-Evil" not in r.head and b"/admin" not in r.head for r in requests)


async def test_url_with_raw_line_breaks_cannot_inject(client: aiohttp.ClientSession) -> None:
    requests: list[RawRequest] = []

    async with RawServer(_recording(requests)) as server:
        url = server.url("/a\r\nX-Evil: 1\r\n\r\nGET /b HTTP/1.1")
        with contextlib.suppress(UpstreamError):  # refused, or sent with the bytes escaped
            await post_message(client, url, NOTE, mcp_headers({}))
    for request in requests:
        assert request.headers("X-Evil") == []
        # One well-formed request line: method, target without spaces, version.
        method, target, version = request.request_line.split(" ")
        assert (method, version) == ("POST", "HTTP/1.1")
        assert target.startswith("/a")


# --------------------------------------------------------------------------- URLs


async def test_query_string_and_port(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
    seen: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.raw_path, request.headers["Host"]))
        return web.Response()

    server = await serve(aiohttp_server, handler)
    await post(client, url_of(server, "/mcp/x?tenant=a&b=%2F&empty=#fragment"))
    await post(client, url_of(server, ""))  # no path at all: "/"
    # The URL goes out normalized as yarl does (RFC 3986: "/" needs no escape in a query).
    assert seen == [
        ("/mcp/x?tenant=a&b=/&empty=", f"127.0.0.1:{server.port}"),
        ("/", f"127.0.0.1:{server.port}"),
    ]


async def test_ipv6_host(aiohttp_server: ServerFactory, client: aiohttp.ClientSession) -> None:
    hosts: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hosts.append(request.headers["Host"])
        return web.Response(text="v6")

    server = await serve(aiohttp_server, handler, host="::1")
    assert (await post(client, f"http://[::1]:{server.port}/")).body == b"v6"
    assert hosts == [f"[::1]:{server.port}"]


async def test_non_ascii_path_is_percent_encoded(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
    # The settings API accepts any non-space upstream URL; it goes out as UTF-8 percent
    # escapes (aiohttp's server answers 400 to raw UTF-8 in the target).
    seen: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.raw_path, request.path))
        return web.Response()

    server = await serve(aiohttp_server, handler)
    reply = await post_message(client, url_of(server, "/café/%41?q=é"), NOTE, mcp_headers({}))
    assert reply.status == 200
    # (%41 is an unreserved character's escape: normalized to "A", RFC 3986 6.2.2.2.)
    assert seen == [("/caf%C3%A9/A?q=%C3%A9", "/café/A")]


async def test_internationalized_host_goes_out_in_its_ascii_form(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name is resolved, sent in Host and given to TLS as punycode.
    hosts: list[str] = []
    dialled: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hosts.append(request.headers["Host"])
        return web.Response()

    server = await serve(aiohttp_server, handler)
    loop = asyncio.get_running_loop()
    resolve = loop.getaddrinfo

    async def to_the_test_server(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        dialled.append(host.decode() if isinstance(host, bytes) else host)
        return await resolve("127.0.0.1", port, *args, **kw)

    monkeypatch.setattr(loop, "getaddrinfo", to_the_test_server)
    reply = await post_message(
        client, f"http://Bücher.example:{server.port}/mcp", NOTE, mcp_headers({})
    )
    assert reply.status == 200
    assert set(dialled) == {"xn--bcher-kva.example"}
    assert hosts == [f"xn--bcher-kva.example:{server.port}"]


async def test_userinfo_becomes_basic_auth_unless_the_tenant_sets_authorization(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
    seen: list[tuple[list[str], str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.headers.getall("Authorization", []), request.headers["Host"]))
        return web.Response(status=202)

    server = await serve(aiohttp_server, handler)
    base = f"user:pa%40ss@127.0.0.1:{server.port}/p"
    for url, headers in (
        (f"http://{base}", {}),
        (f"http://{base}", {"authorization": "Bearer mine"}),
        (f"http://tok@127.0.0.1:{server.port}/p", {}),
    ):
        session = UpstreamSession(client, url, headers)
        await session.notify("notifications/initialized")

    expected = "Basic " + base64.b64encode(b"user:pa@ss").decode()
    assert seen == [
        ([expected], f"127.0.0.1:{server.port}"),  # the user info is not in Host
        (["Bearer mine"], f"127.0.0.1:{server.port}"),  # the tenant's wins, alone
        (["Basic " + base64.b64encode(b"tok:").decode()], f"127.0.0.1:{server.port}"),
    ]


# --------------------------------------------------------------------------- the MCP exchange


def _rpc_handler(*, sse: bool) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        message = await request.json()
        reply = {
            "jsonrpc": "2.0",
            "id": message["id"],
            "result": {"echo": message["params"], "accept": request.headers["Accept"]},
        }
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


async def test_post_message_reads_a_json_answer(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
    server = await serve(aiohttp_server, _rpc_handler(sse=False))
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "x"}}
    reply = await post_message(client, url_of(server, "/mcp"), message, mcp_headers({}))
    assert reply.status == 200
    assert reply.message == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"echo": {"name": "x"}, "accept": "application/json, text/event-stream"},
    }


async def test_a_body_without_a_length_is_still_bounded(client: aiohttp.ClientSession) -> None:
    body = b'{"jsonrpc":"2.0","id":7,"result":{"content":[]}}'
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "x"}}

    async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(answer)
            await writer.drain()

    async with RawServer(keep_answering) as server:
        with pytest.raises(UpstreamError) as too_large:
            await post_message(
                client, server.url(), message, mcp_headers({}), max_body_bytes=len(body) - 1
            )
        assert too_large.value.reason == "too-large"
        reply = await post_message(
            client, server.url(), message, mcp_headers({}), max_body_bytes=len(body)
        )
        assert reply.message == {"jsonrpc": "2.0", "id": 7, "result": {"content": []}}


async def test_post_message_reads_an_sse_answer(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession
) -> None:
    server = await serve(aiohttp_server, _rpc_handler(sse=True))
    notes: list[dict[str, Any]] = []

    async def on_message(note: dict[str, Any]) -> None:
        notes.append(note)

    message = {"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {"n": 1}}
    reply = await post_message(
        client, url_of(server, "/mcp"), message, mcp_headers({}), on_message=on_message
    )
    assert reply.message is not None
    assert reply.message["result"]["echo"] == {"n": 1}
    assert notes == [{"jsonrpc": "2.0", "method": "notifications/progress", "params": {"p": 1}}]


@pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
async def test_fetch_tool_catalog_over_the_client(
    aiohttp_server: ServerFactory, client: aiohttp.ClientSession, sse: bool
) -> None:
    # The whole session: initialize, the initialized notification (202, no body), paged
    # tools/list and the closing DELETE.
    stub = StubUpstream(tools=make_tools(5), page_size=2, sse=sse)
    server = await aiohttp_server(stub.app())
    tools = await fetch_tool_catalog(
        client, url_of(server, "/mcp"), {"Authorization": "Bearer k"}, timeout_s=STEP_TIMEOUT_S
    )
    assert tools == stub.tools
    assert stub.calls["tools/list"] == 3
    assert stub.calls["DELETE"] == 1 and len(stub.ended_sessions) == 1  # the session was closed
    assert not stub.sessions
    assert all(h.get("Authorization") == "Bearer k" for h in stub.received_headers)


# --------------------------------------------------------------------------- TLS


async def _https_server(
    aiohttp_server: ServerFactory,
    tmp_path: Path,
    *,
    dns: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
) -> tuple[TestServer, Path]:
    """An HTTPS server with a fresh self-signed certificate; returns it and the certificate."""
    cert_path, key_path = self_signed(tmp_path, dns=list(dns), ips=list(ips))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=f"secure {request.secure} {request.headers['Host']}")

    return await serve(aiohttp_server, handler, ssl=server_ctx), cert_path


async def test_tls_with_a_trusted_certificate(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    server, cert_path = await _https_server(aiohttp_server, tmp_path)
    http = upstream_client(ssl_context=trusting(cert_path))
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


async def test_tls_with_an_unknown_certificate_fails(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    server, _ = await _https_server(aiohttp_server, tmp_path)
    http = upstream_client()  # the system's CAs: none of them signed this certificate
    try:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await post(http, f"https://127.0.0.1:{server.port}/")
        await connect_failure(http, f"https://127.0.0.1:{server.port}/")
    finally:
        await http.close()


async def test_tls_certificate_for_another_host_fails(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    # A trusted issuer is not enough: the certificate must name the host connected to.
    server, cert_path = await _https_server(aiohttp_server, tmp_path, dns=("example.test",), ips=())
    http = upstream_client(ssl_context=trusting(cert_path))
    try:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await post(http, f"https://127.0.0.1:{server.port}/")
    finally:
        await http.close()


# --------------------------------------------------------------------------- uvloop


@contextlib.asynccontextmanager
async def _server_factory() -> AsyncIterator[ServerFactory]:
    """What pytest-aiohttp's aiohttp_server fixture gives, on whatever loop is running."""
    servers: list[TestServer] = []

    async def start(app: web.Application, *, host: str = "127.0.0.1", **kwargs: Any) -> TestServer:
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
    test_sse_events_arrive_as_they_are_sent,
    test_body_delimited_by_the_connection_closing,
    test_server_closing_an_idle_connection,
    test_large_body_with_flow_control,
    test_close_without_an_answer_is_connect,
    test_reset_without_an_answer_is_connect,
    test_header_injection_is_refused_before_sending,
    test_tls_with_a_trusted_certificate,
    test_tls_with_an_unknown_certificate_fails,
    test_fetch_tool_catalog_over_the_client,
]


@pytest.mark.parametrize("test", ON_UVLOOP, ids=lambda test: test.__name__)
def test_on_uvloop(test: Callable[..., Awaitable[None]], tmp_path: Path) -> None:
    # uvloop's transports are not asyncio's: run the core tests again on the loop the gateway
    # uses in production.
    async def main() -> None:
        async with _server_factory() as factory:
            http = upstream_client()
            # The fixtures the tests ask for (and one case of each parametrized test).
            offered = {
                "aiohttp_server": factory,
                "client": http,
                "tmp_path": tmp_path,
                "sse": True,
                "headers": {"X-Test": "a\r\nX-Evil: 1"},
            }
            try:
                await test(**{name: offered[name] for name in inspect.signature(test).parameters})
            finally:
                await http.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        runner.run(main())
