"""The one HTTP client of every upstream request (catalog reads and callUrl's calls alike):
an aiohttp ``ClientSession`` made by :func:`create_upstream_client`, one per application.

What it does for every request, whoever sends it:

- connects only where the egress policy allows (its connector checks each resolved address,
  :meth:`settings_api.egress.EgressPolicy.connector`), with no process-wide connection cap: a
  cap is one queue shared by every tenant, where one tenant's slow upstream makes everyone
  else's calls wait. Upstream work is bounded per integration or tenant by the callers'
  bulkheads instead (MCPGW_UPSTREAM_MAX_INFLIGHT), and connections are kept alive;
- keeps no cookies: upstreams of different tenants may share a host, and a cookie one set must
  never ride along on another's calls (nor stand in for the configured credentials);
- bounds every request in time (``ClientTimeout``; callers bound whole operations too) and
  every response head (line and header sizes, header count); bodies are read by the caller
  in bounded chunks (``read_bufsize``), compressed ones counted once decompressed;
- verifies TLS with the system's certificates.

Redirects are never followed: callers pass ``allow_redirects=False`` (following one could hand
a tenant's credentials to another origin). The tenant-header policy is applied where request
headers are built, :func:`settings_api.upstream.exchange.mcp_headers`.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping

from aiohttp import ClientSession, ClientTimeout, DummyCookieJar
from yarl import URL

from settings_api import __version__
from settings_api.egress import EgressPolicy, Network

__all__ = [
    "MAX_HEADERS",
    "MAX_HEAD_LINE_BYTES",
    "READ_BUFSIZE",
    "USER_AGENT",
    "create_upstream_client",
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


def create_upstream_client(
    *,
    allowed_networks: Iterable[Network] = (),
    timeout_s: float,
    ssl_context: ssl.SSLContext | None = None,
) -> ClientSession:
    """The client for every upstream request, made inside the running loop; ``ssl_context``
    replaces the system's certificates (tests), ``timeout_s`` bounds each request."""
    policy = EgressPolicy(tuple(allowed_networks))
    return ClientSession(
        connector=policy.connector(ssl=ssl_context if ssl_context is not None else True),
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
