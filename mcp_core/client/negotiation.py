"""Which era an upstream speaks: the modern one when it answers ``server/discover`` for our
version, else the legacy handshake (the 2026-07-28 transport's backward compatibility)."""

from __future__ import annotations

import asyncio

from mcp_core.client.session import UpstreamSession
from mcp_core.client.stateless import StatelessUpstream
from mcp_core.versions import Era

__all__ = ["PROBE_TIMEOUT_S", "Upstream", "connect"]

Upstream = StatelessUpstream | UpstreamSession
# How long the probe may go unanswered before the handshake is tried (as the official Python
# SDK's client waits); callers with a shorter deadline give it half of theirs.
PROBE_TIMEOUT_S = 10.0


async def connect(
    modern: StatelessUpstream,
    legacy: UpstreamSession,
    *,
    era: Era | None = None,
    probe_timeout_s: float = PROBE_TIMEOUT_S,
) -> Upstream:
    """`modern` when the upstream speaks it, else `legacy` once initialized. `era`, when
    known (remembered from an earlier probe), skips the probe. The caller holds `legacy`, so
    it can end a session that a failure left open."""
    if era is Era.MODERN or (era is None and await _speaks_modern(modern, probe_timeout_s)):
        return modern
    await legacy.initialize()
    return legacy


async def _speaks_modern(modern: StatelessUpstream, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            return await modern.discover()
    except TimeoutError:
        # Some legacy servers leave a request they cannot place unanswered: no modern evidence.
        return False
