"""Records the store reads and writes. Times are Unix epoch milliseconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcp_core.redaction import redact_optional


@dataclass(frozen=True, slots=True)
class Integration:
    tenant_id: str
    integration_id: str
    name: str
    created_at: int
    modified_at: int


@dataclass(frozen=True, slots=True)
class Config:
    config_id: str
    tenant_id: str
    integration_id: str
    # The full URL, credentials included (what the clients connect to): only `shown_url`,
    # its redacted form, ever leaves the service.
    upstream_url: str | None = field(repr=False)
    # Write-only secrets: only their names ever leave the service.
    upstream_headers: dict[str, str] = field(repr=False)
    tools: list[dict[str, Any]]
    created_at: int
    synced_at: int | None
    # Why the stored header values or URL credentials could not be decrypted (e.g.
    # MCPGW_SECRET_KEY lost the key they were encrypted with): the header names are still
    # known and map to "" in upstream_headers; upstream_url is then the redacted form.
    headers_error: str | None = None

    @property
    def shown_url(self) -> str | None:
        """The upstream URL with its password and query values redacted (what is shown)."""
        return redact_optional(self.upstream_url)

    @property
    def upstream_header_names(self) -> list[str]:
        return sorted(self.upstream_headers)

    @property
    def tool_names(self) -> list[str]:
        return [tool["name"] for tool in self.tools]


@dataclass(frozen=True, slots=True)
class McpSettings:
    tenant_id: str
    integration_id: str
    enabled: bool
    config_id: str | None
    exposed_tool_ids: list[str]
    description: str | None
    api_key_id: str | None
    key_prefix: str | None
    created_at: int
    modified_at: int
    fixtures_version: int = 0


@dataclass(frozen=True, slots=True)
class SimulatorFixture:
    """Scripted simulator answers for one tool (the validated request body)."""

    tenant_id: str
    integration_id: str
    tool_id: str
    rules: list[dict[str, Any]]
    created_at: int
    modified_at: int


@dataclass(frozen=True, slots=True)
class KeyBinding:
    """An API key as stored (its hash only): what a key hash resolves to on the data plane,
    and a row of the settings API's key list. `revoked_at` may lie in the future (a
    rotation's grace period); `tool_ids` None: every exposed tool."""

    key_id: str
    key_hash: str
    key_prefix: str
    tenant_id: str
    integration_id: str
    scope: str
    created_at: int
    revoked_at: int | None
    label: str = "default"
    expires_at: int | None = None
    tool_ids: list[str] | None = None
    last_used_at: int | None = None

    def ended(self, now: int) -> bool:
        """Revoked or expired at `now` (epoch ms)."""
        return (self.revoked_at is not None and self.revoked_at <= now) or (
            self.expires_at is not None and self.expires_at <= now
        )

    @property
    def ends_at(self) -> int | None:
        """When the key stops working (revoked, grace over, or expired); None: never."""
        ends = [t for t in (self.revoked_at, self.expires_at) if t is not None]
        return min(ends) if ends else None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    seq: int
    event_id: str
    tenant_id: str
    actor: str
    action: str
    target: str
    at: int
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """An OAuth client the gateway knows: registered (RFC 7591) or named by a client ID
    metadata document it approved once."""

    client_id: str
    kind: str
    client_name: str | None
    redirect_uris: list[str]
    created_at: int


@dataclass(frozen=True, slots=True)
class OAuthCode:
    """A single-use authorization code, bound to its client, redirect URI and PKCE challenge."""

    code_hash: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    key_id: str
    tenant_id: str
    integration_id: str
    resource: str
    family_id: str
    created_at: int
    expires_at: int
    used_at: int | None


@dataclass(frozen=True, slots=True)
class OAuthToken:
    """An issued access or refresh token; `key_revoked`: its approving key had ended (revoked,
    past its grace period, or expired) when read."""

    token_hash: str
    kind: str
    family_id: str
    client_id: str
    key_id: str
    tenant_id: str
    integration_id: str
    resource: str
    created_at: int
    expires_at: int
    revoked_at: int | None
    used_at: int | None
    key_revoked: bool


@dataclass(frozen=True, slots=True)
class AccessTokenBinding:
    """What an access token hash resolves to on the data plane (live or not): `revoked` when
    the token is revoked or its approving key had ended when read; `scope` is the key's, and
    so are the `key_*` fields (its end, possibly still ahead, and its tool narrowing)."""

    token_hash: str
    key_id: str
    tenant_id: str
    integration_id: str
    scope: str
    resource: str
    expires_at: int
    revoked: bool
    key_revoked_at: int | None = None
    key_expires_at: int | None = None
    key_tool_ids: list[str] | None = None


@dataclass(frozen=True, slots=True)
class OAuthClientUse:
    """A client holding live tokens for an integration, with its first and last use."""

    client_id: str
    client_name: str | None
    redirect_uris: list[str]
    first_used_at: int
    last_used_at: int


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One `tools/call` as the call log keeps it. `arguments` is the canonical JSON text of
    the arguments (testUrl only); `seq` is the row's id (0 until stored)."""

    tenant_id: str
    integration_id: str
    at: int
    url: str  # "call" | "test"
    api_key_id: str
    tool: str | None
    outcome: str  # ok | tool_error | error | rate_limited | denied
    duration_ms: int
    request_id: str | None
    run_id: str | None
    arguments_sha256: str | None
    arguments: str | None = None
    seq: int = 0


@dataclass(frozen=True, slots=True)
class CallQuery:
    """A page of an integration's calls: older than `before` (at, seq), newest first, at most
    `limit`, optionally of one URL or run."""

    before: tuple[int, int]
    limit: int
    url: str | None = None
    run_id: str | None = None
