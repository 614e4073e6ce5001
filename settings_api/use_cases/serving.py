"""What the data plane reads to serve an integration (its snapshot, key and access token
bindings by hash) and records (when keys and access tokens were last used)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from settings_api.store import (
    AccessTokenBinding,
    Config,
    Integration,
    KeyBinding,
    McpSettings,
    SimulatorFixture,
    Store,
    StoreSession,
)
from settings_api.use_cases.store_access import now_ms, translated


@dataclass(frozen=True, slots=True)
class McpSnapshot:
    """An integration with its MCP settings and bound config, read together."""

    integration: Integration
    settings: McpSettings
    config: Config | None
    fixtures: list[SimulatorFixture]


class Serving:
    """The store reads and writes of the data plane."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def snapshot(self, tenant: str, integration: str) -> McpSnapshot | None:
        """What the data plane serves for an integration; None when it does not exist."""
        async with translated(), self.store.reader() as session:
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

    async def find_key(self, key_hash: str) -> KeyBinding | None:
        """The binding of a key hash (live or revoked)."""
        async with translated(), self.store.reader() as session:
            return await session.get_key_by_hash(key_hash)

    async def find_access_token(self, token_hash: str) -> AccessTokenBinding | None:
        """The binding of an OAuth access token hash (live, expired or revoked)."""
        async with translated(), self.store.reader() as session:
            return await session.get_access_token(token_hash, now_ms())

    async def record_key_use(self, last_used: Mapping[str, int]) -> None:
        """Store when keys were last used (batched by the data plane, not written per request)."""
        await self._record(last_used, StoreSession.touch_key)

    async def record_token_use(self, last_used: Mapping[str, int]) -> None:
        """Store when access tokens (by hash) were last used, batched like keys."""
        await self._record(last_used, StoreSession.touch_oauth_token)

    async def _record(
        self,
        last_used: Mapping[str, int],
        touch: Callable[[StoreSession, str, int], Awaitable[None]],
    ) -> None:
        if not last_used:
            return
        async with translated(), self.store.transaction() as tx:
            for name, used_at in sorted(last_used.items()):
                await touch(tx, name, used_at)
