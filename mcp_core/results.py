"""CallToolResult objects as this project writes them, so that testUrl (the simulator) and the
demo's callUrl (the example upstream) answer in one shape: `isError` always present, and a
`structuredContent` repeated in a text block the way the MCP SDK's FastMCP servers write it."""

from __future__ import annotations

import json
from typing import Any


def structured_text(value: Any) -> str:
    """The text block's copy of a `structuredContent`: JSON indented by two spaces, non-ASCII
    characters kept (FastMCP's form, so a client that reads only text sees the same)."""
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


def text_only_result(text: str, *, is_error: bool = False) -> dict[str, Any]:
    """A CallToolResult of one text block."""
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


def structured_result(value: Any) -> dict[str, Any]:
    """A successful CallToolResult carrying `value` as `structuredContent` and as text."""
    return {
        "content": [{"type": "text", "text": structured_text(value)}],
        "structuredContent": value,
        "isError": False,
    }
