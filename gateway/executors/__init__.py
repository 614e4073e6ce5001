"""Where `tools/call` runs: the upstream proxy (callUrl) and the simulator (testUrl)."""

from gateway.executors.pool import (
    DEFAULT_RELAY_MAX_BODY_BYTES,
    DEFAULT_UPSTREAM_TIMEOUT_S,
    UpstreamPool,
)
from gateway.executors.proxy import ProxyExecutor
from gateway.executors.simulated import SimulatorExecutor

__all__ = [
    "DEFAULT_RELAY_MAX_BODY_BYTES",
    "DEFAULT_UPSTREAM_TIMEOUT_S",
    "ProxyExecutor",
    "SimulatorExecutor",
    "UpstreamPool",
]
