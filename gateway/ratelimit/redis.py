"""Redis limiter: both buckets in one atomic Lua script per key, the ended-session denylist and
the sessions' log levels beside them, and the checks of one event-loop tick sent as one
pipeline.

Key layout (every key of one call shares the hash tag ``{<key_id>}``, so a script call
touches a single Redis Cluster slot)::

    <prefix>:rl:{<key_id>}:req      hash {tk: tokens, ts: server time in µs}  all-requests bucket
    <prefix>:rl:{<key_id>}:call     hash {tk, ts}                             tools/call bucket
    <prefix>:sess:{<key_id>}:<d>    "1" until the session's expiry (PXAT)     ended session
                                    d = sha256(session id)[:32]
    <prefix>:loglevel:{<key_id>}:<d> the level of logging/setLevel, until the session's expiry

Bucket hashes carry a PEXPIRE of their time to refill fully: an idle key vanishes exactly when
it would be full again, which is what a missing key means.

Coalescing: checks and session lookups are queued, and once per event-loop tick the queue is
grouped by key: one EVALSHA per key answers that key's checks in arrival order, each exactly as
its own call at the same instant would (Redis runs a script atomically, so no other replica's
check lands between them). The EVALSHAs of all keys go out as one redis-py pipeline without
MULTI (one round trip). While a pipeline is on the wire, new checks wait and join the next one
unless `overlap_min` of them are waiting (and never more than `max_inflight` pipelines fly),
so batches grow with load instead of round trips. On NOSCRIPT (script
cache flushed, failover to a fresh server) the script is loaded again and only the affected
calls are re-sent; a NOSCRIPT reply means the script did not run, so nothing is charged twice.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.context import Charge, Decision
from gateway.ratelimit.buckets import EPSILON, Limits, session_digest
from gateway.redis_clients import RedisClient

# A transcription of gateway.ratelimit.buckets (refill, check, charge, figures); keep in step.
SCRIPT = """
-- One key's checks, in order, as if each were its own call at the same instant.
-- KEYS[1] request bucket, KEYS[2] tools/call bucket, KEYS[3..] ended-session markers
-- ARGV[1..4] request rate/s, request burst, call rate/s, call burst
-- ARGV[5..] one per check: 'p' (request bucket), 'c' (request and tools/call buckets), 'k'
--           (tools/call bucket only), 's' and the index in KEYS of a session marker ('s3':
--           is that session ended? no bucket touched), or 'l' and the index of a session's
--           log-level key ('l4': its level, '' when none)
-- -> one line per check: 'allowed limit remaining reset_ms retry_after_ms' (the tighter
--    bucket's figures), '1'/'0' for a session, a level or '' for a log level (one bulk
--    string is far cheaper for the Python client to parse than nested arrays)
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
local out = {}
for c = 5, #ARGV do
  local spec = ARGV[c]
  local kind = string.sub(spec, 1, 1)
  if kind == 's' then
    out[#out + 1] = tostring(redis.call('EXISTS', KEYS[tonumber(string.sub(spec, 2))]))
  elseif kind == 'l' then
    out[#out + 1] = redis.call('GET', KEYS[tonumber(string.sub(spec, 2))]) or ''
  else
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
    local ok = 0
    if allowed then ok = 1 end
    out[#out + 1] = string.format('%d %d %d %d %d', ok, limit, remaining, reset_ms, retry_ms)
  end
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

# The script's letter for each charge; "s" asks whether a session ended, "l" for its log level.
_FLAGS: dict[Charge, str] = {Charge.REQUEST: "p", Charge.BOTH: "c", Charge.CALL: "k"}
_SESSION = "s"
_LOG_LEVEL = "l"

_Call = tuple[list[str], list[str]]  # one script call's KEYS and ARGV


@dataclass(slots=True)
class _Check:
    key_id: str
    flag: str  # _FLAGS, _SESSION or _LOG_LEVEL
    session_id: str | None  # for _SESSION and _LOG_LEVEL
    future: asyncio.Future[bytes]


class RedisLimiter:
    """`RateLimiter` and `SessionDenylist` on Redis, exact across replicas. Redis errors
    propagate (see `FailoverLimiter`); every round trip is bounded by `timeout_s`.

    Give it a client built with `limiter_options` (gateway/redis_clients.py). The client
    belongs to the caller: `close` does not close it.
    """

    def __init__(
        self,
        client: RedisClient,
        limits: Limits,
        *,
        prefix: str = "mcpgw",
        timeout_s: float = 0.5,
        max_batch: int = 512,
        max_inflight: int = 2,
        overlap_min: int = 8,
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
        self._script: AsyncScript = client.register_script(SCRIPT)
        # A cluster pipeline cannot carry SCRIPT LOAD (it goes to every primary), and a
        # cluster client without retries never learns on its own that a master it cannot
        # reach was replaced: after a lost connection it is told to map the cluster again.
        self._cluster = client if isinstance(client, RedisCluster) else None
        req, call = limits.request, limits.call
        self._argv = (
            repr(float(req.rate_per_s)),
            str(req.burst),
            repr(float(call.rate_per_s)),
            str(call.burst),
        )
        self._pending: list[_Check] = []
        self._scheduled = False
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # Key layout -------------------------------------------------------------------------

    def bucket_keys(self, key_id: str) -> tuple[str, str]:
        return (f"{self.prefix}:rl:{{{key_id}}}:req", f"{self.prefix}:rl:{{{key_id}}}:call")

    def session_key(self, key_id: str, session_id: str) -> str:
        return f"{self.prefix}:sess:{{{key_id}}}:{session_digest(session_id)}"

    def log_level_key(self, key_id: str, session_id: str) -> str:
        return f"{self.prefix}:loglevel:{{{key_id}}}:{session_digest(session_id)}"

    def _script_call(self, key_id: str, checks: list[_Check]) -> _Call:
        """KEYS and ARGV of one script call answering `checks` (all of `key_id`) in order."""
        keys = list(self.bucket_keys(key_id))
        indexes: dict[str, int] = {}
        specs: list[str] = []
        for check in checks:
            if check.session_id is None:
                specs.append(check.flag)
                continue
            name = (self.session_key if check.flag == _SESSION else self.log_level_key)(
                key_id, check.session_id
            )
            index = indexes.get(name)
            if index is None:
                keys.append(name)
                index = indexes[name] = len(keys)  # Lua counts from 1
            specs.append(f"{check.flag}{index}")
        return keys, [*self._argv, *specs]

    # RateLimiter --------------------------------------------------------------------------

    async def check(self, key_id: str, *, tools_call: bool) -> Decision:
        charge = Charge.BOTH if tools_call else Charge.REQUEST
        return _decision(await self._queue(key_id, _FLAGS[charge], None))

    async def check_many(self, key_id: str, charges: Sequence[Charge]) -> list[Decision]:
        # Queued together, so they reach the script together and in order (one call).
        futures = [self._queue(key_id, _FLAGS[charge], None) for charge in charges]
        try:
            return [_decision(line) for line in await asyncio.gather(*futures)]
        except BaseException:
            for future in futures:  # a failed or cancelled caller leaves none pending
                future.cancel()
            raise

    # SessionDenylist ----------------------------------------------------------------------

    async def session_ended(self, key_id: str, session_id: str) -> bool:
        return await self._queue(key_id, _SESSION, session_id) == b"1"

    async def end_session(self, key_id: str, session_id: str, expires_at_s: float) -> None:
        expires_at_ms = math.ceil(expires_at_s * 1000)
        if expires_at_ms <= 0:
            return
        async with asyncio.timeout(self.timeout_s):
            # PXAT in the past is accepted and leaves no key: an expired session needs none.
            await self.client.set(self.session_key(key_id, session_id), b"1", pxat=expires_at_ms)

    # SessionLogLevels ---------------------------------------------------------------------

    async def session_log_level(self, key_id: str, session_id: str) -> str | None:
        return (await self._queue(key_id, _LOG_LEVEL, session_id)).decode() or None

    async def set_session_log_level(
        self, key_id: str, session_id: str, level: str, expires_at_s: float
    ) -> None:
        expires_at_ms = math.ceil(expires_at_s * 1000)
        if expires_at_ms <= 0:
            return
        async with asyncio.timeout(self.timeout_s):
            # The key lives exactly as long as the session: no cleanup, nothing outlives it.
            await self.client.set(
                self.log_level_key(key_id, session_id), level.encode(), pxat=expires_at_ms
            )

    async def close(self) -> None:
        """Let queued and in-flight checks finish (each is bounded by `timeout_s`)."""
        await asyncio.sleep(0)  # a launch scheduled with call_soon runs first
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # Coalescing ---------------------------------------------------------------------------

    def _queue(self, key_id: str, flag: str, session_id: str | None) -> asyncio.Future[bytes]:
        """Queue one check for the next pipeline; its future gets the script's line."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._pending.append(_Check(key_id, flag, session_id, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._launch)
        return future

    def _launch(self) -> None:
        self._scheduled = False
        while self._pending and self._inflight < self._max_inflight:
            if self._inflight and len(self._pending) < self._overlap_min:
                # A pipeline is on the wire: a few checks wait for it and join the next one
                # (a round trip costs far more CPU than a check in it); many go at once.
                break
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._flush(batch))
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
            groups.setdefault(check.key_id, []).append(check)
        try:
            async with asyncio.timeout(self.timeout_s):
                replies = await self._run(
                    [self._script_call(key_id, checks) for key_id, checks in groups.items()]
                )
        except asyncio.CancelledError:  # from outside (shutdown): so are the checks
            for check in batch:
                check.future.cancel()
            raise
        except TimeoutError:
            _fail(batch, TimeoutError(f"no limiter reply within {self.timeout_s} s"))
            await self._remap()
            return
        except Exception as exc:
            _fail(batch, exc)
            if isinstance(exc, _LOST):
                await self._remap()
            return
        if self._cluster is not None and any(isinstance(reply, _LOST) for reply in replies):
            await self._remap()
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
                    future.set_exception(
                        reply
                        if isinstance(reply, Exception)
                        else ResponseError(f"unexpected limiter reply {reply!r}")
                    )

    async def _run(self, calls: list[_Call]) -> list[Any]:
        """Each script call's reply (or its error reply), in one round trip; after NOSCRIPT a
        second one loads the script and sends again the calls that did not run."""
        replies = await self._pipeline(calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            if self._cluster is not None:
                await self._cluster.script_load(SCRIPT)  # on every primary
                again = await self._pipeline([calls[i] for i in missing])
            else:
                loaded, *again = await self._pipeline([calls[i] for i in missing], load=True)
                if isinstance(loaded, Exception):
                    raise loaded
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[_Call], *, load: bool = False) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        if load:
            pipe.script_load(SCRIPT)
        for keys, args in calls:
            # What `evalsha` sends; redis-py's cluster pipeline refuses the named method (it
            # cannot know the keys share a slot) but routes the command by its keys, and
            # every call's keys share one hash tag.
            pipe.execute_command("EVALSHA", self._script.sha, len(keys), *keys, *args)
        try:
            return await pipe.execute(raise_on_error=False)
        except RuntimeError as exc:
            # uvloop refuses to write to a transport the server already closed, with a
            # RuntimeError that redis-py passes on as it is (having disconnected the
            # connection): it is a lost connection, which the failover limiter handles.
            raise RedisConnectionError(f"the Redis connection was closed ({exc})") from exc

    async def _remap(self) -> None:
        """Cluster: forget the topology, so the next pipeline asks the seeds for it (a replica
        promoted after its master went down is found within one retry interval)."""
        if self._cluster is not None:
            await self._cluster.aclose()


# A round trip that lost its connection: in a cluster, maybe to a master that is gone.
_LOST = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


def _fail(batch: list[_Check], exc: BaseException) -> None:
    for check in batch:
        if not check.future.done():
            check.future.set_exception(exc)


def _decision(line: bytes) -> Decision:
    allowed, limit, remaining, reset_ms, retry_ms = line.split()
    return Decision(
        allowed=allowed == b"1",
        limit=int(limit),
        remaining=int(remaining),
        reset_s=int(reset_ms) / 1000,
        retry_after_s=int(retry_ms) / 1000,
    )
