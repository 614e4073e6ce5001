"""The HTTP header names of MCP's Streamable HTTP transport, and the headers a transport owns.

Every module that reads or writes one of these uses the constant, never its own spelling.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

__all__ = [
    "METHOD_HEADER",
    "NAME_FIELDS",
    "NAME_HEADER",
    "PARAM_HEADER_PREFIX",
    "PROTOCOL_VERSION_HEADER",
    "REFUSED_HEADER_NAMES",
    "SESSION_ID_HEADER",
    "X_MCP_HEADER",
    "encode_value",
    "refused_header",
]

SESSION_ID_HEADER = "Mcp-Session-Id"
PROTOCOL_VERSION_HEADER = "MCP-Protocol-Version"
# The modern era's request-metadata headers, mirroring body fields (gateway/transport/headers.py).
METHOD_HEADER = "Mcp-Method"
NAME_HEADER = "Mcp-Name"
PARAM_HEADER_PREFIX = "Mcp-Param-"
# Which body field `Mcp-Name` mirrors, per method.
NAME_FIELDS: Mapping[str, str] = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
}
# The tool input-schema keyword that names a property's Mcp-Param-* header.
X_MCP_HEADER = "x-mcp-header"

# Header names no one else may set on a request: the connection's and the message's framing
# belong to the transport (a tenant Host, Content-Length or Transfer-Encoding is a
# request-smuggling primitive). Content-Type, Accept and the MCP headers are not refused: the
# transport sets them last, over whatever a caller gave.
REFUSED_HEADER_NAMES = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
    }
)
_REFUSED_HEADER_PREFIX = "proxy-"


def refused_header(name: str) -> bool:
    """Whether a caller-supplied header name is one the transport never sends for a caller."""
    lower = name.lower()
    return lower in REFUSED_HEADER_NAMES or lower.startswith(_REFUSED_HEADER_PREFIX)


# A value that can go out as it is: visible ASCII, space and tab, no whitespace at either end,
# and not itself of the sentinel's shape (a server would decode it).
_PLAIN_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?")
_SENTINEL_SHAPE = re.compile(r"=\?base64\?.*\?=", re.DOTALL)


def encode_value(value: str) -> str:
    """`value` as a modern request-metadata header value (`Mcp-Name`, `Mcp-Param-*`): as it is
    when header-safe, else `=?base64?{base64 of its UTF-8}?=`."""
    if _PLAIN_VALUE.fullmatch(value) and not _SENTINEL_SHAPE.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode('ascii')}?="
