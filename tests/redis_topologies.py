"""Real Redis topologies on loopback for the Redis-mode tests: a 6-node Redis Cluster (3
masters, 1 replica each) and a Sentinel set (1 master, 1 replica, 3 sentinels), each node a
`redis-server` in a temporary directory on free ports, with short failure timeouts so a killed
master is replaced within a few seconds. Not a test module.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from faults import RedisServer
from net import free_port

# A node that misses pings this long is failed over (the defaults take 15 s and 30 s).
NODE_TIMEOUT_MS = 1000
# A replica that never finished its first sync is not promoted: sync at once (the default
# waits 5 s for more replicas).
QUICK_SYNC = ("--repl-diskless-sync-delay", "0")


def cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def cli(port: int, *args: str, timeout_s: float = 10.0) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
    )
    return out.stdout


def _wait(check: object, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (subprocess.SubprocessError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout_s} s")
        time.sleep(0.1)


def _synced(port: int) -> bool:
    """A master, or a replica whose link to its master is up (first sync done)."""
    info = cli(port, "info", "replication")
    return "role:master" in info or "master_link_status:up" in info


class Cluster:
    """Six cluster nodes; `create` makes them 3 masters with 1 replica each."""

    def __init__(self, workdir: Path) -> None:
        self.nodes: list[RedisServer] = []
        for index in range(6):
            directory = workdir / f"cluster-{index}"
            directory.mkdir()
            self.nodes.append(
                RedisServer(
                    directory,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(directory / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(NODE_TIMEOUT_MS),
                    *QUICK_SYNC,
                    port=cluster_port(),
                )
            )

    @property
    def seeds(self) -> str:
        """`MCPGW_REDIS_URL` in cluster mode: every node as a seed."""
        return ",".join(f"redis://127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        create = ["--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"]
        subprocess.run(
            ["redis-cli", *create],
            capture_output=True,
            timeout=60,
            check=True,
        )
        for node in self.nodes:
            _wait(lambda n=node: "cluster_state:ok" in cli(n.port, "cluster", "info"), "ok", 30)
        for node in self.nodes:
            _wait(lambda n=node: _synced(n.port), "replication", 30)
        return self

    def flush_scripts(self) -> None:
        for node in self.nodes:
            cli(node.port, "script", "flush")

    def master_of(self, pattern: str) -> RedisServer:
        """The live master that holds a key matching `pattern`."""
        for node in self.nodes:
            if node.ping() and "role:master" in cli(node.port, "info", "replication"):
                if cli(node.port, "--scan", "--pattern", pattern).strip():
                    return node
        raise AssertionError(f"no master holds {pattern}")

    def wait_promoted(self, dead: RedisServer, timeout_s: float = 20.0) -> None:
        """Until every live node sees every slot served again, none of them by `dead`."""
        live = [node for node in self.nodes if node is not dead]
        gone = f"127.0.0.1\n{dead.port}\n"

        def healed() -> bool:
            return all(
                "cluster_state:ok" in cli(n.port, "cluster", "info")
                and gone not in cli(n.port, "cluster", "slots")
                for n in live
            )

        _wait(healed, "cluster failover", timeout_s)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelSet:
    """A master, its replica, and three sentinels watching master set `name`."""

    def __init__(self, workdir: Path, name: str = "mcpgw") -> None:
        self.name = name
        for directory in ("master", "replica"):
            (workdir / directory).mkdir()
        self.master = RedisServer(workdir / "master", *QUICK_SYNC)
        self.replica = RedisServer(
            workdir / "replica", "--replicaof", "127.0.0.1", str(self.master.port), *QUICK_SYNC
        )
        self.sentinels: list[RedisServer] = []
        for index in range(3):
            config = workdir / f"sentinel-{index}.conf"
            config.write_text(
                f"sentinel monitor {name} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {name} {NODE_TIMEOUT_MS}\n"
                f"sentinel failover-timeout {name} 5000\n"
                f"sentinel parallel-syncs {name} 1\n"
            )
            self.sentinels.append(RedisServer(workdir, "--sentinel", config=config))

    @property
    def urls(self) -> str:
        """`MCPGW_REDIS_URL` in sentinel mode."""
        return ",".join(f"redis://127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica.start()
        _wait(lambda: _synced(self.replica.port), "replication", 30)
        for sentinel in self.sentinels:
            sentinel.start()
        for sentinel in self.sentinels:  # each knows the replica and the other sentinels
            _wait(
                lambda s=sentinel: "slaves=1,sentinels=3" in cli(s.port, "info", "sentinel"),
                "sentinels",
                30,
            )
        return self

    def master_port(self) -> int:
        answer = cli(self.sentinels[0].port, "sentinel", "get-master-addr-by-name", self.name)
        return int(answer.split()[1])

    def wait_promoted(self, timeout_s: float = 20.0) -> None:
        """Until the sentinels name the replica as the master and it takes writes."""

        def promoted() -> bool:
            return self.master_port() == self.replica.port and "role:master" in cli(
                self.replica.port, "info", "replication"
            )

        _wait(promoted, "sentinel failover", timeout_s)

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.master]:
            server.stop()
