"""Types the data plane's stages share: what auth resolved, what the limiter decided, and the
seam behind which `tools/call` runs (upstream proxy on callUrl, simulator on testUrl).

Stages, run by gateway/endpoint.py: auth (gateway/cache.py decides the key) → limit
(gateway/ratelimit/) and body (gateway/request_body.py) → transport and dispatch
(gateway/transport/, gateway/dispatch.py) → executor (gateway/executors/).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from mcp_core.versions import Era
from settings_api.problems import ServiceUnavailable
from simulator import Fixture

LIMITER_RETRY_AFTER_S = 2  # the Retry-After of a 503 while the limiter's Redis is unreachable


class Endpoint(enum.StrEnum):
    CALL = "call"  # callUrl: tools/call proxied to the upstream
    TEST = "test"  # testUrl: tools/call answered by the simulator


# callUrl and testUrl, below MCPGW_PUBLIC_URL: this pattern followed by an `Endpoint` value.
MCP_PATH = "/v1/tenants/{tenant}/integrations/{integration}/mcp:"


def mcp_path(tenant: str, integration: str, endpoint: Endpoint) -> str:
    """The path of an integration's callUrl or testUrl."""
    return MCP_PATH.format(tenant=tenant, integration=integration) + endpoint.value


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """What a presented API key resolved to (cached per replica). Its end is checked against
    the clock on every request: `revoked_at` may lie ahead (a rotation's grace period), so a
    key stops at that time on every replica without any message."""

    key_id: str
    tenant_id: str
    integration_id: str
    scope: str
    revoked_at: int | None = None  # epoch ms
    expires_at: int | None = None  # epoch ms
    # The tools this key reaches (intersected with the exposed ones); None: every exposed tool.
    tool_ids: frozenset[str] | None = None

    def refusal(self, now: int) -> str | None:
        """Why the key no longer opens anything at `now`: "revoked", "expired", or None."""
        if self.revoked_at is not None and now >= self.revoked_at:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return None


@dataclass(frozen=True, slots=True)
class IntegrationView:
    """Everything the data plane needs about one integration, loaded once and cached."""

    tenant_id: str
    integration_id: str
    name: str
    enabled: bool
    description: str | None
    config_id: str | None
    upstream_url: str | None = field(repr=False)  # credentials included
    upstream_headers: Mapping[str, str] = field(repr=False)
    # Exposed tools only, in a stable order (the order of the settings' exposedToolIds).
    tools: tuple[dict[str, Any], ...] = ()
    tools_by_name: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    fixtures_version: int = 0
    # Scripted simulator answers by tool name (testUrl), parsed once when the view is loaded.
    fixtures: Mapping[str, Fixture] = field(default_factory=dict)
    # Why the bound config's upstream header values could not be decrypted (upstream_headers
    # is then empty): callUrl's tools/call fails with this cause instead of calling upstream.
    secrets_error: str | None = None


# A sink for JSON-RPC notifications that belong to the request being served (progress,
# log messages); None when the client cannot receive them (it did not accept SSE).
Notify = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(slots=True, kw_only=True)
class RequestContext:
    """One MCP request after auth: passed to JSON-RPC methods as jsonrpcserver's context."""

    key: KeyEntry
    integration: IntegrationView
    endpoint: Endpoint
    executor: ToolExecutor  # where this endpoint's tools/call goes
    era: Era
    protocol_version: str
    request: web.Request
    session_id: str | None = None
    simulator_seed: str | None = None
    notify: Notify | None = None
    # The least severe `notifications/message` level relayed to this client; None: none.
    log_level: str | None = None
    # Where `logging/setLevel` keeps the session's level, and when the session expires.
    session_levels: SessionLogLevels | None = None
    session_expires_at: float | None = None


class ToolExecutor(Protocol):
    """Where tools/call goes. The tool is already known to be exposed."""

    async def call_tool(
        self,
        ctx: RequestContext,
        tool: Mapping[str, Any],
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """Return a CallToolResult object, or raise `mcp_core.errors.McpError`."""
        ...


# Not frozen, like the other per-request values (EraChoice, Inbound): a frozen dataclass's
# __init__ sets each field through object.__setattr__, twice the cost, paid on every request.
# Nothing changes one after it is made.
@dataclass(slots=True)
class Decision:
    """A rate-limit verdict; the figures describe the tighter of the key's buckets."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # seconds until the bucket is full again
    retry_after_s: float  # 0 when allowed


class LimiterUnavailable(ServiceUnavailable):
    """Redis is unreachable and the failure mode is `closed`: the request is refused with this
    503, on the MCP endpoints and the settings API alike (no layer converts it)."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail or "the rate limiter is unreachable; try again",
            retry_after_s=LIMITER_RETRY_AFTER_S,
        )


class Charge(enum.StrEnum):
    """Which of a key's buckets one check takes a token from."""

    REQUEST = "request"  # any MCP message: the request bucket
    BOTH = "both"  # a tools/call not counted yet: the request and the tools/call bucket
    # A tools/call whose request was already counted (when its POST started, before its body
    # arrived): the tools/call bucket only.
    CALL = "call"


class RateLimiter(Protocol):
    """Per-key token buckets: tools/call and all requests."""

    async def check(self, key_id: str, *, tools_call: bool) -> Decision: ...

    async def check_many(self, key_id: str, charges: Sequence[Charge]) -> list[Decision]:
        """One decision per charge, in order, each as its own check at the same instant
        (one round trip): a JSON-RPC batch's members."""
        ...

    async def close(self) -> None: ...


class SessionDenylist(Protocol):
    """Legacy sessions ended by DELETE, denied on every replica until they expire. (The
    limiters implement it too: on Redis a lookup made beside a check shares its round trip.)"""

    async def session_ended(self, key_id: str, session_id: str) -> bool: ...

    async def end_session(self, key_id: str, session_id: str, expires_at_s: float) -> None:
        """Deny `session_id` until `expires_at_s` (Unix seconds)."""
        ...


class SessionLogLevels(Protocol):
    """The `logging/setLevel` level of each legacy session, shared by every replica until the
    session expires (the signed id cannot carry it: it is minted before the client asks)."""

    async def session_log_level(self, key_id: str, session_id: str) -> str | None:
        """The level the session set; None when it never sent `logging/setLevel`."""
        ...

    async def set_session_log_level(
        self, key_id: str, session_id: str, level: str, expires_at_s: float
    ) -> None:
        """Keep `level` for `session_id` until `expires_at_s` (Unix seconds)."""
        ...


class SessionStore(SessionDenylist, SessionLogLevels, Protocol):
    """What the replicas share about legacy sessions: which ended, and their log levels."""
