"""The audit trail: one event written in each change's transaction, read back newest first."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from mcp_core.redaction import has_secrets, redact
from settings_api.store import AuditEvent, Store, StoreSession
from settings_api.use_cases.store_access import now_ms, translated


async def record(
    tx: StoreSession, tenant: str, actor: str, action: str, target: str, details: dict[str, Any]
) -> None:
    """Write one audit event in `tx`, the transaction of the change it records."""
    await tx.insert_audit(str(uuid.uuid4()), tenant, actor, action, target, now_ms(), details)


class AuditTrail:
    """Reads a tenant's audit events."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def events(self, tenant: str, before_seq: int, limit: int) -> list[AuditEvent]:
        """A page of events older than `before_seq`, newest first, URL credentials redacted."""
        async with translated(), self.store.reader() as session:
            events = await session.list_audit(tenant, before_seq, limit)
        return [_shown(event) for event in events]


def _shown(event: AuditEvent) -> AuditEvent:
    # Events recorded before URL credentials were redacted hold the URL as it was given.
    url = event.details.get("upstreamUrl")
    if not isinstance(url, str) or not has_secrets(url):
        return event
    return replace(event, details={**event.details, "upstreamUrl": redact(url)})
