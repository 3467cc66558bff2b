"""A loopback Redis Cluster for the cluster lane of the tests (GATEWAY_TEST_CLUSTER=1).

Three masters and three replicas of the machine's own `redis-server`, made into a cluster by
`redis-cli --cluster create`, each node's data in a temporary folder; started once per test
session and stopped at its end. Ports 7100-7105 unless GATEWAY_TEST_CLUSTER_PORT moves the
first one. The lane runs chosen tests with REDIS_URL on the cluster and RQ's queues
(QUEUE_REDIS_URL) on the plain test Redis; a test may kill a master (`kill_master`) and bring
the node back as a replica (`restart`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.cluster import RedisCluster

ENABLED = os.environ.get("GATEWAY_TEST_CLUSTER", "") == "1"
FIRST_PORT = int(os.environ.get("GATEWAY_TEST_CLUSTER_PORT", "7100"))
NODES = 6  # 3 masters, each with a replica
# How long a master may not answer before its replica takes over: short, so a failover test
# waits a few seconds, not the default 15.
NODE_TIMEOUT_MS = 2000


@dataclass
class Cluster:
    """The running nodes: their ports and processes, and the folder of their data."""

    folder: Path
    ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def client(self, **options: object) -> RedisCluster:
        """A cluster client through a node that is up (a test may have killed the first)."""
        live = [port for port, process in self.processes.items() if process.poll() is None]
        return RedisCluster(host="127.0.0.1", port=live[0], **options)  # type: ignore[arg-type]

    def start_node(self, port: int) -> None:
        node = self.folder / str(port)
        node.mkdir(exist_ok=True)
        command = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(port), "--bind", "127.0.0.1",
            "--cluster-enabled", "yes", "--cluster-config-file", str(node / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--dir", str(node), "--save", "", "--appendonly", "no",
        ]  # fmt: skip
        with (node / "redis.log").open("ab") as log:
            self.processes[port] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _wait(lambda: _answers(port), 10, f"redis-server on port {port}")

    def master_of(self, key: str) -> int:
        """The port of the master that serves `key` now."""
        client = self.client()
        try:
            return int(client.get_node_from_key(key).port)
        finally:
            client.close()

    def kill_master(self, key: str) -> int:
        """SIGKILL the master serving `key`; its port."""
        port = self.master_of(key)
        self.processes[port].send_signal(signal.SIGKILL)
        self.processes[port].wait(10)
        return port

    def restart(self, port: int) -> None:
        """Start a killed node again: it rejoins as a replica of whoever took its slots."""
        self.start_node(port)
        _wait(self.healthy, 30, "the cluster healthy again")

    def healthy(self) -> bool:
        """Every node answers, the cluster is ok, and each of the 3 masters has a live replica."""
        for port in self.ports:
            try:
                with redis.Redis(port=port, socket_timeout=1) as node:
                    info = node.cluster("info")
            except redis.RedisError:
                return False
            if info.get("cluster_state") != "ok":
                return False
        with redis.Redis(port=self.ports[0], decode_responses=True) as node:
            nodes = node.cluster("nodes")
        live = [n for n in nodes.values() if "fail" not in n["flags"] and n["connected"]]
        masters = [n for n in live if "master" in n["flags"]]
        return len(live) == NODES and len(masters) == NODES // 2

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


def start() -> Cluster:
    """Start the nodes and make them a cluster; AssertionError when it is not up in 60 s."""
    for port in range(FIRST_PORT, FIRST_PORT + NODES):
        if _answers(port):
            raise AssertionError(f"port {port} is taken by a Redis already: the cluster lane needs its own")
    cluster = Cluster(
        Path(tempfile.mkdtemp(prefix="gw-cluster-")), list(range(FIRST_PORT, FIRST_PORT + NODES))
    )
    try:
        for port in cluster.ports:
            cluster.start_node(port)
        addresses = [f"127.0.0.1:{port}" for port in cluster.ports]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait(cluster.healthy, 60, "the cluster's nodes to agree")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _answers(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_connect_timeout=0.5) as node:
            return bool(node.ping())
    except redis.RedisError:
        return False


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
