"""Change notifications from the control plane to every replica's caches.

The settings service publishes a `Change` after each committed mutation that affects keys,
settings or tool catalogs. This module has the interface and the in-process feed (embedded
mode); the Redis pub/sub feed lives beside the data plane's caches.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Change:
    """Something about (tenant, integration) changed; `revoked_key_ids` must stop working now."""

    tenant_id: str
    integration_id: str
    revoked_key_ids: tuple[str, ...] = ()


Subscriber = Callable[[Change], Awaitable[None]]


class ChangeFeed(Protocol):
    async def publish(self, change: Change) -> None: ...

    def subscribe(self, callback: Subscriber) -> None: ...


@dataclass
class LocalChangeFeed:
    """Delivers changes to subscribers in this process only (single-node embedded mode)."""

    subscribers: list[Subscriber] = field(default_factory=list)

    async def publish(self, change: Change) -> None:
        for callback in list(self.subscribers):
            try:
                await callback(change)
            except Exception:  # one broken subscriber must not hide the change from the rest
                log.exception("change subscriber failed")

    def subscribe(self, callback: Subscriber) -> None:
        self.subscribers.append(callback)
