"""JSON-RPC errors of MCP: the codes, the one error type (`McpError`), its wire form, and the
HTTP status each answer gets.

Transport checks, methods and executors raise `McpError` (meaning); this module decides what it
looks like on the wire, per protocol era: the modern transport (2026-07-28) gives protocol
errors their own HTTP statuses, the legacy transports (2024-11-05 … 2025-11-25) answer JSON-RPC
errors with 200 except for messages that are not JSON-RPC at all.
"""

from __future__ import annotations

import math
from typing import Any

from mcp_core.versions import Era

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022
# An unknown session, as the TypeScript MCP SDK's server answers it (the gateway and the Python
# SDK answer INVALID_REQUEST; the example upstream answers this).
SESSION_NOT_FOUND = -32001
# A request past the key's rate limit (a `tools/call` gets an `isError` result instead, see
# `rate_limited_answer`); an implementation-defined server error, "429" in its last digits.
RATE_LIMITED = -32029

# Where a rate-limited `tools/call` result says, machine-readably, how long to wait.
RATE_LIMIT_META = "io.mcpgateway/rateLimit"


_MODERN_STATUS: dict[int, int] = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_REQUIRED_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}
_LEGACY_STATUS: dict[int, int] = {PARSE_ERROR: 400, INVALID_REQUEST: 400}


class McpError(Exception):
    """A request answered with a JSON-RPC error (`data` omitted when None).

    `http_status` overrides the era's status for the code (e.g. 404 for an unknown legacy
    session); it applies to the transport's own checks: an error raised by a method or an
    executor is one member of a JSON-RPC answer and always gets its era's status."""

    def __init__(
        self, code: int, message: str, data: Any = None, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.http_status = http_status

    def response(self, request_id: Any) -> dict[str, Any]:
        """This error as the response object to the request `request_id`."""
        return error_response(request_id, self.code, self.message, self.data)


def error_response(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """A JSON-RPC error response object (`request_id` None when it could not be read; `data`
    omitted when None)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def rate_limited_response(request_id: Any, retry_after_s: float) -> dict[str, Any]:
    """The -32029 answer of a request refused by the rate limit (it was not run)."""
    data = retry_data(retry_after_s)
    return error_response(
        request_id,
        RATE_LIMITED,
        f"Rate limit exceeded: this message was not run; retry in {data['retryAfterSeconds']} s",
        data,
    )


def rate_limited_answer(
    method: str, request_id: Any, retry_after_s: float, era: Era
) -> dict[str, Any]:
    """The answer of a JSON-RPC request refused by the rate limit: for `tools/call` a result
    with `isError: true` (agents hand those to the model, which can wait and retry), for
    anything else the -32029 error."""
    if method != "tools/call":
        return rate_limited_response(request_id, retry_after_s)
    data = retry_data(retry_after_s)
    text = (
        "Rate limit exceeded: the tool was not run. "
        f"Retry in {data['retryAfterSeconds']} s ({data['retryAfterMs']} ms)."
    )
    result: dict[str, Any] = {
        "content": [{"type": "text", "text": text}],
        "isError": True,
        "_meta": {RATE_LIMIT_META: {"code": RATE_LIMITED, **data}},
    }
    if era is Era.MODERN:
        result["resultType"] = "complete"
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def retry_data(retry_after_s: float) -> dict[str, int]:
    """How long to wait: whole seconds as in `Retry-After`, and milliseconds (both at least 1)."""
    return {
        "retryAfterMs": max(1, math.ceil(retry_after_s * 1000)),
        "retryAfterSeconds": max(1, math.ceil(retry_after_s)),
    }


def status_of(response: dict[str, Any], era: Era) -> int:
    """The HTTP status for a single JSON-RPC response object in `era`."""
    error = response.get("error")
    if error is None:
        return 200
    table = _MODERN_STATUS if era is Era.MODERN else _LEGACY_STATUS
    return table.get(error.get("code"), 200)
