"""The control plane's rules: integrations, configs, MCP settings, keys and audit.

Each mutation runs in one store transaction together with its audit event, so nothing is half
done; the integration's settings row lock serializes enabling and rotation, and the schema's
one-live-key index backs that up. Changes are published after commit.

A change that takes access away (key rotation, disabling, deleting an integration) must reach
every replica before it is reported done: before committing one, the change feed must accept a
publish (else 503 and nothing changes); after committing, the change must be confirmed (else
503 `change-not-confirmed`: the change stands, the feed keeps re-sending it, and replicas that
could not hear it stop trusting their caches within about two seconds).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from settings_api import keys
from settings_api.bulkhead import DEFAULT_MAX_INFLIGHT, Bulkhead
from settings_api.changes import Change, ChangeFeed, ChangeUndelivered, FeedUnavailable
from settings_api.egress import refused_header
from settings_api.problems import (
    BadRequest,
    ChangeFeedUnavailable,
    ChangeNotConfirmed,
    Conflict,
    FieldError,
    NotFound,
    SecretsUnreadable,
    StoreUnavailable,
    TooManyRequests,
    UpstreamFailed,
    ValidationFailed,
)
from settings_api.store import (
    AuditEvent,
    Config,
    Integration,
    KeyBinding,
    McpSettings,
    SimulatorFixture,
    Store,
    StoreConflictError,
    StoreDataError,
    StoreSession,
    StoreUnavailableError,
)
from settings_api.tools import normalize_tools
from settings_api.upstream_url import has_secrets, redact
from settings_api.upstream_url import problem as url_problem
from simulator import parse_fixture

log = logging.getLogger(__name__)

CatalogFetcher = Callable[[str, Mapping[str, str]], Awaitable[list[dict[str, Any]]]]
# Raises UpstreamNotAllowed when the egress policy refuses the URL's address.
UpstreamCheck = Callable[[str], Awaitable[None]]


async def _no_check(url: str) -> None:
    return None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class McpSnapshot:
    """An integration with its MCP settings and bound config, read together."""

    integration: Integration
    settings: McpSettings
    config: Config | None
    fixtures: list[SimulatorFixture]


@dataclass(frozen=True, slots=True)
class SettingsPatch:
    """PATCH body of the MCP settings; None means "keep what is there"."""

    enabled: bool | None = None
    config_id: str | None = None
    exposed_tool_ids: list[str] | None = None
    description: str | None = None


class SettingsService:
    """Use cases of the settings API, independent of HTTP."""

    def __init__(
        self,
        store: Store,
        changes: ChangeFeed,
        fetch_catalog: CatalogFetcher,
        check_upstream: UpstreamCheck = _no_check,
        *,
        max_catalog_reads: int = DEFAULT_MAX_INFLIGHT,
    ) -> None:
        self.store = store
        self.changes = changes
        self._fetch_catalog = fetch_catalog
        self._check_upstream = check_upstream
        # Catalog reads in flight per tenant (MCPGW_UPSTREAM_MAX_INFLIGHT): one tenant's slow
        # upstreams cannot hold up every other tenant's config creation and syncs.
        self._catalog_reads = Bulkhead(max_catalog_reads)

    # integrations ---------------------------------------------------------------------------
    async def put_integration(
        self, actor: str, tenant: str, integration: str, name: str
    ) -> tuple[Integration, bool]:
        """Create or rename; returns the integration and whether it was created."""
        async with _translated(), self.store.transaction() as tx:
            now = now_ms()
            current = await tx.get_integration(tenant, integration, for_update=True)
            if current is None and await tx.insert_integration(tenant, integration, name, now):
                await _audit(tx, tenant, actor, "integration.created", integration, {"name": name})
                created = True
            else:
                current = current or await tx.get_integration(tenant, integration, for_update=True)
                if current is not None and current.name != name:
                    await tx.rename_integration(tenant, integration, name, now)
                    await _audit(
                        tx,
                        tenant,
                        actor,
                        "integration.renamed",
                        integration,
                        {"name": name, "previousName": current.name},
                    )
                created = False
            result = await tx.get_integration(tenant, integration)
        assert result is not None
        return result, created

    async def get_integration(self, tenant: str, integration: str) -> Integration:
        async with _translated(), self.store.reader() as session:
            found = await session.get_integration(tenant, integration)
        if found is None:
            raise NotFound(f"integration {integration!r} does not exist")
        return found

    async def list_integrations(self, tenant: str, after: str, limit: int) -> list[Integration]:
        async with _translated(), self.store.reader() as session:
            return await session.list_integrations(tenant, after, limit)

    async def delete_integration(self, actor: str, tenant: str, integration: str) -> None:
        """Delete an integration with its configs and settings; its key stops working at once."""
        await self._require_feed()
        async with _translated(), self.store.transaction() as tx:
            if await tx.lock_settings(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            revoked = await tx.live_keys(tenant, integration)
            await tx.revoke_live_keys(tenant, integration, now_ms())
            await tx.delete_integration(tenant, integration)
            await _audit(
                tx,
                tenant,
                actor,
                "integration.deleted",
                integration,
                {"revokedKeyIds": [k.key_id for k in revoked]},
            )
        await self._publish_revocation(
            Change(tenant, integration, tuple(k.key_id for k in revoked)),
            f"integration {integration!r} is deleted",
        )

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
        await self.get_integration(tenant, integration)  # 404 before any upstream traffic
        if upstream_url is not None and (why := url_problem(upstream_url)) is not None:
            raise ValidationFailed([FieldError("upstreamUrl", why)])
        refused = [
            FieldError(f"upstreamHeaders.{name}", "is set by the gateway, not by a config")
            for name in upstream_headers
            if refused_header(name)
        ]
        if refused:
            raise ValidationFailed(refused)
        if upstream_url is not None:
            # Inline tools too: the data plane will call this URL.
            await self._check_upstream(upstream_url)
        if tools is None:
            if upstream_url is None:
                raise ValidationFailed([FieldError("tools", "give tools, or an upstreamUrl")])
            catalog = await self._read_catalog(tenant, upstream_url, upstream_headers)
            synced_at: int | None = now_ms()
        else:
            catalog, errors = normalize_tools(tools)
            if errors:
                raise ValidationFailed(errors)
            synced_at = None
        config = Config(
            str(uuid.uuid4()),
            tenant,
            integration,
            upstream_url,
            dict(upstream_headers),
            catalog,
            now_ms(),
            synced_at,
        )
        async with _translated(), self.store.transaction() as tx:
            if await tx.get_integration(tenant, integration, for_update=True) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            await tx.insert_config(config)
            await _audit(
                tx,
                tenant,
                actor,
                "config.created",
                f"{integration}/{config.config_id}",
                {
                    "upstreamUrl": config.shown_url,
                    "upstreamHeaderNames": config.upstream_header_names,
                    "toolCount": len(catalog),
                },
            )
        return config

    async def get_config(self, tenant: str, integration: str, config_id: str) -> Config:
        async with _translated(), self.store.reader() as session:
            found = await session.get_config(tenant, integration, config_id)
            if found is None and await session.get_integration(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
        if found is None:
            raise NotFound(f"config {config_id!r} does not exist")
        return found

    async def list_configs(
        self, tenant: str, integration: str, after: str, limit: int
    ) -> list[Config]:
        await self.get_integration(tenant, integration)
        async with _translated(), self.store.reader() as session:
            return await session.list_configs(tenant, integration, after, limit)

    async def sync_tools(self, actor: str, tenant: str, integration: str, config_id: str) -> Config:
        """Re-read the upstream catalog of a config."""
        config = await self.get_config(tenant, integration, config_id)
        if config.upstream_url is None:
            raise Conflict("this config has inline tools and no upstreamUrl to sync from")
        if config.headers_error is not None:
            log.error("config %s/%s/%s: %s", tenant, integration, config_id, config.headers_error)
            raise SecretsUnreadable(
                f"cannot sync: {config.headers_error}; restore the key in "
                "MCPGW_SECRET_KEY, or create a new config"
            )
        await self._check_upstream(config.upstream_url)  # the policy may have changed since
        catalog = await self._read_catalog(tenant, config.upstream_url, config.upstream_headers)
        synced_at = now_ms()
        async with _translated(), self.store.transaction() as tx:
            if await tx.get_config(tenant, integration, config_id) is None:
                raise NotFound(f"config {config_id!r} does not exist")
            await tx.update_config_tools(tenant, integration, config_id, catalog, synced_at)
            await _audit(
                tx,
                tenant,
                actor,
                "config.synced",
                f"{integration}/{config_id}",
                {"toolCount": len(catalog)},
            )
        await self._publish(Change(tenant, integration))
        return replace(config, tools=catalog, synced_at=synced_at)

    async def _read_catalog(
        self, tenant: str, url: str, headers: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        if not self._catalog_reads.try_enter(tenant):
            limit = self._catalog_reads.limit
            raise TooManyRequests(
                f"this tenant already has {limit} upstream catalog reads in "
                "flight, its limit (MCPGW_UPSTREAM_MAX_INFLIGHT); retry when "
                "one has finished",
                limit=limit,
            )
        try:
            catalog = await self._fetch_catalog(url, headers)
        finally:
            self._catalog_reads.leave(tenant)
        tools, errors = normalize_tools(catalog, "upstream tools")
        if errors:
            raise UpstreamFailed(
                "the upstream's tool catalog is invalid: "
                + "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
            )
        return tools

    # MCP settings and keys ------------------------------------------------------------------
    async def get_settings(self, tenant: str, integration: str) -> McpSettings:
        async with _translated(), self.store.reader() as session:
            found = await session.get_settings(tenant, integration)
        if found is None:
            raise NotFound(f"integration {integration!r} does not exist")
        return found

    async def patch_settings(
        self, actor: str, tenant: str, integration: str, patch: SettingsPatch
    ) -> tuple[McpSettings, str | None]:
        """Apply a PATCH; returns the settings and the raw key when this call minted one."""
        raw_key: str | None = None
        disabling = patch.enabled is False
        if disabling:
            await self._require_feed()
        async with _translated(), self.store.transaction() as tx:
            current = await tx.lock_settings(tenant, integration)
            if current is None:
                raise NotFound(f"integration {integration!r} does not exist")
            wanted = McpSettings(
                tenant,
                integration,
                enabled=current.enabled if patch.enabled is None else patch.enabled,
                config_id=current.config_id if patch.config_id is None else patch.config_id,
                exposed_tool_ids=(
                    current.exposed_tool_ids
                    if patch.exposed_tool_ids is None
                    else patch.exposed_tool_ids
                ),
                description=(
                    current.description if patch.description is None else patch.description
                ),
                api_key_id=current.api_key_id,
                key_prefix=current.key_prefix,
                created_at=current.created_at,
                modified_at=now_ms(),
            )
            await self._check_settings(tx, wanted, patch)
            if wanted.enabled and wanted.api_key_id is None:
                minted = await _mint_into(tx, tenant, integration)
                raw_key = minted.raw
                wanted = replace(wanted, api_key_id=minted.key_id, key_prefix=minted.key_prefix)
            changed = {
                name: value
                for name, value in (
                    ("enabled", patch.enabled),
                    ("configId", patch.config_id),
                    ("exposedToolIds", patch.exposed_tool_ids),
                    ("description", patch.description),
                )
                if value is not None
            }
            await tx.update_settings(wanted)
            await _audit(
                tx,
                tenant,
                actor,
                "mcp.updated",
                integration,
                {
                    "changed": changed,
                    "keyMinted": raw_key is not None,
                    "apiKeyId": wanted.api_key_id,
                },
            )
        if disabling:
            await self._publish_revocation(
                Change(tenant, integration), "the MCP settings are saved (disabled)"
            )
        else:
            await self._publish(Change(tenant, integration))
        return wanted, raw_key

    async def _check_settings(
        self, tx: StoreSession, wanted: McpSettings, patch: SettingsPatch
    ) -> None:
        errors: list[FieldError] = []
        config = None
        if wanted.config_id is not None:
            config = await tx.get_config(wanted.tenant_id, wanted.integration_id, wanted.config_id)
            if config is None and patch.config_id is not None:
                errors.append(FieldError("configId", "is not a config of this integration"))
        if config is not None and (
            patch.config_id is not None or patch.exposed_tool_ids is not None
        ):
            known = set(config.tool_names)
            unknown = [t for t in wanted.exposed_tool_ids if t not in known]
            if unknown:
                errors.append(
                    FieldError(
                        "exposedToolIds", "not tools of the bound config: " + ", ".join(unknown)
                    )
                )
        elif wanted.config_id is None and patch.exposed_tool_ids:
            errors.append(FieldError("exposedToolIds", "bind a configId before exposing tools"))
        if wanted.enabled and wanted.config_id is None:
            errors.append(FieldError("enabled", "enabling needs a bound configId"))
        if errors:
            raise ValidationFailed(errors)

    async def rotate_key(
        self, actor: str, tenant: str, integration: str
    ) -> tuple[McpSettings, str]:
        """Mint a new key, bind it, and revoke every previous one in the same transaction."""
        await self._require_feed()
        async with _translated(), self.store.transaction() as tx:
            current = await tx.lock_settings(tenant, integration)
            if current is None:
                raise NotFound(f"integration {integration!r} does not exist")
            old = await tx.live_keys(tenant, integration)
            await tx.revoke_live_keys(tenant, integration, now_ms())
            minted = await _mint_into(tx, tenant, integration)
            rotated = replace(
                current,
                api_key_id=minted.key_id,
                key_prefix=minted.key_prefix,
                modified_at=now_ms(),
            )
            await tx.update_settings(rotated)
            await _audit(
                tx,
                tenant,
                actor,
                "mcp.key_rotated",
                integration,
                {"apiKeyId": minted.key_id, "revokedKeyIds": [k.key_id for k in old]},
            )
        # The rotation stands even when unconfirmed: the 503 carries the new key, or the
        # tenant would be left with a revoked key and no way to learn its successor.
        await self._publish_revocation(
            Change(tenant, integration, tuple(k.key_id for k in old)),
            "the key is rotated; the new key is in apiKey",
            apiKey=minted.raw,
            apiKeyId=minted.key_id,
            keyPrefix=minted.key_prefix,
        )
        return rotated, minted.raw

    async def find_key(self, key_hash: str) -> KeyBinding | None:
        """The binding of a key hash (live or revoked), for the data plane."""
        async with _translated(), self.store.reader() as session:
            return await session.get_key_by_hash(key_hash)

    async def mcp_snapshot(self, tenant: str, integration: str) -> McpSnapshot | None:
        """What the data plane serves for an integration; None when it does not exist."""
        async with _translated(), self.store.reader() as session:
            found = await session.get_integration(tenant, integration)
            settings = await session.get_settings(tenant, integration)
            if found is None or settings is None:
                return None
            config = (
                await session.get_config(tenant, integration, settings.config_id)
                if settings.config_id
                else None
            )
            fixtures = await session.list_fixtures(tenant, integration)
        return McpSnapshot(found, settings, config, fixtures)

    async def record_key_use(self, last_used: Mapping[str, int]) -> None:
        """Store when keys were last used (batched by the data plane, not written per request)."""
        if not last_used:
            return
        async with _translated(), self.store.transaction() as tx:
            for key_id, used_at in sorted(last_used.items()):
                await tx.touch_key(key_id, used_at)

    # simulator fixtures ---------------------------------------------------------------------
    async def put_fixture(
        self, actor: str, tenant: str, integration: str, tool_id: str, body: Any
    ) -> tuple[SimulatorFixture, int, bool]:
        """Validate and store a tool's fixture; returns it, the new version, and if created."""
        tool = await self._bound_tool(tenant, integration, tool_id)
        # Checking the results against the tool's outputSchema may take up to the simulator's
        # step budget (a few hundred ms): off the event loop that serves every tenant.
        fixture, problems = await asyncio.to_thread(parse_fixture, body, tool)
        if fixture is None:
            raise ValidationFailed([FieldError(p.field, p.message) for p in problems])
        rules = fixture.as_body()["rules"]
        async with _translated(), self.store.transaction() as tx:
            if await tx.lock_settings(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            created = await tx.get_fixture(tenant, integration, tool_id) is None
            await tx.put_fixture(tenant, integration, tool_id, rules, now_ms())
            await tx.bump_fixtures_version(tenant, integration)
            await _audit(
                tx,
                tenant,
                actor,
                "simulator.fixture_put",
                f"{integration}/{tool_id}",
                {"rules": len(rules)},
            )
            stored = await tx.get_fixture(tenant, integration, tool_id)
            settings = await tx.get_settings(tenant, integration)
        assert stored is not None and settings is not None
        await self._publish(Change(tenant, integration))
        return stored, settings.fixtures_version, created

    async def get_fixture(
        self, tenant: str, integration: str, tool_id: str
    ) -> tuple[SimulatorFixture, int]:
        """A tool's fixture and the integration's fixtures version (404 when there is none)."""
        async with _translated(), self.store.reader() as session:
            settings = await session.get_settings(tenant, integration)
            found = await session.get_fixture(tenant, integration, tool_id)
        if settings is None:
            raise NotFound(f"integration {integration!r} does not exist")
        if found is None:
            raise NotFound(f"tool {tool_id!r} has no simulator fixture")
        return found, settings.fixtures_version

    async def delete_fixture(self, actor: str, tenant: str, integration: str, tool_id: str) -> None:
        async with _translated(), self.store.transaction() as tx:
            if await tx.lock_settings(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            if not await tx.delete_fixture(tenant, integration, tool_id):
                raise NotFound(f"tool {tool_id!r} has no simulator fixture")
            await tx.bump_fixtures_version(tenant, integration)
            await _audit(
                tx, tenant, actor, "simulator.fixture_deleted", f"{integration}/{tool_id}", {}
            )
        await self._publish(Change(tenant, integration))

    async def _bound_tool(self, tenant: str, integration: str, tool_id: str) -> dict[str, Any]:
        snapshot = await self.mcp_snapshot(tenant, integration)
        if snapshot is None:
            raise NotFound(f"integration {integration!r} does not exist")
        tools = {t["name"]: t for t in snapshot.config.tools} if snapshot.config else {}
        if tool_id not in tools:
            raise NotFound(f"tool {tool_id!r} is not in the integration's bound config")
        return tools[tool_id]

    # audit ----------------------------------------------------------------------------------
    async def list_audit(self, tenant: str, before_seq: int, limit: int) -> list[AuditEvent]:
        async with _translated(), self.store.reader() as session:
            events = await session.list_audit(tenant, before_seq, limit)
        return [_shown_event(event) for event in events]

    async def _require_feed(self) -> None:
        """Before committing a change that takes access away: 503, with nothing changed, when
        the replicas could not be told of it now."""
        try:
            await self.changes.check()
        except FeedUnavailable as exc:
            log.warning("refusing a revoking change: %s", exc)
            raise ChangeFeedUnavailable(
                "the gateway replicas cannot be told of changes right now (the change feed "
                "does not accept messages), so they could keep honouring the key; nothing "
                "was changed; retry shortly"
            ) from exc

    async def _publish_revocation(self, change: Change, done: str, **extensions: Any) -> None:
        """Publish a committed change that takes access away; 503 when it is not confirmed
        (`done` says what stands; `extensions` go into the problem, e.g. the new key)."""
        try:
            await self.changes.publish(change)
        except ChangeUndelivered as exc:
            log.warning(
                "revoking change for %s/%s not confirmed: %s",
                change.tenant_id,
                change.integration_id,
                exc,
            )
            raise ChangeNotConfirmed(
                f"{done}, but not every gateway replica could be told yet (the change feed "
                "stopped accepting messages); the change is re-sent until it is, and every "
                "replica applies it within about 2 s of the feed working again",
                **extensions,
            ) from exc

    async def _publish(self, change: Change) -> None:
        try:
            await self.changes.publish(change)
        except ChangeUndelivered as exc:
            # Committed already, and nothing was taken away: the feed re-sends it, and
            # caches expire on their TTL meanwhile.
            log.warning(
                "change for %s/%s not confirmed yet: %s",
                change.tenant_id,
                change.integration_id,
                exc,
            )
        except Exception:
            # Committed already: replicas' caches still expire on their TTL.
            log.warning(
                "could not publish change for %s/%s",
                change.tenant_id,
                change.integration_id,
                exc_info=True,
            )


async def _mint_into(tx: StoreSession, tenant: str, integration: str) -> keys.MintedKey:
    minted = keys.mint()
    await tx.insert_key(
        KeyBinding(
            minted.key_id,
            minted.key_hash,
            minted.key_prefix,
            tenant,
            integration,
            keys.SCOPE,
            now_ms(),
            None,
        )
    )
    return minted


def _shown_event(event: AuditEvent) -> AuditEvent:
    # Events recorded before URL credentials were redacted hold the URL as it was given.
    url = event.details.get("upstreamUrl")
    if not isinstance(url, str) or not has_secrets(url):
        return event
    return replace(event, details={**event.details, "upstreamUrl": redact(url)})


async def _audit(
    tx: StoreSession, tenant: str, actor: str, action: str, target: str, details: dict[str, Any]
) -> None:
    await tx.insert_audit(str(uuid.uuid4()), tenant, actor, action, target, now_ms(), details)


class _translated:
    """Turns store failures into problems the API can answer with."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if isinstance(exc, StoreUnavailableError):
            raise StoreUnavailable("the settings store is unavailable; retry shortly") from exc
        if isinstance(exc, StoreConflictError):
            raise Conflict("a concurrent change conflicted with this one; retry") from exc
        if isinstance(exc, StoreDataError):
            raise BadRequest("a value in the request cannot be stored") from exc
