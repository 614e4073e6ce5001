"""Every Redis client of a process, built for `MCPGW_REDIS_MODE` (docs/operations.md, "Redis
Cluster and Sentinel"):

- `standalone`: one server, `MCPGW_REDIS_URL` as redis-py reads it;
- `cluster`: `redis.asyncio.cluster.RedisCluster` from the seed nodes (it follows MOVED/ASK
  and learns the topology from whichever seed answers);
- `sentinel`: the master of `MCPGW_REDIS_SENTINEL_MASTER` through
  `redis.asyncio.sentinel.Sentinel` (each new connection asks the sentinels where it is).

Two clients per process: the shared one (change feed, failed-auth throttle, session writes,
readiness) and the limiter's own (`limiter_options` says why).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from settings_api.config import Settings, redis_nodes

RedisClient: TypeAlias = Redis | RedisCluster
# redis-py's health check before reusing an idle pooled connection (the shared client only).
HEALTH_CHECK_INTERVAL_S = 10


@dataclass(slots=True)
class RedisClients:
    """The process's two clients; `aclose` closes them and any sentinel connections."""

    shared: RedisClient
    limiter: RedisClient
    _sentinels: list[Sentinel] = field(default_factory=list)

    async def aclose(self) -> None:
        await self.limiter.aclose()
        await self.shared.aclose()
        for sentinel in self._sentinels:
            for node in sentinel.sentinels:
                await node.aclose()


def limiter_options(connect_timeout_s: float) -> dict[str, Any]:
    """redis-py options of the client `RedisLimiter` is given (in every Redis mode):

    - no retries: a script call sent again after its reply was lost would charge twice (the
      failover limiter answers a failed round trip instead);
    - no socket timeout: the limiter bounds each round trip itself, where redis-py would bound
      every send and read with a timer of its own; connecting stays bounded;
    - maintenance notifications off: with them on (redis-py's default on RESP3) its pool skips
      the check that reconnects a pooled connection the server closed (Redis' `timeout`, a
      restart), and the next round trip fails instead.
    """
    return {
        "socket_timeout": None,
        "socket_connect_timeout": connect_timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }


def open_clients(settings: Settings) -> RedisClients:
    """Both clients for `settings.redis_url` read per `settings.redis_mode` (no I/O yet)."""
    assert settings.redis_url is not None
    timeout = settings.store_timeout_s
    shared = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }
    sentinels: list[Sentinel] = []
    return RedisClients(
        _client(settings, shared, sentinels),
        _client(settings, limiter_options(timeout), sentinels),
        sentinels,
    )


def _client(settings: Settings, options: dict[str, Any], sentinels: list[Sentinel]) -> RedisClient:
    url = settings.redis_url
    assert url is not None
    if settings.redis_mode == "standalone":
        return Redis.from_url(url, **options)
    nodes = [urlsplit(node) for node in redis_nodes(url)]
    first = nodes[0]
    auth: dict[str, Any] = {
        "username": unquote(first.username) if first.username else None,
        "password": unquote(first.password) if first.password else None,
    }
    tls = first.scheme == "rediss"
    if settings.redis_mode == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(str(n.hostname), int(n.port or 6379)) for n in nodes],
            ssl=tls,
            **auth,
            **options,
        )
    # Sentinels are asked with bounded waits even for the limiter's client (which has no
    # socket timeout of its own): a hung sentinel must not hold a connection attempt.
    connect_s = options["socket_connect_timeout"]
    sentinel = Sentinel(
        [(str(n.hostname), int(n.port or 26379)) for n in nodes],
        sentinel_kwargs={"socket_timeout": connect_s, "socket_connect_timeout": connect_s},
    )
    sentinels.append(sentinel)
    db = first.path.strip("/")
    master: Redis = sentinel.master_for(
        str(settings.redis_sentinel_master),
        ssl=tls,
        db=int(db) if db.isdigit() else 0,
        **auth,
        **options,
    )
    return master


async def mapped(client: RedisClient) -> None:
    """Cluster: learn the slot map now if not known yet (redis-py's cluster pub/sub picks its
    node from the map and fails on an empty one); nothing to do otherwise."""
    if isinstance(client, RedisCluster):
        await client.initialize()


def ping(client: RedisClient) -> Awaitable[Any]:
    """Readiness: one node answers. In a cluster that is the client's default node (a PING to
    every node would take every replica out of service while one Redis node is down)."""
    if isinstance(client, RedisCluster):
        return client.ping(target_nodes=RedisCluster.DEFAULT_NODE)
    return client.ping()
