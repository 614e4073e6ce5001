"""What the upstream MCP client needs of an HTTP client (:class:`HttpClient`, the part of
aiohttp's ``ClientSession`` it uses), and the ``ClientSession`` settings every upstream request
goes out with, made by :func:`create_http_client` around the connector the caller chooses.

The client never makes its own session: one per application is made at startup (the egress
policy's connector, settings_api/egress.py) and handed to every upstream exchange. What the
session does for every request, whoever sends it:

- connects through the caller's connector, with no process-wide connection cap: a cap is one
  queue shared by every tenant, where one tenant's slow upstream makes everyone else's calls
  wait. Upstream work is bounded per integration or tenant by the callers' bulkheads instead
  (MCPGW_UPSTREAM_MAX_INFLIGHT), and connections are kept alive;
- keeps no cookies: upstreams of different tenants may share a host, and a cookie one set must
  never ride along on another's calls (nor stand in for the configured credentials);
- bounds every request in time (``ClientTimeout``; callers bound whole operations too) and
  every response head (line and header sizes, header count); bodies are read by the caller
  in bounded chunks (``read_bufsize``), compressed ones counted once decompressed.

Redirects are never followed: callers pass ``allow_redirects=False`` (following one could hand
a tenant's credentials to another origin). The tenant-header policy is applied where request
headers are built, :func:`mcp_core.client.exchange.mcp_headers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from aiohttp import BaseConnector, ClientResponse, ClientSession, ClientTimeout, DummyCookieJar
from multidict import CIMultiDict
from yarl import URL

from mcp_core.version import __version__

__all__ = [
    "MAX_HEADERS",
    "MAX_HEAD_LINE_BYTES",
    "READ_BUFSIZE",
    "USER_AGENT",
    "HttpClient",
    "create_http_client",
    "request_url",
]

USER_AGENT = f"mcp-gateway/{__version__}"
# A response's head: each line (status line or header) at most this long, at most this many
# headers. An upstream cannot make the gateway buffer an endless head.
MAX_HEAD_LINE_BYTES = 8190
MAX_HEADERS = 128
# Body bytes buffered per response before reading from the socket pauses: what one chunk
# handed to the caller holds at most, about twice this.
READ_BUFSIZE = 64 * 1024


class HttpClient(Protocol):
    """The requests the upstream client sends: aiohttp's ``ClientSession`` is one."""

    def post(
        self,
        url: str | URL,
        *,
        data: Any = ...,
        headers: CIMultiDict[str] | Mapping[str, str] | None = ...,
        allow_redirects: bool = ...,
    ) -> AbstractAsyncContextManager[ClientResponse]: ...

    def delete(
        self,
        url: str | URL,
        *,
        headers: CIMultiDict[str] | Mapping[str, str] | None = ...,
        allow_redirects: bool = ...,
    ) -> AbstractAsyncContextManager[ClientResponse]: ...


def create_http_client(connector: BaseConnector, *, timeout_s: float) -> ClientSession:
    """The session for every upstream request, over `connector` (which it owns and closes),
    made inside the running loop; ``timeout_s`` bounds each request."""
    return ClientSession(
        connector=connector,
        timeout=ClientTimeout(total=timeout_s),
        headers={"User-Agent": USER_AGENT},
        cookie_jar=DummyCookieJar(),
        read_bufsize=READ_BUFSIZE,
        max_line_size=MAX_HEAD_LINE_BYTES,
        max_field_size=MAX_HEAD_LINE_BYTES,
        max_headers=MAX_HEADERS,
    )


def request_url(url: str, headers: Mapping[str, str]) -> URL | str:
    """The URL to send requests to. ``user:password@`` in it is sent as HTTP Basic
    authentication (aiohttp does), unless ``headers`` carry an ``Authorization`` of their own,
    which then goes alone. A URL that does not parse is returned as it is: sending to it fails
    as a connection failure."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return url
    if (parsed.raw_user or parsed.raw_password) and any(
        name.lower() == "authorization" for name in headers
    ):
        return parsed.with_user(None)
    return parsed
