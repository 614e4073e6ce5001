"""Redis pub/sub change feed between replicas (real Redis at 127.0.0.1:6379)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from conftest import REDIS_URL
from polling import until

from gateway.cancelling import cancel_and_wait
from gateway.invalidation import RedisChangeFeed, decode, encode
from settings_api.changes import Change


@pytest.fixture
async def clients() -> AsyncIterator[tuple[redis.Redis, redis.Redis]]:
    a, b = redis.from_url(REDIS_URL), redis.from_url(REDIS_URL)
    yield a, b
    await a.aclose()
    await b.aclose()


def test_messages_round_trip_and_garbage_is_ignored() -> None:
    change = Change("acme", "crm", ("k1", "k2"))
    assert decode(encode(change)) == change
    assert decode(b"not json") is None
    assert decode(b'{"t": "acme"}') is None


async def test_a_change_published_on_one_replica_reaches_the_other(clients) -> None:
    channel = f"test:{uuid.uuid4().hex}"
    one, two = (RedisChangeFeed(c, channel=channel) for c in clients)
    seen_one: list[Change] = []
    seen_two: list[Change] = []

    async def on_one(change: Change) -> None:
        seen_one.append(change)

    async def on_two(change: Change) -> None:
        seen_two.append(change)

    one.subscribe(on_one)
    two.subscribe(on_two)
    task = asyncio.create_task(two.run())
    try:
        await asyncio.wait_for(two.connected.wait(), 2)
        change = Change("acme", "crm", ("old",))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await one.publish(change)
        assert seen_one == [change], "the publishing replica applies it before returning"
        await until(lambda: seen_two == [change])
        assert loop.time() - started < 1.0
    finally:
        task.cancel()


async def test_resubscribing_after_a_lost_connection_asks_for_a_flush(clients) -> None:
    channel = f"test:{uuid.uuid4().hex}"
    feed = RedisChangeFeed(clients[0], channel=channel, retry_s=0.05)
    events: list[str] = []
    feed.on_connection(lambda: events.append("connected"), lambda: events.append("lost"))
    task = asyncio.create_task(feed.run())
    try:
        await until(lambda: events == ["connected"])
        # Kill every pub/sub connection subscribed to our channel, as a Redis restart would.
        killed = 0
        for client in await clients[1].client_list(_type="pubsub"):
            killed += await clients[1].execute_command("CLIENT", "KILL", "ID", client["id"])
        assert killed >= 1
        await until(lambda: events[-1:] == ["connected"] and "lost" in events)
        assert events == ["connected", "lost", "connected"]
    finally:
        task.cancel()


async def test_a_task_that_swallows_a_cancel_is_cancelled_again() -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass  # as redis-py may, mid-command
        await asyncio.sleep(10)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled()


async def test_a_feed_heartbeating_without_pause_stops_on_one_cancel(clients) -> None:
    # redis-py swallowed about half of the cancels that landed in a PUBLISH: a heartbeat loop
    # that publishes all the time gets its cancel there nearly every round.
    for _ in range(20):
        feed = RedisChangeFeed(clients[0], channel=f"test:{uuid.uuid4().hex}", beat_s=0.0)
        task = asyncio.create_task(feed.run())
        await asyncio.wait_for(feed.connected.wait(), 2)
        await asyncio.sleep(0.01)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "the heartbeat loop ran on after its cancel"
