"""Every tool of an upstream, read page by page through `tools/list` (either era)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mcp_core.client.errors import UpstreamError, quote

__all__ = ["Request", "list_all_tools"]

# Sends one request and returns its result (raising ``jsonrpc-error`` on an error response).
Request = Callable[[str, Mapping[str, Any] | None], Awaitable[dict[str, Any]]]


async def list_all_tools(request: Request, *, max_pages: int = 100) -> list[dict[str, Any]]:
    """Every tool of the upstream `request` talks to, following ``nextCursor``, in the
    upstream's order."""
    tools: list[dict[str, Any]] = []
    names: set[str] = set()
    seen_cursors: set[str] = set()
    cursor: str | None = None
    for _ in range(max_pages):
        result = await request("tools/list", {"cursor": cursor} if cursor is not None else None)
        page = result.get("tools")
        if not isinstance(page, list):
            raise UpstreamError("invalid-response", "upstream tools/list result lacks tools")
        for tool in page:
            name = tool.get("name") if isinstance(tool, dict) else None
            if not isinstance(name, str) or not name:
                raise UpstreamError("invalid-response", "upstream tool without a string name")
            if name in names:
                raise UpstreamError("invalid-response", f"upstream lists tool {quote(name)} twice")
            names.add(name)
            tools.append(tool)
        next_cursor = result.get("nextCursor")
        # "" is treated as "no more pages": some servers serialise an absent cursor so.
        if next_cursor is None or next_cursor == "":
            return tools
        if not isinstance(next_cursor, str):
            raise UpstreamError("invalid-response", "upstream nextCursor is not a string")
        if next_cursor in seen_cursors:
            # A cursor seen before would make us loop until max_pages for nothing.
            raise UpstreamError("invalid-response", "upstream repeated a tools/list cursor")
        seen_cursors.add(next_cursor)
        cursor = next_cursor
    raise UpstreamError("too-many-pages", f"upstream tools/list has more than {max_pages} pages")
