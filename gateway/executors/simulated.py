"""testUrl executor: `tools/call` answered by the simulator, never by the upstream.

The simulator (simulator/) is pure and deterministic; this adapter feeds it the integration's
identity, fixtures and fixtures version, and the request's `X-Simulator-Seed`, and waits the
scripted latency without blocking anything else.

A call answered before is served from the simulator's memo on the loop (one lookup). Any other
call runs in a small thread pool of its own: checking a tenant's arguments against a tenant's
schema, and generating its result, may take up to the simulator's step budget (a few hundred
milliseconds of CPU, simulator/budget.py), and that must not stop the event loop that serves
every other tenant, /healthz included. A tenant's calls take one thread at a time (the others
wait in line on the loop), so a tenant sending expensive calls cannot hold every thread while
another tenant waits. The budget, not the pool, decides the answer, so the same call answers
the same however busy the pool is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from gateway.context import RequestContext
from mcp_core.errors import McpError
from simulator import MAX_LATENCY_MS, Simulator

# The work is Python holding the GIL: more threads would not finish it sooner, two let a cheap
# call pass while an expensive one runs.
SIMULATOR_THREADS = 2


class SimulatorExecutor:
    """`ToolExecutor` for the testUrl."""

    def __init__(self, simulator: Simulator | None = None) -> None:
        self.simulator = simulator or Simulator()
        self._pool = ThreadPoolExecutor(SIMULATOR_THREADS, thread_name_prefix="mcpgw-simulator")
        # tenant -> (its lane, calls in or waiting for it); dropped when the last one leaves
        self._lanes: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    async def call_tool(
        self,
        ctx: RequestContext,
        tool: Mapping[str, Any],
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        view = ctx.integration
        identity: dict[str, Any] = {
            "tenant": view.tenant_id,
            "integration": view.integration_id,
            "fixtures_version": view.fixtures_version,
            "seed": ctx.simulator_seed,
            "fixture": view.fixtures.get(str(tool.get("name"))),
        }
        outcome = self.simulator.remembered(tool, arguments, **identity)
        if outcome is None:
            async with self._lane(view.tenant_id):
                outcome = await asyncio.get_running_loop().run_in_executor(
                    self._pool, partial(self.simulator.simulate, tool, arguments, **identity)
                )
        if outcome.latency_ms > 0:
            # A sleep, not work: other requests keep being served meanwhile.
            await asyncio.sleep(min(outcome.latency_ms, MAX_LATENCY_MS) / 1000)
        if outcome.error is not None:
            raise McpError(outcome.error.code, outcome.error.message, outcome.error.data)
        assert outcome.result is not None
        return outcome.result

    @contextlib.asynccontextmanager
    async def _lane(self, tenant: str) -> AsyncIterator[None]:
        """One thread at a time for `tenant`'s calls."""
        lane = self._lanes.get(tenant)
        if lane is None:
            lane = self._lanes[tenant] = (asyncio.Lock(), [0])
        lock, users = lane
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._lanes[tenant]

    def close(self) -> None:
        """Stop the pool's threads (after the last call)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
