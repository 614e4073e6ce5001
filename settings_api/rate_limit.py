"""The settings API's per-token rate limit and its failed-auth throttle, as interfaces.

`settings_api/` never imports `gateway/`: the process that composes the planes
(`gateway/settings_limits.py`) puts a `TokenLimiter` and an `AuthFailures` into the app. Without
them (the settings app on its own) nothing is limited.

The bucket key is a digest of who the token speaks for: its issuer, subject and tenant grant,
not the token itself. Re-minting a token for the same subject and grant (a new `exp` or `jti`)
therefore lands in the same bucket, so minting cannot buy a fresh burst; tokens of different
subjects, issuers or grants never share one, so one tenant's traffic cannot use up another's.
The raw token is never stored: only this digest reaches the limiter (and Redis).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Protocol

from aiohttp import web

from settings_api.http import SETTINGS, client_address
from settings_api.jwt_auth import Principal
from settings_api.problems import AuthThrottled, TooManyRequests


class Verdict(Protocol):
    """A rate-limit decision (the gateway's `Decision` fits)."""

    @property
    def allowed(self) -> bool: ...
    @property
    def limit(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def reset_s(self) -> float: ...
    @property
    def retry_after_s(self) -> float: ...


class TokenLimiter(Protocol):
    """One token bucket per key. Raises a `Problem` (503) when it cannot decide."""

    async def check(self, key: str) -> Verdict: ...


class AuthFailures(Protocol):
    """Failed authentications counted per client address (the gateway's
    `AuthFailureThrottle` fits)."""

    def retry_after(self, address: str | None) -> float | None: ...

    async def failed(self, address: str | None) -> None: ...


TOKEN_LIMITER: web.AppKey[TokenLimiter] = web.AppKey("settings_token_limiter")
AUTH_FAILURES: web.AppKey[AuthFailures] = web.AppKey("settings_auth_failures")


def bucket_key(principal: Principal) -> str:
    """The digest of (issuer, subject, tenant grant) that names the token's bucket."""
    grant = ["*"] if principal.tenants is None else sorted(principal.tenants)
    identity = json.dumps([principal.issuer or "", principal.subject, grant], separators=(",", ":"))
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def refuse_if_throttled(request: web.Request) -> None:
    """429 `auth-throttled` when the client's address failed authentication too often."""
    throttle = request.app.get(AUTH_FAILURES)
    if throttle is None:
        return
    wait = throttle.retry_after(_address(request))
    if wait is not None:
        raise AuthThrottled(wait)


async def count_failure(request: web.Request) -> None:
    """Count a failed authentication against the client's address."""
    throttle = request.app.get(AUTH_FAILURES)
    if throttle is not None:
        await throttle.failed(_address(request))


def _address(request: web.Request) -> str | None:
    settings = request.app.get(SETTINGS)
    return client_address(request, settings.trust_forwarded if settings else False)


async def admit(request: web.Request, principal: Principal) -> dict[str, str]:
    """Charge the token's bucket: its `RateLimit-*` headers, or 429 (with them and
    `Retry-After`) when the bucket is empty."""
    limiter = request.app.get(TOKEN_LIMITER)
    if limiter is None:
        return {}
    verdict = await limiter.check(bucket_key(principal))
    headers = {
        "RateLimit-Limit": str(verdict.limit),
        "RateLimit-Remaining": str(max(0, verdict.remaining)),
        "RateLimit-Reset": str(max(0, math.ceil(verdict.reset_s))),
    }
    if not verdict.allowed:
        retry_after = max(1, math.ceil(verdict.retry_after_s))
        problem = TooManyRequests(
            f"rate limit exceeded for this token; retry in {retry_after} s",
            retry_after_s=retry_after,
        )
        problem.headers.update(headers)
        raise problem
    return headers
