"""MCP log levels (RFC 5424 severities, least severe first) and the test a relayed
`notifications/message` passes: at or above the level the client asked for."""

from __future__ import annotations

from typing import Any, TypeGuard

__all__ = ["LOG_LEVELS", "is_log_level", "severity_at_least"]

LOG_LEVELS: tuple[str, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
_RANK = {level: rank for rank, level in enumerate(LOG_LEVELS)}


def is_log_level(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value in _RANK


def severity_at_least(level: Any, minimum: str) -> bool:
    """Whether a message at `level` may go to a client that asked for `minimum` and above.
    A level outside the scale ranks as debug: it passes only when the client asked for all."""
    rank = _RANK.get(level, 0) if isinstance(level, str) else 0
    return rank >= _RANK[minimum]
