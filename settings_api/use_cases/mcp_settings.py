"""An integration's MCP settings and its API key: enabling (which mints the key), binding a
config, exposing tools, disabling, and key rotation. Disabling and rotation take access away,
so they are confirmed on every replica (publishing.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from settings_api.changes import Change
from settings_api.problems import FieldError, NotFound, ValidationFailed
from settings_api.store import McpSettings, Store, StoreSession
from settings_api.use_cases import audit
from settings_api.use_cases.api_keys import DEFAULT_LABEL, mint_into
from settings_api.use_cases.publishing import ChangePublisher
from settings_api.use_cases.store_access import now_ms, translated


@dataclass(frozen=True, slots=True)
class SettingsPatch:
    """PATCH body of the MCP settings; None means "keep what is there"."""

    enabled: bool | None = None
    config_id: str | None = None
    exposed_tool_ids: list[str] | None = None
    description: str | None = None


class McpSettingsAndKeys:
    """An integration's MCP settings and the key bound to them."""

    def __init__(self, store: Store, publisher: ChangePublisher) -> None:
        self.store = store
        self.publisher = publisher

    async def get(self, tenant: str, integration: str) -> McpSettings:
        """The settings; 404 when the integration does not exist."""
        async with translated(), self.store.reader() as session:
            found = await session.get_settings(tenant, integration)
        if found is None:
            raise NotFound(f"integration {integration!r} does not exist")
        return found

    async def patch(
        self, actor: str, tenant: str, integration: str, patch: SettingsPatch
    ) -> tuple[McpSettings, str | None]:
        """Apply a PATCH; returns the settings and the raw key when this call minted one."""
        raw_key: str | None = None
        disabling = patch.enabled is False
        if disabling:
            await self.publisher.require_feed()
        async with translated(), self.store.transaction() as tx:
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
            await _check(tx, wanted, patch)
            if wanted.enabled and wanted.api_key_id is None:
                minted, _ = await mint_into(tx, tenant, integration)
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
            await audit.record(
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
            await self.publisher.publish_revocation(
                Change(tenant, integration), "the MCP settings are saved (disabled)"
            )
        else:
            await self.publisher.publish(Change(tenant, integration))
        return wanted, raw_key

    async def rotate_key(
        self, actor: str, tenant: str, integration: str, grace_s: int = 0
    ) -> tuple[McpSettings, str]:
        """Mint a new default key and bind it; the previous default key stops now, or `grace_s`
        seconds from now (its OAuth tokens with it). The other keys are left alone."""
        await self.publisher.require_feed()
        async with translated(), self.store.transaction() as tx:
            current = await tx.lock_settings(tenant, integration)
            if current is None:
                raise NotFound(f"integration {integration!r} does not exist")
            now = now_ms()
            old = [
                k for k in await tx.live_keys(tenant, integration, now) if k.label == DEFAULT_LABEL
            ]
            ends_at = now + grace_s * 1000
            await tx.end_default_keys(tenant, integration, ends_at)
            minted, _ = await mint_into(tx, tenant, integration)
            rotated = replace(
                current,
                api_key_id=minted.key_id,
                key_prefix=minted.key_prefix,
                modified_at=now_ms(),
            )
            await tx.update_settings(rotated)
            await audit.record(
                tx,
                tenant,
                actor,
                "mcp.key_rotated",
                integration,
                {
                    "apiKeyId": minted.key_id,
                    "revokedKeyIds": [k.key_id for k in old],
                    "gracePeriodSeconds": grace_s,
                    "revokedAt": ends_at,
                },
            )
        # The rotation stands even when unconfirmed: the 503 carries the new key, or the
        # tenant would be left with a revoked key and no way to learn its successor.
        await self.publisher.publish_revocation(
            Change(tenant, integration, tuple(k.key_id for k in old)),
            "the key is rotated; the new key is in apiKey",
            apiKey=minted.raw,
            apiKeyId=minted.key_id,
            keyPrefix=minted.key_prefix,
        )
        return rotated, minted.raw


async def _check(tx: StoreSession, wanted: McpSettings, patch: SettingsPatch) -> None:
    errors: list[FieldError] = []
    config = None
    if wanted.config_id is not None:
        config = await tx.get_config(wanted.tenant_id, wanted.integration_id, wanted.config_id)
        if config is None and patch.config_id is not None:
            errors.append(FieldError("configId", "is not a config of this integration"))
    if config is not None and (patch.config_id is not None or patch.exposed_tool_ids is not None):
        known = set(config.tool_names)
        unknown = [t for t in wanted.exposed_tool_ids if t not in known]
        if unknown:
            errors.append(
                FieldError("exposedToolIds", "not tools of the bound config: " + ", ".join(unknown))
            )
    elif wanted.config_id is None and patch.exposed_tool_ids:
        errors.append(FieldError("exposedToolIds", "bind a configId before exposing tools"))
    if wanted.enabled and wanted.config_id is None:
        errors.append(FieldError("enabled", "enabling needs a bound configId"))
    if errors:
        raise ValidationFailed(errors)
