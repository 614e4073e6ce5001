"""Which upstream `notifications/message` reach a client (docs/mcp-endpoints.md, "Log
messages"): the rules of each protocol era, applied per client because the upstream session
behind them is shared by every client of a replica.

- 2026-07-28: only for a request whose `_meta` names `io.modelcontextprotocol/logLevel`, at or
  above that level; none without it. A value outside the RFC 5424 scale is -32602.
- 2025 era: at or above the level the session set with `logging/setLevel`; before any, every
  level (the spec leaves that default to the server: the upstream's messages pass as sent).
"""

from __future__ import annotations

from typing import Any

from gateway.context import Notify
from mcp_core.errors import INVALID_PARAMS, McpError
from mcp_core.log_levels import LOG_LEVELS, is_log_level, severity_at_least
from mcp_core.versions import LOG_LEVEL_META

LEGACY_DEFAULT_LOG_LEVEL = LOG_LEVELS[0]
LOG_MESSAGE = "notifications/message"


def requested_log_level(message: dict[str, Any]) -> str | None:
    """A modern request's log opt-in (its `_meta` was checked to be an object), or None."""
    level = message["params"]["_meta"].get(LOG_LEVEL_META)
    if level is None or is_log_level(level):
        return level
    raise McpError(INVALID_PARAMS, invalid_level_message(f"params._meta[{LOG_LEVEL_META!r}]"))


def invalid_level_message(where: str) -> str:
    return f"{where} must be a log level: {', '.join(LOG_LEVELS)}"


def filtered(notify: Notify, minimum: str | None) -> Notify:
    """`notify`, passing `notifications/message` only at or above `minimum` (none when None);
    other notifications (progress) pass unchanged."""

    async def deliver(notification: dict[str, Any]) -> None:
        if notification.get("method") == LOG_MESSAGE:
            params = notification.get("params")
            level = params.get("level") if isinstance(params, dict) else None
            if minimum is None or not severity_at_least(level, minimum):
                return
        await notify(notification)

    return deliver
