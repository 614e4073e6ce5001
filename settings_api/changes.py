"""Change notifications from the control plane to every replica's caches.

The settings service publishes a `Change` after each committed mutation that affects keys,
settings or tool catalogs. A change that revokes access (key rotation, disabling, deletion) is
only reported done once the feed confirmed it: `check` before the commit says whether the feed
can take a change now, and `publish` raises `ChangeUndelivered` when it could not confirm the
change in time (the feed then keeps re-sending it in the background). This module has the
interface and the in-process feed (embedded mode); the Redis pub/sub feed lives beside the
data plane's caches.
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


class FeedUnavailable(Exception):
    """The feed cannot take a change right now (nothing was sent)."""


class ChangeUndelivered(Exception):
    """The change was not confirmed in time; the feed keeps re-sending it in the background."""


class ChangeFeed(Protocol):
    async def check(self) -> None:
        """Raise `FeedUnavailable` unless a change published now would be confirmed."""

    async def publish(self, change: Change) -> None:
        """Deliver `change`; raise `ChangeUndelivered` when it could not be confirmed."""

    def subscribe(self, callback: Subscriber) -> None: ...


@dataclass
class LocalChangeFeed:
    """Delivers changes to subscribers in this process only (single-node embedded mode)."""

    subscribers: list[Subscriber] = field(default_factory=list)

    async def check(self) -> None:
        """Always ready: delivery is a function call in this process."""

    async def publish(self, change: Change) -> None:
        for callback in list(self.subscribers):
            try:
                await callback(change)
            except Exception:  # one broken subscriber must not hide the change from the rest
                log.exception("change subscriber failed")

    def subscribe(self, callback: Subscriber) -> None:
        self.subscribers.append(callback)
