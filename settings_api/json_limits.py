"""Bounds on the shape of JSON request bodies, shared by both planes.

Python's json parser only gives up at its recursion limit (about 1000 levels, as a
RecursionError), and every layer after it (schema validation, re-serialization, the store)
recurses again: bodies are refused well before that, at `MAX_JSON_DEPTH` levels of nested arrays
and objects. The check is cheap: a body with at most that many brackets in total cannot be too
deep (one `bytes.count` each), and otherwise the parsed value is walked without recursion,
stopping at the first container past the limit.
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


def depth_reason(limit: int = MAX_JSON_DEPTH) -> str:
    return f"the body nests arrays and objects more than {limit} levels deep"
