"""The data plane's per-app state, built in its cleanup_ctx (gateway/server.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from gateway.context import (
    Endpoint,
    IntegrationView,
    KeyEntry,
    RateLimiter,
    SessionStore,
    ToolExecutor,
)
from gateway.key_views import KeyViews
from gateway.redis_clients import RedisClient

if TYPE_CHECKING:
    from gateway.call_log.buffer import CallBuffer
    from gateway.ratelimit.auth_failures import AuthFailureThrottle


class AuthFailure(Exception):
    """The presented key or access token is not usable; `reason` is one of missing, malformed,
    unknown, revoked, expired, wrong-resource (the endpoint answers 401 with it; nothing else
    decides these)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Resolver(Protocol):
    """Key and integration lookups, answered from the per-replica cache when warm."""

    async def authenticate(self, raw_key: str | None) -> KeyEntry:
        """The live key `raw_key` names (never a revoked or expired one), or `AuthFailure`:
        missing (None or empty), malformed (format checked before any lookup), unknown,
        revoked or expired."""
        ...

    async def authenticate_token(self, raw_token: str, resource: str) -> KeyEntry:
        """The live API key that approved the OAuth access token `raw_token` (which has the
        access-token shape), or `AuthFailure`: unknown, revoked (the token or its key),
        expired (the token or its key), or wrong-resource (issued for another URL than
        `resource`)."""
        ...

    async def integration(self, tenant: str, integration: str) -> IntegrationView | None:
        """The integration's data-plane view; None when it does not exist."""
        ...


@dataclass(slots=True)
class GatewayState:
    resolver: Resolver
    limiter: RateLimiter
    sessions: SessionStore  # ended legacy sessions and their log levels
    executors: Mapping[Endpoint, ToolExecutor]
    # Failed-auth throttling per client address; None: no throttling.
    auth_throttle: AuthFailureThrottle | None = None
    # Where each tools/call is recorded for the call log; None: not recorded.
    calls: CallBuffer | None = None
    # What each key sees of an integration (keys narrowed to some tools).
    key_views: KeyViews = field(default_factory=KeyViews)


GATEWAY: web.AppKey[GatewayState] = web.AppKey("gateway", GatewayState)
REDIS: web.AppKey[RedisClient] = web.AppKey("redis")
# The rate limiter's own client: the same server, set up for the limiter
# (gateway/redis_clients.py, `limiter_options`, says how and why).
LIMITER_REDIS: web.AppKey[RedisClient] = web.AppKey("limiter_redis")


def deployment_tag(database_url: str) -> str:
    """A short tag of the store a deployment uses (credentials left out), for its Redis key
    prefixes: replicas of one deployment share counts; other deployments on the same Redis
    (staging, tests) do not."""
    parts = urlsplit(database_url)
    where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    return hashlib.sha256(where.encode()).hexdigest()[:12]
