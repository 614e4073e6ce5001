"""What the data plane reads to serve an integration (its snapshot, key bindings by hash) and
records (when keys were last used)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from settings_api.store import (
    Config,
    Integration,
    KeyBinding,
    McpSettings,
    SimulatorFixture,
    Store,
)
from settings_api.use_cases.store_access import translated


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

    async def record_key_use(self, last_used: Mapping[str, int]) -> None:
        """Store when keys were last used (batched by the data plane, not written per request)."""
        if not last_used:
            return
        async with translated(), self.store.transaction() as tx:
            for key_id, used_at in sorted(last_used.items()):
                await tx.touch_key(key_id, used_at)
