"""One-time console sign-in links (`mcp-gateway demo`): a random code that stands for a
settings-API token for a few minutes and is spent on first use, so no token is in a URL."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["LINK_TTL_S", "SIGN_IN_LINKS", "SignInLinks"]

LINK_TTL_S = 300.0
_MAX_LINKS = 64  # links are made by the operator's own process; a bound all the same


def _digest(code: str) -> str:
    # Only the digest is kept as the key: a memory dump does not yield usable codes.
    return hashlib.sha256(code.encode()).hexdigest()


@dataclass
class SignInLinks:
    """Codes issued by this process, each redeemable once before it expires."""

    ttl_s: float = LINK_TTL_S
    _pending: dict[str, tuple[str, float]] = field(default_factory=dict)

    def issue(self, token: str) -> str:
        """A fresh code for `token` (path-safe), valid `ttl_s` seconds, once."""
        self._expire()
        while len(self._pending) >= _MAX_LINKS:
            self._pending.pop(next(iter(self._pending)))
        code = secrets.token_urlsafe(32)
        self._pending[_digest(code)] = (token, time.monotonic() + self.ttl_s)
        return code

    def redeem(self, code: str) -> str | None:
        """The token of a live code, spending it; None for an unknown, used or expired one."""
        self._expire()
        found = self._pending.pop(_digest(code), None)
        return found[0] if found else None

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, until) in self._pending.items() if until <= now]:
            del self._pending[key]


SIGN_IN_LINKS: web.AppKey[SignInLinks] = web.AppKey("console_sign_in_links", SignInLinks)
