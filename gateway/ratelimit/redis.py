"""Redis limiter: both buckets and the session denylist in one atomic Lua script, and
concurrent checks coalesced into one script call per key and one round trip per tick.

Key layout (every key of one call shares the hash tag ``{<key_id>}``, so a script call
touches a single Redis Cluster slot)::

    <prefix>:rl:{<key_id>}:req      hash {tk: tokens, ts: server time in µs}  all-requests bucket
    <prefix>:rl:{<key_id>}:call     hash {tk, ts}                             tools/call bucket
    <prefix>:sess:{<key_id>}:<d>    "1" until the session's expiry (PXAT)     ended session
                                    d = sha256(session id)[:32]

Bucket hashes carry a PEXPIRE of their time to refill fully: an idle key vanishes exactly when
it would be full again, which is what a missing key means.

Coalescing: `check` queues its request and, once per event-loop tick, the queue is grouped by
key: one EVALSHA per key answers that key's checks in arrival order, each exactly as its own
call at the same instant would (Redis runs a script atomically, so no other replica's check
lands between them). The EVALSHAs of all keys are written as one pipelined batch on one pooled
connection and their replies read in order (one round trip, no MULTI). While a batch is on
the wire, new checks wait for it unless `overlap_min` of them are waiting (and never more than
`max_inflight` batches fly at once), so batches grow with load instead of round trips. On
NOSCRIPT (script cache flushed, failover to a fresh server) the script is loaded again and
only the affected calls are re-sent (SCRIPT LOAD + their EVALSHAs, one more round trip); a
NOSCRIPT reply means the script did not run, so nothing is charged twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection as Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from gateway.context import Charge, Decision
from gateway.ratelimit.buckets import EPSILON, Limits, session_digest

# A transcription of gateway.ratelimit.buckets (refill, check, charge, figures); keep in step.
SCRIPT = """
-- One key's checks, in order, as if each were its own call at the same instant.
-- KEYS[1] request bucket, KEYS[2] tools/call bucket, KEYS[3..] ended-session markers
-- ARGV[1..4] request rate/s, request burst, call rate/s, call burst
-- ARGV[5..] one per check: 'p' (request bucket), 'c' (request and tools/call buckets) or 'k'
--           (tools/call bucket only), then the index in KEYS of the check's session marker,
--           if it has one ('c3')
-- -> one line per check, 'allowed limit remaining reset_ms retry_after_ms session_revoked'
--    (the tighter bucket's figures; one bulk string is far cheaper for the Python client to
--    parse than nested arrays)
local EPS = __EPSILON__
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = {tonumber(ARGV[1]), tonumber(ARGV[3])}
local burst = {tonumber(ARGV[2]), tonumber(ARGV[4])}
local tokens, charged = {}, {false, false}
local function load(i)
  local state = redis.call('HMGET', KEYS[i], 'tk', 'ts')
  local tk = burst[i]
  if state[1] and state[2] then
    local elapsed = now - tonumber(state[2])
    if elapsed < 0 then elapsed = 0 end
    tk = math.min(burst[i], tonumber(state[1]) + elapsed * rate[i] / 1000000)
  end
  tokens[i] = tk
end
local revoked_at = {}
local out = {}
for c = 5, #ARGV do
  local spec = ARGV[c]
  local kind = string.sub(spec, 1, 1)
  local first, last = 1, 1
  if kind == 'c' then last = 2 elseif kind == 'k' then first, last = 2, 2 end
  local allowed = true
  for i = first, last do
    if tokens[i] == nil then load(i) end
    if tokens[i] < 1 - EPS then allowed = false end
  end
  local limit, remaining, reset_ms, retry_ms = 0, -1, 0, 0
  for i = first, last do
    local tk = tokens[i]
    if allowed then
      tk = math.max(0, tk - 1)
      tokens[i] = tk
      charged[i] = true
    elseif tk < 1 - EPS then
      local wait = math.ceil((1 - tk) / rate[i] * 1000)
      if wait > retry_ms then retry_ms = wait end
    end
    local left = math.floor(tk + EPS)
    local reset = math.ceil((burst[i] - tk) / rate[i] * 1000)
    if remaining < 0 or left < remaining or (left == remaining and reset > reset_ms) then
      limit, remaining, reset_ms = burst[i], left, reset
    end
  end
  local revoked = 0
  if #spec > 1 then
    local k = tonumber(string.sub(spec, 2))
    if revoked_at[k] == nil then revoked_at[k] = redis.call('EXISTS', KEYS[k]) end
    revoked = revoked_at[k]
  end
  local ok = 0
  if allowed then ok = 1 end
  out[#out + 1] = string.format('%d %d %d %d %d %d', ok, limit, remaining, reset_ms,
                                retry_ms, revoked)
end
for i = 1, 2 do
  if charged[i] then
    local ttl = math.ceil((burst[i] - tokens[i]) / rate[i] * 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('HSET', KEYS[i], 'tk', tokens[i], 'ts', now)
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return table.concat(out, '\\n')
""".replace("__EPSILON__", repr(EPSILON))

SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()  # noqa: S324 (Redis names scripts so)


Command = tuple[bytes | str, ...]
_SCRIPT_LOAD: Command = ("SCRIPT", "LOAD", SCRIPT)
# Encoded commands by their arguments. A key's usual check is the same command every time
# (its bucket keys, the limits, one flag), and redis-py's encoding of it costs about 12 µs;
# commands naming session keys vary, so the memo is bounded and simply starts over when full.
_PACKED_MAX = 4096
# While a batch is on the wire, another goes out only once this many checks wait; fewer wait
# for the wire to be free. At 16 connections that makes batches of about 7 instead of 5
# (fewer round trips, each costing the same whatever its size), while at 64 connections two
# batches still overlap, so the gateway never idles waiting for Redis (docs/performance.md).
OVERLAP_MIN = 8
# A connection kept idle longer than this is checked before its next use, so one the server
# closed meanwhile (Redis `timeout`, a restart) is reconnected instead of failing a batch. Not
# redis-py's health_check_interval: its check costs two loop lookups on every round trip.
IDLE_RECHECK_S = 5.0


# The script's letter for each charge.
_FLAGS: dict[Charge, str] = {Charge.REQUEST: "p", Charge.BOTH: "c", Charge.CALL: "k"}


@dataclass(slots=True)
class _Check:
    key_id: str
    flag: str  # _FLAGS
    session_id: str | None
    future: asyncio.Future[bytes]


class RedisLimiter:
    """`RateLimiter` on Redis, exact across replicas. Redis errors propagate (see
    `FailoverLimiter`); every round trip is bounded by `timeout_s`. The client belongs to the
    caller: `close` does not close it.

    The hot path groups the checks queued in one event-loop tick by API key and sends one
    EVALSHA per key, all pipelined over one pooled connection, encoded by redis-py's own
    `pack_commands` and read back with `read_response`: N concurrent requests of one key cost
    one command to encode and one reply to parse, where redis-py's `Pipeline` costs about
    29 µs per check and a lone `evalsha` 70-80 µs. Client-side retries do not apply to it (a
    lost reply must not charge a bucket twice); a failed batch fails its checks, which
    `FailoverLimiter` answers.
    """

    def __init__(self, client: Redis, limits: Limits, *, prefix: str = "mcpgw",
                 timeout_s: float = 0.5, max_batch: int = 512, max_inflight: int = 2,
                 overlap_min: int = OVERLAP_MIN, idle_recheck_s: float = IDLE_RECHECK_S
                 ) -> None:
        if max_batch < 1 or max_inflight < 1:
            raise ValueError("max_batch and max_inflight must be at least 1")
        self.client = client
        self.limits = limits
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._overlap_min = overlap_min
        self._idle_recheck_s = idle_recheck_s
        req, call = limits.request, limits.call
        self._argv = (repr(float(req.rate_per_s)), str(req.burst), repr(float(call.rate_per_s)),
                      str(call.burst))
        self._pending: list[_Check] = []
        self._scheduled = False
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._packed: dict[Command, bytes] = {}
        # Connections kept between round trips (at most max_inflight), with when each was last
        # used: taking one from the pool and giving it back costs about 12 µs (its lock and
        # bookkeeping) per batch.
        self._idle: list[tuple[Connection, float]] = []
        # Statistics (metrics and tests): checks answered, script calls and round trips used.
        self.checks = 0
        self.script_calls = 0
        self.round_trips = 0

    @property
    def batches_in_flight(self) -> int:
        """Batches launched and not answered yet."""
        return self._inflight

    # Key layout -------------------------------------------------------------------------

    def bucket_keys(self, key_id: str) -> tuple[str, str]:
        return (f"{self.prefix}:rl:{{{key_id}}}:req", f"{self.prefix}:rl:{{{key_id}}}:call")

    def session_key(self, key_id: str, session_id: str) -> str:
        return f"{self.prefix}:sess:{{{key_id}}}:{session_digest(session_id)}"

    def _command(self, key_id: str, checks: list[_Check]) -> Command:
        """One EVALSHA answering `checks` (all of `key_id`) in order."""
        keys = list(self.bucket_keys(key_id))
        sessions: dict[str, int] = {}
        specs: list[str] = []
        for check in checks:
            flag = check.flag
            if check.session_id is None:
                specs.append(flag)
                continue
            index = sessions.get(check.session_id)
            if index is None:
                keys.append(self.session_key(key_id, check.session_id))
                index = sessions[check.session_id] = len(keys)  # Lua counts from 1
            specs.append(f"{flag}{index}")
        return ("EVALSHA", SCRIPT_SHA, str(len(keys)), *keys, *self._argv, *specs)

    # RateLimiter --------------------------------------------------------------------------

    async def check(self, key_id: str, *, tools_call: bool,
                    session_id: str | None = None) -> Decision:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._pending.append(_Check(key_id, "c" if tools_call else "p", session_id, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._launch)
        return _decision(await future)

    async def check_many(self, key_id: str, charges: Sequence[Charge], *,
                         session_id: str | None = None) -> list[Decision]:
        # Queued together, so they reach the script together and in order (one call).
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bytes]] = []
        for charge in charges:
            future: asyncio.Future[bytes] = loop.create_future()
            self._pending.append(_Check(key_id, _FLAGS[charge], session_id, future))
            futures.append(future)
        if futures and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._launch)
        try:
            return [_decision(line) for line in await asyncio.gather(*futures)]
        except BaseException:
            for future in futures:  # a failed or cancelled caller leaves none pending
                future.cancel()
            raise

    async def end_session(self, key_id: str, session_id: str, expires_at_s: float) -> None:
        expires_at_ms = math.ceil(expires_at_s * 1000)
        if expires_at_ms <= 0:
            return
        async with asyncio.timeout(self.timeout_s):
            # PXAT in the past is accepted and leaves no key: an expired session needs none.
            await self.client.set(self.session_key(key_id, session_id), b"1", pxat=expires_at_ms)

    async def close(self) -> None:
        """Let queued and in-flight checks finish (each is bounded by `timeout_s`)."""
        await asyncio.sleep(0)  # a launch scheduled with call_soon runs first
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._idle:
            await self.client.connection_pool.release(self._idle.pop()[0])

    # Coalescing ---------------------------------------------------------------------------

    def _launch(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._pending and (self._inflight == 0 or (
                self._inflight < self._max_inflight and len(self._pending) >= self._overlap_min)):
            batch = self._pending[:self._max_batch]
            del self._pending[:self._max_batch]
            self._inflight += 1
            task = loop.create_task(self._flush(batch))
            self._tasks.add(task)
            task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._inflight -= 1
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._launch)

    async def _flush(self, batch: list[_Check]) -> None:
        groups: dict[str, list[_Check]] = {}
        for check in batch:
            group = groups.get(check.key_id)
            if group is None:
                groups[check.key_id] = [check]
            else:
                group.append(check)
        deadline = asyncio.timeout(self.timeout_s)  # the round trip's bound
        try:
            async with deadline:
                replies = await self._run([self._command(key_id, checks)
                                           for key_id, checks in groups.items()])
        except asyncio.CancelledError:  # from outside (shutdown): so are the checks
            for check in batch:
                check.future.cancel()
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                exc = TimeoutError(f"no limiter reply within {self.timeout_s} s")
            self._fail(batch, exc)
            return
        self.checks += len(batch)
        for checks, reply in zip(groups.values(), replies, strict=True):
            if isinstance(reply, str):  # a client made with decode_responses=True
                reply = reply.encode()
            lines = reply.split(b"\n") if isinstance(reply, bytes) else []
            for index, check in enumerate(checks):
                future = check.future
                if future.done():  # the caller went away
                    continue
                if index < len(lines):
                    future.set_result(lines[index])
                else:
                    future.set_exception(reply if isinstance(reply, Exception) else
                                         ResponseError(f"unexpected limiter reply {reply!r}"))

    @staticmethod
    def _fail(batch: list[_Check], exc: BaseException) -> None:
        for check in batch:
            if not check.future.done():
                check.future.set_exception(exc)

    async def _run(self, commands: list[Command]) -> list[Any]:
        """Every command's reply (or its error reply), in one round trip; two after NOSCRIPT."""
        self.script_calls += len(commands)
        replies = await self._round_trip(commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            # The script did not run for these: load it and send them again, in order.
            again = await self._round_trip([_SCRIPT_LOAD, *(commands[i] for i in missing)])
            if isinstance(again[0], Exception):
                raise again[0]
            for i, reply in zip(missing, again[1:], strict=True):
                replies[i] = reply
        return replies

    def _pack(self, connection: Connection, command: Command) -> bytes:
        """`command` as redis-py encodes it (remembered: see `_PACKED_MAX`)."""
        packed = self._packed.get(command)
        if packed is None:
            if len(self._packed) >= _PACKED_MAX:
                self._packed.clear()
            packed = self._packed[command] = b"".join(connection.pack_command(*command))
        return packed

    async def _round_trip(self, commands: list[Command]) -> list[Any]:
        self.round_trips += 1
        pool = self.client.connection_pool
        now = asyncio.get_running_loop().time()
        if self._idle:
            connection, last_used = self._idle.pop()
            if now - last_used > self._idle_recheck_s:
                await _drop_if_closed(connection)
        else:
            connection = await pool.get_connection()
        try:
            # On any failure (cancellation by the timeout included) redis-py disconnects the
            # connection, so a half-read reply never reaches its next user; it goes back to
            # the pool.
            try:
                await connection.send_packed_command([self._pack(connection, command)
                                                      for command in commands])
            except RuntimeError as exc:
                # uvloop refuses to write to a transport the server already closed, with a
                # RuntimeError that redis-py passes on as it is (it has disconnected the
                # connection): it is a lost connection, which the failover limiter handles.
                raise RedisConnectionError(f"the Redis connection was closed ({exc})") from exc
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as exc:  # an error reply; the stream is still in step
                    replies.append(exc)
        except BaseException:
            await pool.release(connection)
            raise
        self._idle.append((connection, now))
        return replies


def _decision(line: bytes) -> Decision:
    allowed, limit, remaining, reset_ms, retry_ms, revoked = line.split()
    return Decision(allowed=allowed == b"1", limit=int(limit), remaining=int(remaining),
                    reset_s=int(reset_ms) / 1000, retry_after_s=int(retry_ms) / 1000,
                    session_revoked=revoked == b"1")


async def _drop_if_closed(connection: Connection) -> None:
    """Disconnect a kept connection that has anything to read: nothing is owed to it, so that
    is the server's EOF (or a stray reply). redis-py reconnects it on the next send."""
    try:
        closed = await connection.can_read()
    except (RedisConnectionError, OSError):
        closed = True
    if closed:
        await connection.disconnect()
