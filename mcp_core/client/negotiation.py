"""Which era an upstream speaks: the modern one when it answers ``server/discover`` for our
version, else the legacy handshake (the 2026-07-28 transport's backward compatibility)."""

from __future__ import annotations

from mcp_core.client.session import UpstreamSession
from mcp_core.client.stateless import StatelessUpstream
from mcp_core.versions import Era

__all__ = ["Upstream", "connect"]

Upstream = StatelessUpstream | UpstreamSession


async def connect(
    modern: StatelessUpstream, legacy: UpstreamSession, *, era: Era | None = None
) -> Upstream:
    """`modern` when the upstream speaks it, else `legacy` once initialized. `era`, when
    known (remembered from an earlier probe), skips the probe. The caller holds `legacy`, so
    it can end a session that a failure left open."""
    if era is Era.MODERN or (era is None and await modern.discover()):
        return modern
    await legacy.initialize()
    return legacy
