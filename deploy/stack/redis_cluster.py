"""A real Redis Cluster on loopback: N masters, no replicas, AOF on, stopped by PID. A Stack
starts one with `start_redis_cluster` (StackSpec.redis_cluster); alone, as a fixture::

    @pytest.fixture
    def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
        cluster = start_cluster(tmp_path)
        try:
            yield cluster
        finally:
            cluster.stop()

    async def test_something(redis_cluster: RedisClusterNodes) -> None:
        client = redis.asyncio.RedisCluster.from_url(redis_cluster.url, socket_timeout=1)
        try:
            await client.set("dc:{s1}:meta", "x")
        finally:
            await client.aclose()
            # aclose() skips a client whose last call failed (it is marked for re-init):
            await client.nodes_manager.aclose()
            await client.nodes_manager.aclose("startup_nodes")

Start-up takes about 2 s, nearly all of it Redis holding a fresh master back from serving
(its 2 s writable delay); `restart(i)` takes about as long. With `full_coverage=False` the nodes
run `cluster-require-full-coverage no`, so one dead master does not stop the others.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis

from deploy.stack.ports import free_port
from deploy.stack.processes import Process
from deploy.stack.waits import eventually

MASTERS = 3
NODE_TIMEOUT_MS = 2000
"""cluster-node-timeout: how long a silent node takes to be marked FAIL by the others."""
READY_TIMEOUT_S = 20.0
"""A restarted master waits out Redis's writable delay and the FAIL undo time (2 x node timeout)."""
CLI_TIMEOUT_S = 30.0


class RedisClusterNode(Process):
    """One cluster master: its client port, its cluster bus port and its data directory."""

    def __init__(self, data_dir: Path, *, full_coverage: bool) -> None:
        self.port = free_port()
        # The bus defaults to port + 10000, which may be taken or past 65535 for an ephemeral
        # port; a free port of its own (Redis 7 `cluster-port`) avoids both.
        self.bus_port = free_port()
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--cluster-port",
            str(self.bus_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            f"nodes-{self.port}.conf",
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            "--cluster-require-full-coverage",
            "yes" if full_coverage else "no",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        super().__init__(f"redis-cluster-{self.port}", argv, os.environ, data_dir / "redis.log")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        """A plain (non-cluster) client for this node alone."""
        return redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def ping(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
        with self.client() as client:
            return bool(client.ping())

    def cluster_state_ok(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
        with self.client() as client:
            info = client.execute_command("CLUSTER INFO")  # parsed by redis-py into a dict
        return bool(info["cluster_state"] == "ok")

    def flags_of(self, address: str) -> set[str]:
        """The flags this node's view gives the node at `address` (`master`, `fail?`, `fail`)."""
        with self.client() as client:
            view = client.execute_command("CLUSTER NODES")  # parsed: {"ip:port": {...}}
        return set(view[address]["flags"].split(","))


class RedisClusterNodes:
    """N redis-server masters joined into one cluster covering all 16384 slots.

    Invariants: `nodes[i]` keeps its port, bus port and directory across `kill9(i)` and
    `restart(i)`, so a restarted node reloads its cluster config and its AOF and rejoins as
    the same master with the same slots. Every process here was started by us and is stopped
    by its PID.
    """

    def __init__(
        self, base_dir: Path, masters: int = MASTERS, *, full_coverage: bool = True
    ) -> None:
        """`full_coverage=False` sets `cluster-require-full-coverage no`: slots of live masters
        keep serving while another master is down."""
        self.nodes = [
            RedisClusterNode(base_dir / f"node{i}", full_coverage=full_coverage)
            for i in range(masters)
        ]
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        """For `redis.asyncio.RedisCluster.from_url`; the client discovers the other nodes."""
        return f"redis://{self.nodes[0].address}/0"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def start(self) -> None:
        began = time.monotonic()
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            eventually(node.ping, timeout=10)
        self._create()
        self.wait_ok()
        self.startup_seconds = time.monotonic() - began

    def _create(self) -> None:
        argv = [
            "redis-cli",
            "--cluster",
            "create",
            *(node.address for node in self.nodes),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        done = subprocess.run(argv, capture_output=True, timeout=CLI_TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({done.returncode}):\n"
                f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
            )

    def wait_ok(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Waits until every node reports `cluster_state:ok` (all must be running)."""
        eventually(lambda: all(node.cluster_state_ok() for node in self.nodes), timeout=timeout)

    def kill9(self, index: int) -> None:
        """SIGKILL one master: no replica takes over, its slots are down until `restart`."""
        self.nodes[index].kill9()

    def wait_marked_failed(self, index: int, timeout: float = READY_TIMEOUT_S) -> None:
        """Waits until every live node flags `nodes[index]` FAIL (about the node timeout after
        it stopped answering); from then on the cluster acts on the failure."""
        address = self.nodes[index].address
        live = [node for node in self.nodes if node.alive()]
        eventually(lambda: all("fail" in node.flags_of(address) for node in live), timeout=timeout)

    def restart(self, index: int) -> None:
        """Starts a killed master again on the same port and directory; waits for the cluster."""
        node = self.nodes[index]
        node.start()
        eventually(node.ping, timeout=10)
        self.wait_ok()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(
    tmp_path: Path, masters: int = MASTERS, *, full_coverage: bool = True
) -> RedisClusterNodes:
    """A running cluster under `tmp_path / "redis-cluster"`; nothing is left running if it fails."""
    cluster = RedisClusterNodes(tmp_path / "redis-cluster", masters, full_coverage=full_coverage)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
