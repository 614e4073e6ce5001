"""The settings API's use cases behind one facade, independent of HTTP.

The routes and the data plane use `SettingsService`; the rules live in settings_api/use_cases/,
one module per concept (integrations, configs, MCP settings and keys, fixtures, audit, change
publishing). A change that takes access away is reported done only once every replica heard
of it (use_cases/publishing.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from settings_api.bulkhead import DEFAULT_MAX_INFLIGHT
from settings_api.changes import ChangeFeed
from settings_api.oauth.grants import OAuthGrants, OAuthSettings, TokenPair
from settings_api.store import (
    AccessTokenBinding,
    AuditEvent,
    CallQuery,
    Config,
    Integration,
    KeyBinding,
    McpSettings,
    OAuthClientUse,
    SimulatorFixture,
    Store,
    ToolCall,
)
from settings_api.use_cases.api_keys import ApiKeys, NewKey
from settings_api.use_cases.audit import AuditTrail
from settings_api.use_cases.call_log import CallLog
from settings_api.use_cases.configs import CatalogFetcher, Configs, UpstreamCheck, no_check
from settings_api.use_cases.fixtures import Fixtures
from settings_api.use_cases.integrations import Integrations
from settings_api.use_cases.mcp_settings import McpSettingsAndKeys, SettingsPatch
from settings_api.use_cases.publishing import ChangePublisher
from settings_api.use_cases.serving import McpSnapshot, Serving
from settings_api.use_cases.store_access import now_ms

__all__ = [
    "CatalogFetcher",
    "McpSnapshot",
    "NewKey",
    "SettingsPatch",
    "SettingsService",
    "UpstreamCheck",
    "now_ms",
]


class SettingsService:
    """Use cases of the settings API, independent of HTTP."""

    def __init__(
        self,
        store: Store,
        changes: ChangeFeed,
        fetch_catalog: CatalogFetcher,
        check_upstream: UpstreamCheck = no_check,
        *,
        max_catalog_reads: int = DEFAULT_MAX_INFLIGHT,
        oauth: OAuthSettings | None = None,
    ) -> None:
        self.store = store
        self.changes = changes
        publisher = ChangePublisher(changes)
        self._integrations = Integrations(store, publisher)
        self._configs = Configs(
            store,
            publisher,
            self._integrations,
            fetch_catalog,
            check_upstream,
            max_catalog_reads=max_catalog_reads,
        )
        self._settings = McpSettingsAndKeys(store, publisher)
        self._keys = ApiKeys(store, publisher)
        self._serving = Serving(store)
        self._fixtures = Fixtures(store, publisher, self._serving)
        self._audit = AuditTrail(store)
        # The authorization server's grant logic (settings_api/oauth/grants.py): the gateway's
        # OAuth endpoints use it directly, the settings API and the data plane through here.
        self.oauth = OAuthGrants(store, publisher, oauth or OAuthSettings())
        self._calls = CallLog(store)

    # integrations ---------------------------------------------------------------------------
    async def put_integration(
        self, actor: str, tenant: str, integration: str, name: str
    ) -> tuple[Integration, bool]:
        """Create or rename; returns the integration and whether it was created."""
        return await self._integrations.put(actor, tenant, integration, name)

    async def get_integration(self, tenant: str, integration: str) -> Integration:
        """The integration; 404 when it does not exist."""
        return await self._integrations.get(tenant, integration)

    async def list_integrations(self, tenant: str, after: str, limit: int) -> list[Integration]:
        """A page of the tenant's integrations, by id after `after`."""
        return await self._integrations.page(tenant, after, limit)

    async def delete_integration(self, actor: str, tenant: str, integration: str) -> None:
        """Delete an integration with its configs and settings; its key stops working at once."""
        await self._integrations.delete(actor, tenant, integration)

    # configs --------------------------------------------------------------------------------
    async def create_config(
        self,
        actor: str,
        tenant: str,
        integration: str,
        upstream_url: str | None,
        upstream_headers: dict[str, str],
        tools: list[dict[str, Any]] | None,
    ) -> Config:
        """Create a config with inline tools, or with the catalog read from the upstream."""
        return await self._configs.create(
            actor, tenant, integration, upstream_url, upstream_headers, tools
        )

    async def get_config(self, tenant: str, integration: str, config_id: str) -> Config:
        """The config; 404 when it or its integration does not exist."""
        return await self._configs.get(tenant, integration, config_id)

    async def list_configs(
        self, tenant: str, integration: str, after: str, limit: int
    ) -> list[Config]:
        """A page of the integration's configs, by id after `after`."""
        return await self._configs.page(tenant, integration, after, limit)

    async def sync_tools(self, actor: str, tenant: str, integration: str, config_id: str) -> Config:
        """Re-read the upstream catalog of a config."""
        return await self._configs.sync_tools(actor, tenant, integration, config_id)

    # MCP settings and keys ------------------------------------------------------------------
    async def get_settings(self, tenant: str, integration: str) -> McpSettings:
        """The MCP settings; 404 when the integration does not exist."""
        return await self._settings.get(tenant, integration)

    async def patch_settings(
        self, actor: str, tenant: str, integration: str, patch: SettingsPatch
    ) -> tuple[McpSettings, str | None]:
        """Apply a PATCH; returns the settings and the raw key when this call minted one."""
        return await self._settings.patch(actor, tenant, integration, patch)

    async def rotate_key(
        self, actor: str, tenant: str, integration: str, grace_s: int = 0
    ) -> tuple[McpSettings, str]:
        """Mint a new default key and bind it; the previous one stops now or after `grace_s`."""
        return await self._settings.rotate_key(actor, tenant, integration, grace_s)

    async def create_key(
        self, actor: str, tenant: str, integration: str, new: NewKey
    ) -> tuple[KeyBinding, str]:
        """Mint a labelled key beside the default one; returns it and the raw key."""
        return await self._keys.create(actor, tenant, integration, new)

    async def list_keys(self, tenant: str, integration: str) -> list[KeyBinding]:
        """The integration's keys not revoked (the default key included)."""
        return await self._keys.list(tenant, integration)

    async def delete_key(self, actor: str, tenant: str, integration: str, key_id: str) -> None:
        """End a key now, on every replica, with the OAuth tokens it approved."""
        await self._keys.delete(actor, tenant, integration, key_id)

    # what the data plane reads and records --------------------------------------------------
    async def find_key(self, key_hash: str) -> KeyBinding | None:
        """The binding of a key hash (live or revoked), for the data plane."""
        return await self._serving.find_key(key_hash)

    async def mcp_snapshot(self, tenant: str, integration: str) -> McpSnapshot | None:
        """What the data plane serves for an integration; None when it does not exist."""
        return await self._serving.snapshot(tenant, integration)

    async def record_key_use(self, last_used: Mapping[str, int]) -> None:
        """Store when keys were last used (batched by the data plane, not written per request)."""
        await self._serving.record_key_use(last_used)

    async def find_access_token(self, token_hash: str) -> AccessTokenBinding | None:
        """The binding of an OAuth access token hash (live, expired or revoked)."""
        return await self._serving.find_access_token(token_hash)

    async def record_token_use(self, last_used: Mapping[str, int]) -> None:
        """Store when access tokens were last used (batched by the data plane)."""
        await self._serving.record_token_use(last_used)

    async def issue_oauth_tokens(self, api_key: str, client_id: str, resource: str) -> TokenPair:
        """Access and refresh tokens for `client_id` on `resource` (a callUrl or testUrl),
        approved by `api_key` with the consent page's checks (`ApprovalRefused` otherwise)."""
        return await self.oauth.issue_for_key(api_key, client_id, resource)

    # OAuth clients --------------------------------------------------------------------------
    async def list_oauth_clients(
        self, tenant: str, integration: str, after: str, limit: int
    ) -> list[OAuthClientUse]:
        """The OAuth clients holding live tokens for the integration, by client id."""
        return await self.oauth.list_clients(tenant, integration, after, limit)

    async def revoke_oauth_client(
        self, actor: str, tenant: str, integration: str, client_id: str
    ) -> None:
        """Revoke every token `client_id` holds for the integration."""
        await self.oauth.revoke_client(actor, tenant, integration, client_id)

    # simulator fixtures ---------------------------------------------------------------------
    async def put_fixture(
        self, actor: str, tenant: str, integration: str, tool_id: str, body: Any
    ) -> tuple[SimulatorFixture, int, bool]:
        """Validate and store a tool's fixture; returns it, the new version, and if created."""
        return await self._fixtures.put(actor, tenant, integration, tool_id, body)

    async def get_fixture(
        self, tenant: str, integration: str, tool_id: str
    ) -> tuple[SimulatorFixture, int]:
        """A tool's fixture and the integration's fixtures version (404 when there is none)."""
        return await self._fixtures.get(tenant, integration, tool_id)

    async def list_fixtures(self, tenant: str, integration: str) -> list[SimulatorFixture]:
        """Every fixture of the integration (404 when the integration does not exist)."""
        return await self._fixtures.list(tenant, integration)

    async def delete_fixture(self, actor: str, tenant: str, integration: str, tool_id: str) -> None:
        """Delete a tool's fixture; 404 when there is none."""
        await self._fixtures.delete(actor, tenant, integration, tool_id)

    # audit ----------------------------------------------------------------------------------
    async def list_audit(self, tenant: str, before_seq: int, limit: int) -> list[AuditEvent]:
        """A page of audit events older than `before_seq`, newest first."""
        return await self._audit.events(tenant, before_seq, limit)

    # the tool-call log ----------------------------------------------------------------------
    async def record_calls(self, calls: Sequence[ToolCall]) -> None:
        """Store a batch of the data plane's calls (store errors are raised as they are)."""
        await self._calls.record(calls)

    async def list_calls(self, tenant: str, integration: str, page: CallQuery) -> list[ToolCall]:
        """A page of an integration's calls, newest first (404: unknown integration)."""
        return await self._calls.page(tenant, integration, page)

    async def expire_calls(self, before_ms: int) -> int | None:
        """Delete calls made before `before_ms` (None: another replica is doing it now)."""
        return await self._calls.expire(before_ms)
