"""`logging/setLevel` (2025 era): the level below which a legacy session's upstream log
messages are not relayed, kept in the replicas' shared session store until the session
expires (gateway/transport/log_delivery.py applies it)."""

from __future__ import annotations

from typing import Any

from gateway.context import LimiterUnavailable, RequestContext
from gateway.transport.log_delivery import invalid_level_message
from mcp_core.errors import INTERNAL_ERROR, INVALID_PARAMS, McpError
from mcp_core.log_levels import is_log_level


async def set_log_level(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    level = params.get("level")
    if not is_log_level(level):
        raise McpError(INVALID_PARAMS, invalid_level_message("params.level"))
    store, session_id, expires_at = ctx.session_levels, ctx.session_id, ctx.session_expires_at
    if store is None or session_id is None or expires_at is None:
        # The transport requires a session for every request but ping and initialize.
        raise McpError(INTERNAL_ERROR, "logging/setLevel needs a session")
    try:
        await store.set_session_log_level(ctx.key.key_id, session_id, level, expires_at)
    except LimiterUnavailable:
        # The spec's answer to a configuration error; the client may send it again.
        raise McpError(
            INTERNAL_ERROR, "the session store is unreachable; send logging/setLevel again"
        ) from None
    return {}
