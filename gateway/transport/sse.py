"""Server-Sent Events framing for MCP responses (one stream per request, no resumption)."""

from __future__ import annotations

import re
from collections.abc import Mapping

SSE_CONTENT_TYPE = "text/event-stream"
# no-cache: never replay a stream; X-Accel-Buffering: proxies (nginx) must not hold events back.
SSE_HEADERS: Mapping[str, str] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# SSE ends lines at CR, LF or CRLF only (not at U+2028 and friends, which JSON may carry raw).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def event(data: str, name: str = "message") -> bytes:
    """One SSE event carrying `data` (a serialized JSON-RPC message). Events carry no `id`:
    streams are not resumable, so clients have nothing to reconnect with."""
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"event: {name}\n{lines}\n".encode()
