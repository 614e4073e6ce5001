"""Bounds on what one MCP POST may carry (docs/mcp-endpoints.md, "Limits").

The body size (`MCPGW_MAX_BODY_BYTES`, 413) is checked by the endpoint while reading; these
bound the shape of what was read, each answered with its own JSON-RPC error:

- nesting deeper than `MAX_JSON_DEPTH` (64, mcp_core.json_limits) levels → -32700, HTTP 400;
- a batch of more than `MAX_BATCH_MESSAGES` (50) messages → -32600, HTTP 400;
- `tools/call` arguments nested deeper than `MAX_TOOL_ARGUMENTS_DEPTH` (32) levels, or larger
  than `MAX_TOOL_ARGUMENTS_BYTES` (512 KiB) as JSON → -32602 (HTTP 400 in the modern era, 200
  in the legacy ones, like every invalid-params error).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from mcp_core.errors import INVALID_PARAMS, McpError
from mcp_core.json_limits import too_deep

__all__ = [
    "MAX_BATCH_MESSAGES",
    "MAX_TOOL_ARGUMENTS_BYTES",
    "MAX_TOOL_ARGUMENTS_DEPTH",
    "check_tool_arguments",
]

MAX_BATCH_MESSAGES = 50
MAX_TOOL_ARGUMENTS_DEPTH = 32
MAX_TOOL_ARGUMENTS_BYTES = 512 * 1024


def _json_size(value: Any) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:  # what orjson refuses (big ints, lone surrogates): measure it slowly
        return len(
            json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
                "utf-8", "surrogatepass"
            )
        )


def check_tool_arguments(arguments: dict[str, Any]) -> None:
    """Raise -32602 when `tools/call` arguments exceed the depth or size bound."""
    if too_deep(arguments, MAX_TOOL_ARGUMENTS_DEPTH):
        raise McpError(
            INVALID_PARAMS,
            "Invalid params: params.arguments nests arrays and "
            f"objects more than {MAX_TOOL_ARGUMENTS_DEPTH} levels deep",
            {"limit": MAX_TOOL_ARGUMENTS_DEPTH},
        )
    size = _json_size(arguments)
    if size > MAX_TOOL_ARGUMENTS_BYTES:
        raise McpError(
            INVALID_PARAMS,
            "Invalid params: params.arguments is larger than "
            f"{MAX_TOOL_ARGUMENTS_BYTES} bytes as JSON",
            {"limit": MAX_TOOL_ARGUMENTS_BYTES},
        )
