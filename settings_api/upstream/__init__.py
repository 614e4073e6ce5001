"""MCP client for upstream servers (Streamable HTTP transport, legacy protocol era).

The control plane reads an upstream's tool catalog with :func:`fetch_tool_catalog`; the data
plane proxies ``tools/call`` over :class:`UpstreamSession`. Both send every request through
the one HTTP client :func:`create_upstream_client` makes. Modules:

- ``client``: that HTTP client (aiohttp), and the URL requests go to;
- ``exchange``: one JSON-RPC exchange: the request's headers (the tenant-header policy), the
  POST, the answer read as JSON or SSE within size and depth bounds;
- ``session``: an MCP session: initialize, the session id, tools/list, DELETE;
- ``catalog``: a whole catalog read within one deadline;
- ``errors``: :class:`UpstreamError` and its reasons (secrets scrubbed from
  upstream text passed on.

Tenant header values and URL credentials are secrets: their values never go into exception
messages or logs.
"""

from settings_api.upstream.catalog import fetch_tool_catalog
from settings_api.upstream.client import create_upstream_client
from settings_api.upstream.errors import UNREACHABLE_MESSAGE, UPSTREAM_ERROR_REASONS, UpstreamError
from settings_api.upstream.exchange import (
    DEFAULT_MAX_BODY_BYTES,
    MessageHandler,
    RpcReply,
    mcp_headers,
    post_message,
    read_body_limited,
    read_rpc_response,
    result_of,
)
from settings_api.upstream.session import (
    LATEST_PROTOCOL_VERSION,
    SUPPORTED_PROTOCOL_VERSIONS,
    UpstreamSession,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "LATEST_PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "UNREACHABLE_MESSAGE",
    "UPSTREAM_ERROR_REASONS",
    "MessageHandler",
    "RpcReply",
    "UpstreamError",
    "UpstreamSession",
    "create_upstream_client",
    "fetch_tool_catalog",
    "mcp_headers",
    "post_message",
    "read_body_limited",
    "read_rpc_response",
    "result_of",
]
