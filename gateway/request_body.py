"""The MCP endpoints' body stage: a POST body read whole, within a size bound and a deadline,
the request counted first when its body is still arriving (docs/mcp-endpoints.md, checks 7-8).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from settings_api.problems import PayloadTooLarge, RequestTimeout, UnsupportedMediaType


@dataclass(slots=True)
class Body:
    """A POST body as read, refused (if at all) only once the limiter has counted it."""

    raw: bytes | None  # None: longer than `limit` (at most limit+1 bytes were read)
    limit: int
    is_json: bool  # sent as application/json
    counted: bool  # the request was counted before its body arrived

    @property
    def json(self) -> bytes | None:
        """The bytes to parse as JSON-RPC; None when the body will be refused (413, 415)."""
        return self.raw if self.is_json else None

    def refuse_if_unusable(self) -> None:
        """413 past the size bound, then 415 when not application/json."""
        if self.raw is None:
            raise PayloadTooLarge(f"the body exceeds {self.limit} bytes")
        if not self.is_json:
            raise UnsupportedMediaType("send the JSON-RPC message as application/json")


async def read_body(
    request: web.Request, limit: int, timeout_s: float, count: Callable[[], Awaitable[None]]
) -> Body:
    """The body, at most `limit` bytes, within `timeout_s` (else 408). When it has not fully
    arrived, `count` charges the request first: a body that comes slowly, or never, is charged
    all the same. The usual small POST came with its headers and is taken as it is."""
    is_json = request.content_type == "application/json"
    if request.content_length is not None and request.content_length > limit:
        return Body(None, limit, is_json, counted=False)
    content = request.content
    if content.is_eof():
        raw = content.read_nowait()
        return Body(raw if len(raw) <= limit else None, limit, is_json, counted=False)
    await count()
    try:
        async with asyncio.timeout(timeout_s):
            raw_or_none = await _read_bounded(request, limit)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    return Body(raw_or_none, limit, is_json, counted=True)


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The rest of the body, or None when it exceeds `limit` (never more than limit+1 bytes
    read)."""
    content = request.content
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


async def answer_and_close(response: web.Response, request: web.Request) -> web.Response:
    """Send `response`, then close the connection: the rest of an unread body may still come,
    so it cannot carry another request, and aiohttp would otherwise keep it open for its
    lingering time (10 s) reading what comes."""
    response.force_close()  # `Connection: close`
    await response.prepare(request)
    await response.write_eof()
    transport = request.transport
    if transport is not None:
        transport.close()  # once the answer is flushed
    return response
