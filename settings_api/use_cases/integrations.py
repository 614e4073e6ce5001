"""Integrations: create, rename, read, list, and delete (which revokes the integration's keys)."""

from __future__ import annotations

from settings_api.changes import Change
from settings_api.problems import NotFound
from settings_api.store import Integration, Store
from settings_api.use_cases import audit
from settings_api.use_cases.publishing import ChangePublisher
from settings_api.use_cases.store_access import now_ms, translated


class Integrations:
    """A tenant's integrations."""

    def __init__(self, store: Store, publisher: ChangePublisher) -> None:
        self.store = store
        self.publisher = publisher

    async def put(
        self, actor: str, tenant: str, integration: str, name: str
    ) -> tuple[Integration, bool]:
        """Create or rename; returns the integration and whether it was created."""
        async with translated(), self.store.transaction() as tx:
            now = now_ms()
            current = await tx.get_integration(tenant, integration, for_update=True)
            if current is None and await tx.insert_integration(tenant, integration, name, now):
                await audit.record(
                    tx, tenant, actor, "integration.created", integration, {"name": name}
                )
                created = True
            else:
                current = current or await tx.get_integration(tenant, integration, for_update=True)
                if current is not None and current.name != name:
                    await tx.rename_integration(tenant, integration, name, now)
                    await audit.record(
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

    async def get(self, tenant: str, integration: str) -> Integration:
        """The integration; 404 when it does not exist."""
        async with translated(), self.store.reader() as session:
            found = await session.get_integration(tenant, integration)
        if found is None:
            raise NotFound(f"integration {integration!r} does not exist")
        return found

    async def page(self, tenant: str, after: str, limit: int) -> list[Integration]:
        """A page of the tenant's integrations, by id after `after`."""
        async with translated(), self.store.reader() as session:
            return await session.list_integrations(tenant, after, limit)

    async def delete(self, actor: str, tenant: str, integration: str) -> None:
        """Delete an integration with its configs and settings; its key stops working at once."""
        await self.publisher.require_feed()
        async with translated(), self.store.transaction() as tx:
            if await tx.lock_settings(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            revoked = await tx.live_keys(tenant, integration)
            await tx.revoke_live_keys(tenant, integration, now_ms())
            await tx.delete_integration(tenant, integration)
            await audit.record(
                tx,
                tenant,
                actor,
                "integration.deleted",
                integration,
                {"revokedKeyIds": [k.key_id for k in revoked]},
            )
        await self.publisher.publish_revocation(
            Change(tenant, integration, tuple(k.key_id for k in revoked)),
            f"integration {integration!r} is deleted",
        )
