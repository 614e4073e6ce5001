"""Bounds on the shape of JSON: what clients send and what upstream servers answer.

Python's json parser only gives up at its recursion limit (about 1000 levels, as a
RecursionError), orjson's encoder at 255 (falling back to the standard library's, which
recurses again), and every layer after the parser (schema validation, re-serialization, the
store) recurses too: JSON is refused well before that, at `MAX_JSON_DEPTH` levels of nested
arrays and objects. That holds for what clients send and for what upstream MCP servers answer
(tool results, catalogs, SSE events), which are just as untrusted. The check is cheap: a text
with at most that many brackets in total cannot be too deep (one `bytes.count` each), and
otherwise the parsed value is walked without recursion, stopping at the first container past
the limit.
"""

from __future__ import annotations

from typing import Any

MAX_JSON_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH, raw: bytes | None = None) -> bool:
    """Whether `value` nests arrays and objects more than `limit` levels deep (`[]` is one
    level, `[[]]` two). `raw`, the bytes `value` was parsed from, enables the fast path."""
    if raw is not None and raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def depth_reason(limit: int = MAX_JSON_DEPTH, what: str = "the body") -> str:
    """Why JSON was refused, naming `what` was too deep."""
    return f"{what} nests arrays and objects more than {limit} levels deep"
