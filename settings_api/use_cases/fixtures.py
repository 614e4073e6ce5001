"""Simulator fixtures: tenants' scripted answers for the tools of an integration's bound config."""

from __future__ import annotations

import asyncio
from typing import Any

from settings_api.changes import Change
from settings_api.problems import FieldError, NotFound, ValidationFailed
from settings_api.store import SimulatorFixture, Store
from settings_api.use_cases import audit
from settings_api.use_cases.publishing import ChangePublisher
from settings_api.use_cases.serving import Serving
from settings_api.use_cases.store_access import now_ms, translated
from simulator import parse_fixture


class Fixtures:
    """An integration's simulator fixtures, one per tool, versioned together."""

    def __init__(self, store: Store, publisher: ChangePublisher, serving: Serving) -> None:
        self.store = store
        self.publisher = publisher
        self.serving = serving

    async def put(
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
        async with translated(), self.store.transaction() as tx:
            if await tx.lock_settings(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            created = await tx.get_fixture(tenant, integration, tool_id) is None
            await tx.put_fixture(tenant, integration, tool_id, rules, now_ms())
            await tx.bump_fixtures_version(tenant, integration)
            await audit.record(
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
        await self.publisher.publish(Change(tenant, integration))
        return stored, settings.fixtures_version, created

    async def get(
        self, tenant: str, integration: str, tool_id: str
    ) -> tuple[SimulatorFixture, int]:
        """A tool's fixture and the integration's fixtures version (404 when there is none)."""
        async with translated(), self.store.reader() as session:
            settings = await session.get_settings(tenant, integration)
            found = await session.get_fixture(tenant, integration, tool_id)
        if settings is None:
            raise NotFound(f"integration {integration!r} does not exist")
        if found is None:
            raise NotFound(f"tool {tool_id!r} has no simulator fixture")
        return found, settings.fixtures_version

    async def list(self, tenant: str, integration: str) -> list[SimulatorFixture]:
        """Every fixture of the integration, by tool (404 when the integration does not exist)."""
        async with translated(), self.store.reader() as session:
            if await session.get_settings(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            return await session.list_fixtures(tenant, integration)

    async def delete(self, actor: str, tenant: str, integration: str, tool_id: str) -> None:
        """Delete a tool's fixture; 404 when there is none."""
        async with translated(), self.store.transaction() as tx:
            if await tx.lock_settings(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            if not await tx.delete_fixture(tenant, integration, tool_id):
                raise NotFound(f"tool {tool_id!r} has no simulator fixture")
            await tx.bump_fixtures_version(tenant, integration)
            await audit.record(
                tx, tenant, actor, "simulator.fixture_deleted", f"{integration}/{tool_id}", {}
            )
        await self.publisher.publish(Change(tenant, integration))

    async def _bound_tool(self, tenant: str, integration: str, tool_id: str) -> dict[str, Any]:
        snapshot = await self.serving.snapshot(tenant, integration)
        if snapshot is None:
            raise NotFound(f"integration {integration!r} does not exist")
        tools = {t["name"]: t for t in snapshot.config.tools} if snapshot.config else {}
        if tool_id not in tools:
            raise NotFound(f"tool {tool_id!r} is not in the integration's bound config")
        return tools[tool_id]
