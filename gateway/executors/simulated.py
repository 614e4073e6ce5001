"""testUrl executor: `tools/call` answered by the simulator, never by the upstream.

The simulator (simulator/) is pure and deterministic; this adapter feeds it the integration's
identity, fixtures and fixtures version, and the request's `X-Simulator-Seed`, and waits the
scripted latency without blocking anything else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from gateway.context import RequestContext, ToolCallError
from simulator import MAX_LATENCY_MS, Simulator


class SimulatorExecutor:
    """`ToolExecutor` for the testUrl."""

    def __init__(self, simulator: Simulator | None = None) -> None:
        self.simulator = simulator or Simulator()

    async def call_tool(self, ctx: RequestContext, tool: Mapping[str, Any],
                        arguments: dict[str, Any],
                        meta: Mapping[str, Any] | None) -> dict[str, Any]:
        view = ctx.integration
        outcome = self.simulator.simulate(
            tool, arguments, tenant=view.tenant_id, integration=view.integration_id,
            fixtures_version=view.fixtures_version, seed=ctx.simulator_seed,
            fixture=view.fixtures.get(str(tool.get("name"))))
        if outcome.latency_ms > 0:
            # A sleep, not work: other requests keep being served meanwhile.
            await asyncio.sleep(min(outcome.latency_ms, MAX_LATENCY_MS) / 1000)
        if outcome.error is not None:
            raise ToolCallError(outcome.error.code, outcome.error.message, outcome.error.data)
        assert outcome.result is not None
        return outcome.result
