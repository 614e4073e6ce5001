"""Rate limiter: the same semantics on both backends (in-process and Redis), the Redis key
layout and expiry, exact buckets shared by replicas, coalescing of concurrent checks into one
round trip, NOSCRIPT recovery, lost connections, failover, and bounded memory of the local
backend.

Uses the real Redis at 127.0.0.1:6379 (MCPGW_TEST_REDIS_URL overrides); every test works under
its own key prefix and deletes its keys. Nothing here skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import REDIS_URL
from flaky_limiter import FlakyPrimary
from prometheus_client import REGISTRY
from redis.asyncio import Connection, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.context import Charge, Decision, LimiterUnavailable
from gateway.ratelimit import (
    BucketSpec,
    FailoverLimiter,
    Limits,
    LocalLimiter,
    RedisLimiter,
    create_limiter,
)
from gateway.ratelimit.buckets import decide
from gateway.redis_clients import limiter_options

SLOW = 0.001  # tokens per second: no noticeable refill during a test
Spec = tuple[float, int]


def limits(call: Spec = (SLOW, 100), req: Spec = (SLOW, 100)) -> Limits:
    return Limits(call=BucketSpec(*call), request=BucketSpec(*req))


def new_client(**options: Any) -> Redis:
    return Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2, **options)


@dataclass
class Wire:
    """What a client wrote to Redis: one write per round trip, and the script calls in them."""

    writes: int = 0
    script_calls: int = 0


def counting_client(wire: Wire, **options: Any) -> Redis:
    """A client whose connections count their writes into `wire` (redis-py's public
    `connection_class` hook)."""

    class CountingConnection(Connection):
        async def send_packed_command(
            self, command: bytes | str | Iterable[bytes], check_health: bool = True
        ) -> None:
            if isinstance(command, str):
                command = command.encode()
            chunks = [command] if isinstance(command, bytes) else list(command)
            wire.writes += 1
            wire.script_calls += b"".join(chunks).count(b"\r\nEVALSHA\r\n")
            await super().send_packed_command(chunks, check_health)

    return new_client(connection_class=CountingConnection, **options)


@pytest.fixture
async def wire() -> AsyncIterator[tuple[Redis, Wire]]:
    counts = Wire()
    client = counting_client(counts)
    yield client, counts
    await client.aclose()


def degraded() -> float | None:
    return REGISTRY.get_sample_value("mcpgw_rate_limiter_degraded")


@pytest.fixture
async def prefix(redis_client: Redis) -> AsyncIterator[str]:
    name = f"mcpgwtest-{uuid.uuid4().hex[:12]}"
    yield name
    keys = [key async for key in redis_client.scan_iter(f"{name}:*", count=1000)]
    if keys:
        await redis_client.delete(*keys)


Factory = Callable[..., LocalLimiter | RedisLimiter]


@pytest.fixture(params=["local", "redis"])
async def make(
    request: pytest.FixtureRequest, redis_client: Redis, prefix: str
) -> AsyncIterator[Factory]:
    """Builds a limiter of the parametrized backend: make(call=(rate, burst), req=(rate, burst))."""
    made: list[LocalLimiter | RedisLimiter] = []

    def factory(call: Spec = (SLOW, 100), req: Spec = (SLOW, 100)) -> LocalLimiter | RedisLimiter:
        lim = limits(call, req)
        limiter = (
            LocalLimiter(lim)
            if request.param == "local"
            else RedisLimiter(redis_client, lim, prefix=prefix)
        )
        made.append(limiter)
        return limiter

    yield factory
    for limiter in made:
        await limiter.close()


async def run(limiter, n: int, key: str = "k1", *, tools_call: bool) -> list[Decision]:
    return [await limiter.check(key, tools_call=tools_call) for _ in range(n)]


# Semantics, on both backends ----------------------------------------------------------------


async def test_burst_then_refusal(make: Factory) -> None:
    limiter = make(req=(SLOW, 3))
    decisions = await run(limiter, 4, tools_call=False)
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 for d in decisions)
    assert [d.retry_after_s for d in decisions[:3]] == [0, 0, 0]
    assert decisions[3].retry_after_s > 0
    other = await limiter.check("k2", tools_call=False)  # buckets are per key
    assert other.allowed and other.remaining == 2


async def test_refill_over_time_and_retry_after(make: Factory) -> None:
    limiter = make(req=(20.0, 2))  # one token per 50 ms
    assert [d.allowed for d in await run(limiter, 3, tools_call=False)] == [True, True, False]
    refused = await limiter.check("k1", tools_call=False)
    assert not refused.allowed
    assert 0 < refused.retry_after_s <= 0.05
    assert 0.05 < refused.reset_s <= 0.1
    await asyncio.sleep(refused.retry_after_s)
    after = await limiter.check("k1", tools_call=False)
    assert after.allowed and after.retry_after_s == 0
    await asyncio.sleep(0.11)  # full again
    assert [d.allowed for d in await run(limiter, 3, tools_call=False)] == [True, True, False]


async def test_tools_call_takes_both_buckets_plain_request_only_one(make: Factory) -> None:
    limiter = make(call=(SLOW, 5), req=(SLOW, 10))
    first = await limiter.check("k1", tools_call=True)  # call 4, request 9
    assert (first.allowed, first.limit, first.remaining) == (True, 5, 4)
    plain = await limiter.check("k1", tools_call=False)  # request 8; call bucket untouched
    assert (plain.allowed, plain.limit, plain.remaining) == (True, 10, 8)
    # 4 more tools/call empty the call bucket (request 4 left), the 5th is refused...
    calls = await run(limiter, 5, tools_call=True)
    assert [d.allowed for d in calls] == [True, True, True, True, False]
    # ...without touching the request bucket: exactly 4 plain requests remain.
    plains = await run(limiter, 5, tools_call=False)
    assert [d.allowed for d in plains] == [True, True, True, True, False]


async def test_refused_request_charges_no_bucket(make: Factory) -> None:
    # The call bucket refuses: the request bucket keeps its tokens.
    limiter = make(call=(SLOW, 1), req=(SLOW, 3))
    assert (await limiter.check("a", tools_call=True)).allowed
    assert not any(d.allowed for d in await run(limiter, 3, "a", tools_call=True))
    assert [d.allowed for d in await run(limiter, 3, "a", tools_call=False)] == [True, True, False]
    # The request bucket refuses a tools/call: the call bucket keeps its tokens.
    limiter = make(call=(SLOW, 2), req=(20.0, 1))
    assert (await limiter.check("b", tools_call=False)).allowed  # request bucket now empty
    refused = await limiter.check("b", tools_call=True)
    assert not refused.allowed and refused.limit == 1  # the request bucket is the tighter
    for _ in range(2):  # both call tokens are still there
        # A margin over the refill time: Redis' clock and the event loop's timers are not the
        # same clock, and the loop may wake a timer up to its resolution early.
        await asyncio.sleep(refused.retry_after_s + 0.02)
        assert (await limiter.check("b", tools_call=True)).allowed
    await asyncio.sleep(0.06)
    last = await limiter.check("b", tools_call=True)
    assert not last.allowed and last.limit == 2 and last.retry_after_s > 1


async def test_tighter_bucket_figures(make: Factory) -> None:
    limiter = make(call=(1.0, 3), req=(1.0, 10))
    d = await limiter.check("k1", tools_call=True)
    assert (d.limit, d.remaining) == (3, 2) and 0.99 <= d.reset_s <= 1.0
    d = await limiter.check("k1", tools_call=False)  # only the request bucket is touched
    assert (d.limit, d.remaining) == (10, 8) and 1.9 <= d.reset_s <= 2.0
    # The request bucket is the tighter one.
    limiter = make(call=(1.0, 10), req=(1.0, 2))
    d = await limiter.check("k2", tools_call=True)
    assert (d.limit, d.remaining) == (2, 1)
    # Equal remaining: the bucket that takes longer to refill is reported.
    limiter = make(call=(1.0, 3), req=(0.5, 3))
    d = await limiter.check("k3", tools_call=True)
    assert (d.limit, d.remaining) == (3, 2) and 1.99 <= d.reset_s <= 2.0


async def test_fractional_rates(make: Factory) -> None:
    limiter = make(call=(0.5, 1), req=(2.5, 3))
    d = await limiter.check("k1", tools_call=True)
    assert d.allowed and (d.limit, d.remaining) == (1, 0) and 1.99 <= d.reset_s <= 2.0
    d = await limiter.check("k1", tools_call=True)
    assert not d.allowed and 1.9 < d.retry_after_s <= 2.0
    plains = await run(limiter, 3, tools_call=False)  # 2 request tokens left
    assert [p.allowed for p in plains] == [True, True, False]
    assert 0.3 < plains[2].retry_after_s <= 0.4  # 1 token / 2.5 per s
    await asyncio.sleep(plains[2].retry_after_s)
    assert (await limiter.check("k1", tools_call=False)).allowed


async def test_ended_session_denied_until_expiry(make: Factory) -> None:
    limiter = make()
    await limiter.end_session("k1", "sess-a", time.time() + 0.3)
    await limiter.end_session("k1", "sess-old", time.time() - 5)  # already expired: no entry
    assert await limiter.session_ended("k1", "sess-a")
    for key, session in (("k1", "sess-b"), ("k2", "sess-a"), ("k1", "sess-old")):
        assert not await limiter.session_ended(key, session)
    # A lookup charges nothing; a check beside it is answered as without it.
    decision, ended = await asyncio.gather(
        limiter.check("k1", tools_call=False), limiter.session_ended("k1", "sess-a")
    )
    assert ended and decision.allowed and decision.remaining == 99
    await asyncio.sleep(0.35)
    assert not await limiter.session_ended("k1", "sess-a")


async def test_session_log_level_kept_per_session_until_expiry(make: Factory) -> None:
    limiter = make()
    assert await limiter.session_log_level("k1", "sess-a") is None
    await limiter.set_session_log_level("k1", "sess-a", "warning", time.time() + 0.3)
    await limiter.set_session_log_level("k1", "sess-old", "debug", time.time() - 5)  # expired
    assert await limiter.session_log_level("k1", "sess-a") == "warning"
    for key, session in (("k1", "sess-b"), ("k2", "sess-a"), ("k1", "sess-old")):
        assert await limiter.session_log_level(key, session) is None
    await limiter.set_session_log_level("k1", "sess-a", "error", time.time() + 0.3)
    # Read beside a check and a denylist lookup: each answered as alone, nothing charged.
    decision, ended, level = await asyncio.gather(
        limiter.check("k1", tools_call=True),
        limiter.session_ended("k1", "sess-a"),
        limiter.session_log_level("k1", "sess-a"),
    )
    assert (decision.allowed, decision.remaining, ended, level) == (True, 99, False, "error")
    await asyncio.sleep(0.35)
    assert await limiter.session_log_level("k1", "sess-a") is None


async def test_check_many_answers_each_charge_in_order_as_separate_checks(make: Factory) -> None:
    """A JSON-RPC batch's members: each charge is its own check, so the ones past a bucket's
    tokens are refused and the rest still served; CALL leaves the request bucket alone."""
    limiter = make(call=(SLOW, 3), req=(SLOW, 6))
    decisions = await limiter.check_many(
        "k1", [Charge.CALL, Charge.BOTH, Charge.REQUEST, Charge.BOTH, Charge.BOTH, Charge.REQUEST]
    )
    assert [d.allowed for d in decisions] == [True, True, True, True, False, True]
    # CALL: call bucket 2; BOTH: call 1, request 5; REQUEST: request 4; BOTH: call 0,
    # request 3; refused BOTH charges nothing; REQUEST: request 2.
    assert [(d.limit, d.remaining) for d in decisions] == [
        (3, 2),
        (3, 1),
        (6, 4),
        (3, 0),
        (3, 0),
        (6, 2),
    ]
    assert decisions[4].retry_after_s > 0
    assert await limiter.check_many("k1", []) == []
    after = await limiter.check("k1", tools_call=False)
    assert (after.allowed, after.remaining) == (True, 1)


async def test_check_many_is_one_script_call(wire: tuple[Redis, Wire], prefix: str) -> None:
    client, counts = wire
    limiter = RedisLimiter(client, limits(call=(SLOW, 20), req=(SLOW, 100)), prefix=prefix)
    await limiter.check("warm-up", tools_call=False)
    calls, trips = counts.script_calls, counts.writes
    decisions = await limiter.check_many("k", [Charge.CALL] + [Charge.BOTH] * 49)
    assert (counts.script_calls - calls, counts.writes - trips) == (1, 1)
    assert [d.allowed for d in decisions] == [True] * 20 + [False] * 30
    request = await limiter.check("k", tools_call=False)
    assert request.remaining == 100 - 19 - 1  # 19 BOTH allowed, then this one


async def test_failover_check_many_falls_back_or_refuses() -> None:
    primary = FlakyPrimary()
    local = LocalLimiter(limits(call=(SLOW, 1)))
    open_limiter = FailoverLimiter(primary, local, "open")  # type: ignore[arg-type]
    decisions = await open_limiter.check_many("k", [Charge.CALL, Charge.CALL])
    assert [d.allowed for d in decisions] == [True, False]
    closed = FailoverLimiter(
        FlakyPrimary(),
        LocalLimiter(limits()),  # type: ignore[arg-type]
        "closed",
    )
    with pytest.raises(LimiterUnavailable):
        await closed.check_many("k", [Charge.REQUEST])


async def test_decide_reference_matches_lua(redis_client: Redis, prefix: str) -> None:
    """Random bucket states written straight into Redis give the script's answer and
    buckets.decide's answer alike (rates so slow that refill is below a millisecond)."""
    rng = random.Random(7)
    for case in range(40):
        call = BucketSpec(SLOW, rng.randint(1, 4))
        req = BucketSpec(SLOW * 2, rng.randint(1, 4))
        limiter = RedisLimiter(redis_client, Limits(call=call, request=req), prefix=prefix)
        key = f"case{case}"
        req_key, call_key = limiter.bucket_keys(key)
        seconds, micros = await redis_client.time()
        now_us = seconds * 1_000_000 + micros
        req_tokens = rng.choice([0.0, 0.5, 1.0, rng.uniform(0, req.burst)])
        call_tokens = rng.choice([0.0, 0.25, 1.0, rng.uniform(0, call.burst)])
        await redis_client.hset(req_key, mapping={"tk": repr(req_tokens), "ts": now_us})
        await redis_client.hset(call_key, mapping={"tk": repr(call_tokens), "ts": now_us})
        charge = rng.choice(list(Charge))
        if charge is Charge.REQUEST or charge is Charge.BOTH:
            got = await limiter.check(key, tools_call=charge is Charge.BOTH)
        else:
            [got] = await limiter.check_many(key, [charge])
        buckets = ([(req, req_tokens)] if charge is not Charge.CALL else []) + (
            [(call, call_tokens)] if charge is not Charge.REQUEST else []
        )
        want, _ = decide(buckets)
        assert (got.allowed, got.limit, got.remaining) == (
            want.allowed,
            want.limit,
            want.remaining,
        ), case
        assert abs(got.reset_s - want.reset_s) <= 0.05, case
        assert abs(got.retry_after_s - want.retry_after_s) <= 0.05, case


# Redis specifics --------------------------------------------------------------------------


async def test_redis_key_layout_and_idle_expiry(redis_client: Redis, prefix: str) -> None:
    limiter = RedisLimiter(redis_client, limits(call=(4.0, 2), req=(10.0, 5)), prefix=prefix)
    assert limiter.bucket_keys("kid") == (f"{prefix}:rl:{{kid}}:req", f"{prefix}:rl:{{kid}}:call")
    session_key = limiter.session_key("kid", "s1")
    assert session_key.startswith(f"{prefix}:sess:{{kid}}:") and "s1" not in session_key
    assert len(session_key.rsplit(":", 1)[1]) == 32

    await limiter.check("kid", tools_call=True)
    req_key, call_key = limiter.bucket_keys("kid")
    assert 0 < await redis_client.pttl(req_key) <= 100  # 1 token at 10/s
    assert 0 < await redis_client.pttl(call_key) <= 250  # 1 token at 4/s
    state = await redis_client.hgetall(req_key)
    assert set(state) == {b"tk", b"ts"} and 3.99 <= float(state[b"tk"]) <= 4.0
    await limiter.check("plain", tools_call=False)
    assert not await redis_client.exists(limiter.bucket_keys("plain")[1])  # call bucket untouched

    expires_at = time.time() + 60
    await limiter.end_session("kid", "s1", expires_at)
    assert 59_000 < await redis_client.pttl(session_key) <= 60_010
    # One hash tag for all of a check's keys: one Redis Cluster slot.
    assert {_hash_tag(key) for key in (req_key, call_key, session_key)} == {"kid"}

    fast = RedisLimiter(redis_client, limits(call=(100.0, 1), req=(100.0, 1)), prefix=prefix)
    await fast.check("idle", tools_call=True)
    assert await redis_client.exists(*fast.bucket_keys("idle")) == 2
    await asyncio.sleep(0.05)  # full again after 10 ms: the keys are gone
    assert await redis_client.exists(*fast.bucket_keys("idle")) == 0


def _hash_tag(key: str) -> str:
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


async def test_replicas_share_one_exact_bucket(prefix: str) -> None:
    one, two = new_client(), new_client(decode_responses=True)
    try:
        a = RedisLimiter(one, limits(req=(SLOW, 10)), prefix=prefix)
        b = RedisLimiter(two, limits(req=(SLOW, 10)), prefix=prefix)
        results = []
        for _ in range(5):
            results.append(await a.check("shared", tools_call=False))
            results.append(await b.check("shared", tools_call=False))
        assert all(d.allowed for d in results)
        assert sorted(d.remaining for d in results) == list(range(10))
        assert not (await a.check("shared", tools_call=False)).allowed
        assert not (await b.check("shared", tools_call=False)).allowed
    finally:
        await one.aclose()
        await two.aclose()


async def test_concurrent_checks_are_coalesced(wire: tuple[Redis, Wire], prefix: str) -> None:
    client, counts = wire
    limiter = RedisLimiter(client, limits(call=(SLOW, 50), req=(SLOW, 1000)), prefix=prefix)
    await limiter.check("warm-up", tools_call=False)  # connection and script in place
    writes, calls = counts.writes, counts.script_calls
    decisions = await asyncio.gather(*[limiter.check("hot", tools_call=True) for _ in range(200)])
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 50
    assert sorted(d.remaining for d in allowed) == list(range(50))  # each check exact
    assert all(d.retry_after_s > 0 for d in decisions if not d.allowed)
    assert counts.writes - writes == 1
    assert counts.script_calls - calls == 1  # one for all 200 checks of one key


async def test_a_tick_makes_one_script_call_per_key_with_sequential_answers(
    wire: tuple[Redis, Wire], redis_client: Redis, prefix: str
) -> None:
    """Checks and session lookups of several keys and kinds in one tick answer exactly as the
    same made one at a time."""
    client, counts = wire
    spec = limits(call=(SLOW, 3), req=(SLOW, 5))
    checks = [
        ("a", True, None),
        ("b", False, "s1"),
        ("a", False, "gone"),
        ("a", True, "live"),
        ("b", True, None),
        ("a", True, "gone"),
        ("a", False, None),
        ("a", True, None),
        ("a", False, "live"),
        ("b", False, "s1"),
        ("a", False, None),
    ]
    expires_at = time.time() + 60

    def summary(answers: Sequence[Decision | bool]) -> list[tuple[bool, int, int] | bool]:
        return [a if isinstance(a, bool) else (a.allowed, a.limit, a.remaining) for a in answers]

    together = RedisLimiter(client, spec, prefix=prefix + "-together")
    await together.end_session("a", "gone", expires_at)
    calls, trips = counts.script_calls, counts.writes
    asked: list[Awaitable[Decision | bool]] = []
    for k, t, s in checks:
        asked.append(together.check(k, tools_call=t))
        if s is not None:
            asked.append(together.session_ended(k, s))
    got = await asyncio.gather(*asked)
    assert (counts.script_calls - calls, counts.writes - trips) == (2, 1)

    alone = RedisLimiter(redis_client, spec, prefix=prefix + "-alone")
    await alone.end_session("a", "gone", expires_at)
    want: list[Decision | bool] = []
    for k, t, s in checks:
        want.append(await alone.check(k, tools_call=t))
        if s is not None:
            want.append(await alone.session_ended(k, s))
    assert summary(got) == summary(want)
    assert not all(d.allowed for d in got if isinstance(d, Decision))  # refusals compared too
    assert [e for e in got if isinstance(e, bool)] == [
        s == "gone" for _, _, s in checks if s is not None
    ]


async def test_a_session_lookup_beside_a_check_shares_its_script_call(
    wire: tuple[Redis, Wire], prefix: str
) -> None:
    # What the endpoint does for a legacy request: both asked at once, one round trip.
    client, counts = wire
    limiter = RedisLimiter(client, limits(req=(SLOW, 10)), prefix=prefix)
    await limiter.end_session("k", "gone", time.time() + 60)
    writes, calls = counts.writes, counts.script_calls
    decision, ended = await asyncio.gather(
        limiter.check("k", tools_call=False), limiter.session_ended("k", "gone")
    )
    assert ended and (decision.allowed, decision.remaining) == (True, 9)
    assert (counts.writes - writes, counts.script_calls - calls) == (1, 1)


async def test_a_log_level_lookup_joins_the_same_script_call(
    wire: tuple[Redis, Wire], prefix: str
) -> None:
    # A legacy tools/call: its charge, the denylist and its session's log level, one call.
    client, counts = wire
    limiter = RedisLimiter(client, limits(req=(SLOW, 10)), prefix=prefix)
    await limiter.set_session_log_level("k", "s", "notice", time.time() + 60)
    writes, calls = counts.writes, counts.script_calls
    decision, ended, level, none = await asyncio.gather(
        limiter.check("k", tools_call=True),
        limiter.session_ended("k", "s"),
        limiter.session_log_level("k", "s"),
        limiter.session_log_level("k", "other"),
    )
    assert (decision.allowed, ended, level, none) == (True, False, "notice", None)
    assert (counts.writes - writes, counts.script_calls - calls) == (1, 1)


async def test_batches_grow_while_round_trips_are_in_flight(
    wire: tuple[Redis, Wire], prefix: str
) -> None:
    client, counts = wire
    limiter = RedisLimiter(
        client, limits(req=(SLOW, 10_000)), prefix=prefix, max_inflight=1, max_batch=64
    )
    await limiter.check("warm-up", tools_call=False)
    writes = counts.writes

    async def one_client(i: int) -> int:
        allowed = 0
        for _ in range(10):
            allowed += (await limiter.check(f"k{i % 7}", tools_call=False)).allowed
            await asyncio.sleep(0)
        return allowed

    assert sum(await asyncio.gather(*[one_client(i) for i in range(100)])) == 1000
    assert counts.writes - writes <= 100


async def test_checks_wait_for_a_free_pipeline_and_go_out_together(
    wire: tuple[Redis, Wire], prefix: str
) -> None:
    # With `max_inflight` pipelines on the wire, new checks wait: 20 checks queued behind one
    # in flight go out together in the next round trip.
    client, counts = wire
    limiter = RedisLimiter(client, limits(req=(SLOW, 10_000)), prefix=prefix, max_inflight=1)
    await limiter.check("warm-up", tools_call=False)
    writes = counts.writes
    first = asyncio.create_task(limiter.check("k", tools_call=False))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the check is queued, then its pipeline launched
    rest = [asyncio.create_task(limiter.check(f"k{i % 3}", tools_call=False)) for i in range(20)]
    assert all(d.allowed for d in await asyncio.gather(first, *rest))
    assert counts.writes - writes == 2


async def test_a_second_pipeline_flies_only_once_enough_checks_wait(prefix: str) -> None:
    # With a pipeline on the wire, a few new checks wait for it (a round trip costs more than
    # a check in it); `overlap_min` waiting checks go out at once in a second pipeline. The
    # connections here hold every write until the test opens the gate.
    gate, started = asyncio.Event(), [0]

    class GatedConnection(Connection):
        async def send_packed_command(
            self, command: bytes | str | Iterable[bytes], check_health: bool = True
        ) -> None:
            started[0] += 1
            await gate.wait()
            await super().send_packed_command(command, check_health)

    client = new_client(connection_class=GatedConnection)
    gate.set()  # two pooled connections, connected, before any write is held
    warm = RedisLimiter(client, limits(req=(SLOW, 10_000)), prefix=prefix, overlap_min=1)
    await asyncio.gather(*[warm.check(f"w{i}", tools_call=False) for i in range(40)])

    async def settle() -> None:
        await asyncio.sleep(0.05)  # every launch that will happen has happened by now

    try:
        for waiting, pipelines in ((3, 1), (8, 2)):
            gate.clear()
            started[0] = 0
            limiter = RedisLimiter(
                client, limits(req=(SLOW, 10_000)), prefix=prefix, max_inflight=2, overlap_min=8
            )
            first = asyncio.create_task(limiter.check("k", tools_call=False))
            await settle()
            assert started[0] == 1  # the first check's pipeline is on the wire
            rest = [
                asyncio.create_task(limiter.check("k", tools_call=False)) for _ in range(waiting)
            ]
            await settle()
            assert started[0] == pipelines, (waiting, started[0])
            gate.set()
            assert all(d.allowed for d in await asyncio.gather(first, *rest))
    finally:
        gate.set()
        await client.aclose()


async def test_cancelled_check_does_not_disturb_its_batch(redis_client: Redis, prefix: str) -> None:
    limiter = RedisLimiter(redis_client, limits(req=(SLOW, 3)), prefix=prefix)
    tasks = [asyncio.create_task(limiter.check("k", tools_call=False)) for _ in range(4)]
    await asyncio.sleep(0)
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    # The cancelled check still ran: it took the first token.
    assert [isinstance(d, Decision) and d.allowed for d in results[1:]] == [True, True, False]


async def test_noscript_reload_single_and_pipelined(
    wire: tuple[Redis, Wire], redis_client: Redis, prefix: str
) -> None:
    client, counts = wire
    limiter = RedisLimiter(client, limits(req=(SLOW, 25)), prefix=prefix)
    assert (await limiter.check("k", tools_call=False)).remaining == 24
    await redis_client.script_flush()
    trips = counts.writes
    d = await limiter.check("k", tools_call=False)  # single: NOSCRIPT, load, run once
    assert (d.allowed, d.remaining) == (True, 23)
    assert counts.writes - trips == 2
    await redis_client.script_flush()
    trips = counts.writes
    decisions = await asyncio.gather(*[limiter.check("k", tools_call=False) for _ in range(30)])
    assert sum(d.allowed for d in decisions) == 23  # nothing charged twice, nothing lost
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(23))
    assert counts.writes - trips == 2


# Failover ---------------------------------------------------------------------------------


def dead_client() -> Redis:
    return Redis.from_url(
        "redis://127.0.0.1:1/0",
        socket_timeout=0.2,
        socket_connect_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )


async def test_failover_open_limits_locally_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = dead_client()
    lim = limits(call=(SLOW, 3))
    limiter = FailoverLimiter(
        RedisLimiter(client, lim, timeout_s=0.5), LocalLimiter(lim), "open", retry_interval_s=0.0
    )  # try Redis on every request
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
            decisions = await run(limiter, 4, tools_call=True)
            decisions += await asyncio.gather(
                *[limiter.check("k2", tools_call=True) for _ in range(5)]
            )
            await limiter.end_session("k1", "s1", time.time() + 60)  # no exception
        assert [d.allowed for d in decisions[:4]] == [True, True, True, False]
        assert sum(d.allowed for d in decisions[4:]) == 3
        assert degraded() == 1
        warnings = [r for r in caplog.records if r.name == "gateway.ratelimit"]
        assert len(warnings) == 1 and "Redis unavailable" in warnings[0].getMessage()
        # The session ended while Redis was down is denied from the local denylist.
        assert await limiter.session_ended("k1", "s1")
        # A log level set while Redis is down is this replica's own record meanwhile.
        await limiter.set_session_log_level("k1", "s2", "error", time.time() + 60)
        assert await limiter.session_log_level("k1", "s2") == "error"
    finally:
        await limiter.close()
        await client.aclose()


async def test_failover_closed_raises_limiter_unavailable() -> None:
    client = dead_client()
    lim = limits()
    limiter = FailoverLimiter(RedisLimiter(client, lim, timeout_s=0.5), LocalLimiter(lim), "closed")
    try:
        with pytest.raises(LimiterUnavailable):
            await limiter.check("k1", tools_call=True)
        with pytest.raises(LimiterUnavailable):  # fails fast within the retry interval
            await limiter.check("k1", tools_call=False)
        with pytest.raises(LimiterUnavailable):
            await limiter.end_session("k1", "s1", time.time() + 60)
        assert await limiter.session_ended("k1", "s1")  # ended here: known locally
        with pytest.raises(LimiterUnavailable):
            await limiter.session_ended("k1", "s2")
        with pytest.raises(LimiterUnavailable):
            await limiter.set_session_log_level("k1", "s1", "info", time.time() + 60)
        with pytest.raises(LimiterUnavailable):
            await limiter.session_log_level("k1", "s1")
    finally:
        await limiter.close()
        await client.aclose()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(Exception):
            await reader.read()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_failover_bounds_a_silent_redis_by_the_timeout(mode: str) -> None:
    async with silent_server() as port:
        client = Redis.from_url(f"redis://127.0.0.1:{port}/0", retry=Retry(NoBackoff(), 0))
        lim = limits()
        limiter = FailoverLimiter(RedisLimiter(client, lim, timeout_s=0.2), LocalLimiter(lim), mode)
        try:
            started = time.monotonic()
            if mode == "open":
                assert (await limiter.check("k1", tools_call=True)).allowed
            else:
                with pytest.raises(LimiterUnavailable):
                    await limiter.check("k1", tools_call=True)
            assert time.monotonic() - started < 3.0  # the 0.2 s bound, not a silent hang
        finally:
            await limiter.close()
            await client.aclose()


async def test_failover_leaves_redis_alone_then_recovers() -> None:
    primary = FlakyPrimary()
    now = [100.0]
    limiter = FailoverLimiter(
        primary,
        LocalLimiter(limits()),
        "open",  # type: ignore[arg-type]
        retry_interval_s=1.0,
        clock=lambda: now[0],
    )
    assert (await limiter.check("k", tools_call=True)).limit == 100  # local answer
    for _ in range(5):
        await limiter.check("k", tools_call=True)
    assert primary.calls == 1  # not retried within the interval
    primary.down = False
    now[0] += 1.5
    assert (await limiter.check("k", tools_call=True)).limit == 99  # Redis again
    assert degraded() == 0 and primary.calls == 2


# Local backend memory ----------------------------------------------------------------------


async def test_local_memory_stays_bounded() -> None:
    now = [1000.0]
    limiter = LocalLimiter(
        limits(call=(10.0, 5), req=(10.0, 5)),
        max_keys=10_000,
        max_sessions=1_000,
        sweep_interval_s=5.0,
        clock=lambda: now[0],
    )
    for i in range(100_000):
        limiter.check_now(f"key-{i}", tools_call=i % 2 == 0)
    assert limiter.bucket_count == 10_000
    now[0] += 0.05  # not full yet: the sweep keeps them
    limiter.sweep()
    assert limiter.bucket_count == 10_000
    now[0] += 10.0  # everything refilled: the periodic sweep drops it all
    limiter.check_now("fresh", tools_call=False)
    assert limiter.bucket_count == 1

    wall = time.time()
    for i in range(5_000):
        await limiter.end_session("k", f"s{i}", wall + 60 + i)
    assert limiter.session_count <= 1_000
    assert limiter.is_session_ended("k", "s4999")  # the longest-lived are kept


async def test_local_refused_key_keeps_no_entry_for_unknown_keys() -> None:
    limiter = LocalLimiter(limits(req=(SLOW, 1)))
    assert (await limiter.check("k", tools_call=False)).allowed
    assert not (await limiter.check("k", tools_call=False)).allowed
    assert limiter.bucket_count == 1
    await limiter.close()
    assert limiter.bucket_count == 0


# Wiring -------------------------------------------------------------------------------------


async def test_create_limiter(redis_client: Redis) -> None:
    lim = Limits(call=BucketSpec(2.5, 7), request=BucketSpec(9.0, 30))
    local = create_limiter(lim, None)
    assert isinstance(local, LocalLimiter) and local.limits == lim
    remote = create_limiter(lim, redis_client, failure_mode="closed")
    assert isinstance(remote, FailoverLimiter) and remote.mode == "closed"
    assert isinstance(remote.primary, RedisLimiter) and remote.primary.limits == lim
    await remote.close()
    await local.close()


def test_bucket_spec_validation() -> None:
    for rate, burst in (
        (0, 1),
        (-1, 1),
        (float("inf"), 1),
        (float("nan"), 1),
        (1, 0),
        (1, 1.5),
        (1, True),
    ):
        with pytest.raises(ValueError):
            BucketSpec(rate, burst)  # type: ignore[arg-type]


async def _kill_connections(admin: Redis, name: str) -> int:
    """Close, server-side, every connection of the client named `name`."""
    killed = 0
    for client in await admin.client_list():
        if client.get("name") == name:
            await admin.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


async def test_a_pooled_connection_the_server_closed_is_reconnected(
    redis_client: Redis, prefix: str
) -> None:
    # Redis closes idle clients (its `timeout`) and drops them on restart: with the client the
    # gateway makes, the next check still reaches Redis (redis-py's pool reconnects a
    # connection that has hit EOF) instead of failing over.
    name = f"mcpgw-limiter-{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(REDIS_URL, **limiter_options(2), client_name=name)
    limiter = RedisLimiter(client, limits(), prefix=prefix)
    try:
        assert (await limiter.check("k", tools_call=False)).allowed
        assert await _kill_connections(redis_client, name) == 1
        await asyncio.sleep(0.05)  # the close reaches the client's socket
        decision = await limiter.check("k", tools_call=False)
        assert decision.allowed and decision.remaining == 98  # the same bucket, in Redis
    finally:
        await limiter.close()
        await client.aclose()


class ClosedTransportConnection(Connection):
    """Writes fail as they do on uvloop once the server has closed the connection: redis-py
    disconnects and passes uvloop's RuntimeError on as it is."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        await self.disconnect()
        raise RuntimeError(
            "unable to perform operation on <TCPTransport closed=True "
            "reading=False 0x7f0000000000>; the handler is closed"
        )


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_a_write_to_a_closed_transport_is_a_lost_connection(mode: str) -> None:
    client = new_client(connection_class=ClosedTransportConnection, retry=Retry(NoBackoff(), 0))
    lim = limits(req=(SLOW, 2))
    try:
        with pytest.raises(RedisConnectionError):  # not a RuntimeError: a 500 upstream
            await RedisLimiter(client, lim).check("k", tools_call=False)
        limiter = FailoverLimiter(RedisLimiter(client, lim), LocalLimiter(lim), mode)
        if mode == "open":  # the local buckets answer
            assert (await limiter.check("k", tools_call=False)).remaining == 1
        else:
            with pytest.raises(LimiterUnavailable):
                await limiter.check("k", tools_call=False)
        await limiter.close()
    finally:
        await client.aclose()
