"""The tool-call log: batches the data plane records, pages a tenant reads, and the retention
delete (docs/operations.md, "Tool-call log")."""

from __future__ import annotations

from collections.abc import Sequence

from settings_api.problems import NotFound
from settings_api.store import CallQuery, Store, ToolCall
from settings_api.use_cases.store_access import translated

# The retention delete's lock (any number, the same on every replica) and chunk size.
RETENTION_JOB = 0x6D6370677763  # "mcpgwc"
RETENTION_CHUNK = 5_000
# Longer X-Run-Id values are cut to this many characters when recorded.
MAX_RUN_ID = 256
URLS = ("call", "test")
# Past every row: the first page's cursor.
NEWEST = (2**62, 2**62)


class CallLog:
    """Writes, reads and expires the tool-call log."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(self, calls: Sequence[ToolCall]) -> None:
        """Store a batch of calls in one transaction (raw store errors: the data plane drops
        the batch and counts it)."""
        if calls:
            async with self.store.transaction() as tx:
                await tx.insert_calls(calls)

    async def page(self, tenant: str, integration: str, page: CallQuery) -> list[ToolCall]:
        """A page of the integration's calls; 404 for an unknown integration."""
        async with translated(), self.store.reader() as session:
            if await session.get_integration(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            return await session.list_calls(tenant, integration, page)

    async def expire(self, before_ms: int) -> int | None:
        """Delete the calls made before `before_ms`, a chunk per transaction; how many were
        deleted, or None when another replica holds the job's lock (it is doing the same)."""
        deleted = 0
        while True:
            async with self.store.transaction() as tx:
                if not await tx.try_job_lock(RETENTION_JOB):
                    return None if deleted == 0 else deleted
                chunk = await tx.delete_calls_before(before_ms, RETENTION_CHUNK)
            deleted += chunk
            if chunk < RETENTION_CHUNK:
                return deleted
