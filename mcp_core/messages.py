"""The shape of a JSON-RPC 2.0 message as MCP uses it: what makes one a request, a
notification or a response, and which ids are usable."""

from __future__ import annotations

from typing import Any

__all__ = ["is_request_id", "structure_error", "valid_id_or_none"]


def is_request_id(value: Any) -> bool:
    """MCP ids are strings or integers (never null, never a float)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def structure_error(message: Any) -> str | None:
    """Why `message` is not a JSON-RPC 2.0 request, notification or response; None if it is."""
    if not isinstance(message, dict):
        return "a JSON-RPC message must be an object"
    if message.get("jsonrpc") != "2.0":
        return 'the "jsonrpc" member must be "2.0"'
    if "method" not in message:
        if "id" in message and ("result" in message) != ("error" in message):
            return None  # a response (the client answering us)
        return 'a JSON-RPC request needs a "method"'
    if not isinstance(message["method"], str):
        return 'the "method" member must be a string'
    if "id" in message and not is_request_id(message["id"]):
        return 'the "id" member must be a string or an integer'
    params = message.get("params")
    if params is not None and not isinstance(params, dict | list):
        return 'the "params" member must be an object'
    return None


def valid_id_or_none(message: Any) -> Any:
    """The message's id when it is a usable one (for error answers), else None."""
    if isinstance(message, dict) and is_request_id(message.get("id")):
        return message["id"]
    return None
