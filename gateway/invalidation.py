"""Redis pub/sub change feed: every replica's caches hear about key and settings changes.

The settings service publishes a `Change` after commit; each replica runs one subscription
task that hands changes to its subscribers (the cache). The publishing replica also applies
the change to itself before the request returns, so its own answers are never stale. When the
subscription (re)connects, subscribers are told to flush: changes may have been missed.

A change message can be lost without the subscription dropping: Redis refusing writes
(`CLIENT PAUSE ... WRITE`, a failover) blocks PUBLISH while subscribers stay connected. So:

- a publish counts as done only when Redis acknowledged it within `confirm_s`; otherwise the
  caller hears `ChangeUndelivered` and the feed re-sends the message in the background every
  `resend_s` until Redis takes it (for at most `give_up_s`: by then every cache entry from
  before the change has expired anyway);
- each listening replica publishes a heartbeat on a channel of its own every `beat_s` and
  expects to hear it back: after `stale_s` without one, subscribers are told the feed is lost
  (the cache then trusts entries for about a second only), and when a heartbeat comes back they
  are told it is connected again (the cache flushes: changes may have been missed meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from gateway.cancelling import cancel_and_wait
from gateway.observability import metrics
from gateway.redis_clients import RedisClient, mapped
from settings_api.changes import Change, ChangeUndelivered, FeedUnavailable, Subscriber

log = logging.getLogger(__name__)

CHANNEL = "mcpgw:changes"
# The bounds behind the revocation guarantee (docs/revocation.md): a replica that
# misses a change stops trusting its cache within STALE_S + the cache's degraded TTL (1 s).
CONFIRM_S = 1.0  # a PUBLISH not acknowledged within this is not confirmed
BEAT_S = 0.25  # heartbeat interval of a listening replica
STALE_S = 1.0  # no heartbeat heard back for this long: the feed is lost for this replica
RESEND_S = 0.25  # re-send interval of unconfirmed changes
GIVE_UP_S = 60.0  # twice the cache TTL: past it, no entry from before the change is left
MAX_PENDING = 10_000  # unconfirmed changes kept for re-sending (oldest dropped first)
_SEND_ERRORS = (TimeoutError, RedisError, OSError)


def encode(change: Change, published_at_ms: int | None = None) -> str:
    """The message: tenant, integration, revoked key ids, and the publisher's wall-clock time
    (epoch ms, "at") from which replicas measure the invalidation lag."""
    at = round(time.time() * 1000) if published_at_ms is None else published_at_ms
    return json.dumps(
        {
            "t": change.tenant_id,
            "i": change.integration_id,
            "r": list(change.revoked_key_ids),
            "at": at,
        },
        separators=(",", ":"),
    )


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
    """`ChangeFeed` over Redis pub/sub: confirmed publishes with background re-sends,
    reconnects, heartbeats, and flush-on-recovery."""

    def __init__(
        self,
        client: RedisClient,
        *,
        channel: str = CHANNEL,
        retry_s: float = 0.5,
        confirm_s: float = CONFIRM_S,
        beat_s: float = BEAT_S,
        stale_s: float = STALE_S,
        resend_s: float = RESEND_S,
        give_up_s: float = GIVE_UP_S,
    ) -> None:
        self._client = client
        self._channel = channel
        # A channel only this feed listens to (heartbeats), and one nobody listens to
        # (`check`'s probe): PUBLISH on either goes through Redis's write path like a change.
        self._beat_channel = f"{channel}:beat:{uuid.uuid4().hex}"
        self._probe_channel = f"{channel}:probe"
        self._retry_s = retry_s
        self._confirm_s = confirm_s
        self._beat_s = beat_s
        self._stale_s = stale_s
        self._resend_s = resend_s
        self._give_up_s = give_up_s
        self._subscribers: list[Subscriber] = []
        self._on_connected: list[Callable[[], None]] = []
        self._on_lost: list[Callable[[], None]] = []
        self._pending: dict[str, float] = {}  # message → when to give up re-sending it
        self._resender: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # subscribed (heartbeats may still be missing)
        self.healthy = False  # subscribed and hearing its own heartbeats

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    def on_connection(self, connected: Callable[[], None], lost: Callable[[], None]) -> None:
        """Callbacks for when the feed is (re)established (flush: changes may have been
        missed) and when it is lost (subscription dropped, or heartbeats stopped)."""
        self._on_connected.append(connected)
        self._on_lost.append(lost)

    # publishing (the settings service) ----------------------------------------------------
    async def check(self) -> None:
        """Raise `FeedUnavailable` unless Redis acknowledges a PUBLISH within `confirm_s`."""
        try:
            await self._send(self._probe_channel, "")
        except _SEND_ERRORS as exc:
            raise FeedUnavailable(
                f"Redis did not acknowledge a publish within "
                f"{self._confirm_s:g} s ({type(exc).__name__})"
            ) from exc

    async def publish(self, change: Change) -> None:
        """Apply `change` here, then publish it; `ChangeUndelivered` when Redis did not
        acknowledge it within `confirm_s` (it is then re-sent in the background)."""
        await self._deliver(change)  # this replica first, before the response is sent
        message = encode(change)
        try:
            await self._send(self._channel, message)
        except _SEND_ERRORS as exc:
            self._resend_later(message)
            raise ChangeUndelivered(
                f"Redis did not acknowledge the change within "
                f"{self._confirm_s:g} s ({type(exc).__name__})"
            ) from exc

    async def aclose(self) -> None:
        """Stop re-sending (shutdown); what is still unconfirmed expires with the caches."""
        if self._resender is not None:
            await cancel_and_wait(self._resender)
        if self._pending:
            log.warning("%d change(s) not confirmed by Redis at shutdown", len(self._pending))

    async def _send(self, channel: str, message: str) -> None:
        # Bounded here: a paused Redis holds a PUBLISH until the pause ends.
        async with asyncio.timeout(self._confirm_s):
            await self._client.publish(channel, message)

    def _resend_later(self, message: str) -> None:
        self._pending[message] = time.monotonic() + self._give_up_s
        while len(self._pending) > MAX_PENDING:
            del self._pending[next(iter(self._pending))]
            log.warning("too many unconfirmed changes: the oldest will not be re-sent")
        if self._resender is None or self._resender.done():
            self._resender = asyncio.create_task(self._resend(), name="mcpgw-change-resend")

    async def _resend(self) -> None:
        """Re-send unconfirmed changes, oldest first, until Redis takes them or they expire."""
        sent = 0
        while self._pending:
            await asyncio.sleep(self._resend_s)
            for message, give_up_at in list(self._pending.items()):
                if time.monotonic() > give_up_at:
                    del self._pending[message]
                    log.warning(
                        "stopped re-sending a change after %g s: cache entries from "
                        "before it have expired on every replica",
                        self._give_up_s,
                    )
                    continue
                try:
                    await self._send(self._channel, message)
                except _SEND_ERRORS:
                    break  # Redis still refuses: try again after the interval
                self._pending.pop(message, None)
                sent += 1
        if sent:
            log.info("re-sent %d change(s) once Redis acknowledged them", sent)

    # listening (each replica's data plane) --------------------------------------------------
    async def _deliver(self, change: Change) -> None:
        for callback in list(self._subscribers):
            try:
                await callback(change)
            except Exception:
                log.exception("change subscriber failed")

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with a short pause after any failure, and
        heartbeating so a feed that stopped carrying messages is noticed."""
        beating = asyncio.create_task(self._beat(), name="mcpgw-change-feed-beat")
        try:
            while True:
                await self._listen_once()
                await asyncio.sleep(self._retry_s)
        finally:
            await cancel_and_wait(beating)

    async def _listen_once(self) -> None:
        beat_channel = self._beat_channel.encode()
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await mapped(self._client)
            await pubsub.subscribe(self._channel, self._beat_channel)
            # A fresh subscription gets `stale_s` to hear its first heartbeat.
            last_beat = time.monotonic()
            self._set_healthy(True)
            self.connected.set()
            log.info("listening for changes on %s", self._channel)
            while True:
                message = await pubsub.get_message(timeout=self._beat_s)
                now = time.monotonic()
                if message is not None and message.get("type") == "message":
                    if message.get("channel") == beat_channel:
                        last_beat = now
                        if not self.healthy:
                            log.info("change feed carries messages again: caches flushed")
                            self._set_healthy(True)
                    else:
                        await self._apply_message(message["data"])
                if self.healthy and now - last_beat > self._stale_s:
                    log.warning(
                        "change feed: no heartbeat for %g s (Redis not relaying "
                        "publishes); caching keys for about a second meanwhile",
                        self._stale_s,
                    )
                    self._set_healthy(False)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            if self.connected.is_set():
                log.warning("change subscription lost (%s); retrying", type(exc).__name__)
            self.connected.clear()
            self._set_healthy(False, force=True)
        finally:
            await _close_quietly(pubsub.aclose())

    async def _apply_message(self, data: bytes | str) -> None:
        change, published_at = decode_message(data)
        if change is not None:
            await self._deliver(change)
            if published_at is not None:
                metrics.invalidation_applied(time.time() - published_at)

    def _set_healthy(self, healthy: bool, *, force: bool = False) -> None:
        """Tell subscribers: connected (flush) on every establishment, lost on every loss."""
        if healthy:
            self.healthy = True
            self._notify(self._on_connected)
        elif self.healthy or force:
            self.healthy = False
            self._notify(self._on_lost)

    async def _beat(self) -> None:
        """Publish a heartbeat to this feed's own channel every `beat_s`."""
        while True:
            with contextlib.suppress(*_SEND_ERRORS):
                async with asyncio.timeout(self._stale_s):
                    await self._client.publish(self._beat_channel, "1")
            await asyncio.sleep(self._beat_s)

    @staticmethod
    def _notify(callbacks: list[Callable[[], None]]) -> None:
        for callback in callbacks:
            callback()


async def _close_quietly(closing: Awaitable[Any]) -> None:
    try:
        await closing
    except (RedisError, OSError):
        pass
