"""Redis pub/sub change feed: every replica's caches hear about key and settings changes.

The settings service publishes a `Change` after commit; each replica runs one subscription
task that hands changes to its subscribers (the cache). The publishing replica also applies
the change to itself before the request returns, so its own answers are never stale. When the
subscription (re)connects, subscribers are told to flush: changes may have been missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from gateway.observability import metrics
from settings_api.changes import Change, Subscriber

log = logging.getLogger(__name__)

CHANNEL = "mcpgw:changes"


def encode(change: Change, published_at_ms: int | None = None) -> str:
    """The message: tenant, integration, revoked key ids, and the publisher's wall-clock time
    (epoch ms, "at") from which replicas measure the invalidation lag."""
    at = round(time.time() * 1000) if published_at_ms is None else published_at_ms
    return json.dumps({"t": change.tenant_id, "i": change.integration_id,
                       "r": list(change.revoked_key_ids), "at": at}, separators=(",", ":"))


def decode(payload: bytes | str) -> Change | None:
    return decode_message(payload)[0]


def decode_message(payload: bytes | str) -> tuple[Change | None, float | None]:
    """(the change, its publication time in epoch seconds); messages from older versions
    carry no time (None). A malformed message gives (None, None)."""
    try:
        doc: Any = json.loads(payload)
        change = Change(str(doc["t"]), str(doc["i"]), tuple(str(k) for k in doc.get("r", ())))
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring a malformed change message")
        return None, None
    at = doc.get("at")
    if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
        return change, at / 1000
    return change, None


class RedisChangeFeed:
    """`ChangeFeed` over Redis pub/sub, with reconnects and flush-on-resubscribe."""

    def __init__(self, client: redis.Redis, *, channel: str = CHANNEL,
                 retry_s: float = 0.5) -> None:
        self._client = client
        self._channel = channel
        self._retry_s = retry_s
        self._subscribers: list[Subscriber] = []
        self._on_connected: list[Callable[[], None]] = []
        self._on_lost: list[Callable[[], None]] = []
        self.connected = asyncio.Event()

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    def on_connection(self, connected: Callable[[], None], lost: Callable[[], None]) -> None:
        """Callbacks for when the subscription is (re)established and when it is lost."""
        self._on_connected.append(connected)
        self._on_lost.append(lost)

    async def publish(self, change: Change) -> None:
        await self._deliver(change)  # this replica first, before the response is sent
        await self._client.publish(self._channel, encode(change))

    async def _deliver(self, change: Change) -> None:
        for callback in list(self._subscribers):
            try:
                await callback(change)
            except Exception:
                log.exception("change subscriber failed")

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with a short pause after any failure."""
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._notify(self._on_connected)
                self.connected.set()
                log.info("listening for changes on %s", self._channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    change, published_at = decode_message(message["data"])
                    if change is not None:
                        await self._deliver(change)
                        if published_at is not None:
                            metrics.invalidation_applied(time.time() - published_at)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.connected.is_set():
                    log.warning("change subscription lost (%s); retrying", type(exc).__name__)
                self.connected.clear()
                self._notify(self._on_lost)
                await asyncio.sleep(self._retry_s)
            finally:
                await _close_quietly(pubsub.aclose())

    @staticmethod
    def _notify(callbacks: list[Callable[[], None]]) -> None:
        for callback in callbacks:
            callback()


async def _close_quietly(closing: Awaitable[Any]) -> None:
    try:
        await closing
    except (RedisError, OSError):
        pass
