"""An integration's API keys beside its default one: created with a label, an optional expiry
and an optional narrowing to some tools; listed; deleted. Deleting takes access away, so it
is confirmed on every replica (publishing.py); the OAuth tokens a key approved end with it
(the data plane's token lookup joins the key)."""

from __future__ import annotations

from dataclasses import dataclass

from settings_api import keys
from settings_api.changes import Change
from settings_api.problems import Conflict, FieldError, NotFound, ValidationFailed
from settings_api.store import KeyBinding, Store, StoreSession
from settings_api.use_cases import audit
from settings_api.use_cases.publishing import ChangePublisher
from settings_api.use_cases.store_access import now_ms, translated

# The label of the integration's own key (minted on enable, replaced by mcp:rotateKey).
DEFAULT_LABEL = "default"
# Keys an integration may hold beside its default key (each is a row and a cache entry).
MAX_KEYS = 100


@dataclass(frozen=True, slots=True)
class NewKey:
    """What the tenant asked for: `tool_ids` None means every exposed tool."""

    label: str
    expires_at: int | None = None
    tool_ids: list[str] | None = None


async def mint_into(
    tx: StoreSession, tenant: str, integration: str, new: NewKey | None = None
) -> tuple[keys.MintedKey, KeyBinding]:
    """Mint a key and store its hash (the default key when `new` is None)."""
    new = new or NewKey(DEFAULT_LABEL)
    minted = keys.mint()
    binding = KeyBinding(
        minted.key_id,
        minted.key_hash,
        minted.key_prefix,
        tenant,
        integration,
        keys.SCOPE,
        now_ms(),
        None,
        new.label,
        new.expires_at,
        new.tool_ids,
    )
    await tx.insert_key(binding)
    return minted, binding


class ApiKeys:
    """Create, list and delete an integration's keys."""

    def __init__(self, store: Store, publisher: ChangePublisher) -> None:
        self.store = store
        self.publisher = publisher

    async def create(
        self, actor: str, tenant: str, integration: str, new: NewKey
    ) -> tuple[KeyBinding, str]:
        """Mint a key; returns it and the raw key (shown once)."""
        if new.label == DEFAULT_LABEL:
            raise ValidationFailed(
                [FieldError("label", "'default' names the integration's own key; pick another")]
            )
        async with translated(), self.store.transaction() as tx:
            settings = await tx.lock_settings(tenant, integration)
            if settings is None:
                raise NotFound(f"integration {integration!r} does not exist")
            if new.tool_ids:
                await _check_tools(tx, tenant, integration, settings.config_id, new.tool_ids)
            held = [k for k in await tx.live_keys(tenant, integration) if k.label != DEFAULT_LABEL]
            if len(held) >= MAX_KEYS:
                raise Conflict(f"an integration holds at most {MAX_KEYS} keys; delete one first")
            minted, binding = await mint_into(tx, tenant, integration, new)
            await audit.record(
                tx,
                tenant,
                actor,
                "mcp.key_created",
                integration,
                {
                    "apiKeyId": binding.key_id,
                    "label": binding.label,
                    "keyPrefix": binding.key_prefix,
                    "expiresAt": binding.expires_at,
                    "toolIds": binding.tool_ids,
                },
            )
        # Nothing to publish: no replica can have seen a key that did not exist.
        return binding, minted.raw

    async def list(self, tenant: str, integration: str) -> list[KeyBinding]:
        """The keys not revoked (expired ones included), the default key with them; a default
        key in its rotation grace period shows the grace's end as its expiry."""
        async with translated(), self.store.reader() as session:
            if await session.get_integration(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            return await session.live_keys(tenant, integration, now_ms())

    async def delete(self, actor: str, tenant: str, integration: str, key_id: str) -> None:
        """End a key now (the default key too), confirmed on every replica; 404 when the
        integration has no such key."""
        await self.publisher.require_feed()
        async with translated(), self.store.transaction() as tx:
            settings = await tx.lock_settings(tenant, integration)
            if settings is None:
                raise NotFound(f"integration {integration!r} does not exist")
            found = next(
                (k for k in await tx.live_keys(tenant, integration) if k.key_id == key_id), None
            )
            if found is None or not await tx.revoke_key(tenant, integration, key_id, now_ms()):
                raise NotFound(f"API key {key_id!r} does not exist")
            if settings.api_key_id == key_id:
                # The settings name no key until mcp:rotateKey (or enabling) mints the next.
                await tx.unbind_key(tenant, integration)
            await audit.record(
                tx,
                tenant,
                actor,
                "mcp.key_deleted",
                integration,
                {"apiKeyId": key_id, "label": found.label, "keyPrefix": found.key_prefix},
            )
        await self.publisher.publish_revocation(
            Change(tenant, integration, (key_id,)), "the key is deleted"
        )


async def _check_tools(
    tx: StoreSession, tenant: str, integration: str, config_id: str | None, tool_ids: list[str]
) -> None:
    config = await tx.get_config(tenant, integration, config_id) if config_id else None
    known = set(config.tool_names) if config is not None else set()
    unknown = [t for t in tool_ids if t not in known]
    if unknown:
        raise ValidationFailed(
            [FieldError("toolIds", "not tools of the bound config: " + ", ".join(unknown))]
        )
