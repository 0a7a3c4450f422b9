"""A multi-broker Kafka (KRaft) on loopback: what a production cluster does when a broker dies.

Each node is broker and controller at once (static voters, one quorum of all nodes), with its
own data directory and a port pair (client P, controller P+1), all formatted with one cluster
id. With three nodes, topics get replication factor 3 and ``min.insync.replicas=2``
(:func:`ioe.kafka.ensure_topics` reads the broker count), so with producers at ``acks=all`` a
write is on two brokers before it is acknowledged and one broker may die without losing it.

Used by ``ioe stack up --brokers 3`` (fixed ports 9092/9094/9096) and by tests on free ports
(:meth:`KafkaCluster.private`), which SIGKILL a node while readings flow.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from devtools.stack import (
    StackError,
    _kafka_java,
    _log4j2,
    _pid_alive,
    _spawn,
    free_port_pair,
    kafka_healthy,
    kafka_libs,
    port_open,
    stop_process_group,
)
from ioe.settings import Settings


@dataclasses.dataclass(frozen=True)
class Node:
    node_id: int
    host: str
    port: int  # client listener; the controller listens on port + 1

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


def node_properties(node: Node, voters: str, data: Path, partitions: int, replicas: int) -> str:
    """server.properties of one node; internal topics replicated like the data topics."""
    min_isr = 2 if replicas >= 3 else 1
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        f"controller.quorum.voters={voters}",
        f"listeners=PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.port + 1}",
        f"advertised.listeners=PLAINTEXT://{node.host}:{node.port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data}",
        f"num.partitions={partitions}",
        f"default.replication.factor={replicas}",
        f"min.insync.replicas={min_isr}",
        f"offsets.topic.replication.factor={replicas}",
        "offsets.topic.num.partitions=12",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_isr}",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "message.max.bytes=16777216",
        "replica.fetch.max.bytes=16777216",
        # a killed broker's replicas leave the ISR quickly, so acks=all writes go on
        "replica.lag.time.max.ms=10000",
        "log.retention.hours=168",
        "log.segment.bytes=67108864",
        "",
    ])


class KafkaCluster:
    """``n`` KRaft nodes from the project's Kafka jars; start/stop/kill one node at a time."""

    def __init__(self, base: Settings, workdir: Path, nodes: list[Node], *,
                 heap: str = "384m") -> None:
        self.workdir = workdir
        self.nodes = nodes
        self.settings = dataclasses.replace(
            base, kafka_bootstrap=",".join(n.bootstrap for n in nodes))
        voters = ",".join(f"{n.node_id}@{n.host}:{n.port + 1}" for n in nodes)
        libs = kafka_libs(base.local_dir)
        cluster_file = workdir / "cluster.id"
        workdir.mkdir(parents=True, exist_ok=True)
        if not cluster_file.exists():
            cluster_id = "-"
            while cluster_id.startswith("-"):  # a leading '-' would be read as an option
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            cluster_file.write_text(cluster_id)
        cluster_id = cluster_file.read_text().strip()
        self._java: dict[int, list[str]] = {}
        self._props: dict[int, Path] = {}
        for node in nodes:
            home = self.home(node)
            props = home / "server.properties"
            props.write_text(node_properties(node, voters, home / "data", base.partitions,
                                             len(nodes)))
            java = _kafka_java(libs, _log4j2(home), heap=heap)
            if not (home / "data" / "meta.properties").exists():
                subprocess.run([*java, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                                "-c", str(props)], check=True, stdout=subprocess.DEVNULL)
            self._java[node.node_id], self._props[node.node_id] = java, props
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @classmethod
    def private(cls, base: Settings, workdir: Path, brokers: int = 3) -> KafkaCluster:
        """A cluster on free ports (tests): the shared stack is never touched."""
        nodes = [Node(i + 1, "127.0.0.1", free_port_pair()) for i in range(brokers)]
        return cls(base, workdir, nodes)

    @classmethod
    def local(cls, base: Settings, brokers: int = 3, first_port: int = 9092) -> KafkaCluster:
        """The stack's cluster on fixed ports 9092, 9094, 9096 … (controllers on +1)."""
        nodes = [Node(i + 1, "127.0.0.1", first_port + 2 * i) for i in range(brokers)]
        return cls(base, base.local_dir / "kafka-cluster", nodes)

    def home(self, node: Node) -> Path:
        path = self.workdir / f"node-{node.node_id}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def start_node(self, node_id: int) -> subprocess.Popen[bytes]:
        proc = _spawn([*self._java[node_id], "kafka.Kafka", str(self._props[node_id])],
                      self.home(self.node(node_id)) / "kafka.log")
        self.procs[node_id] = proc
        return proc

    def start(self, timeout_s: float = 180.0) -> None:
        """Start every node (a KRaft quorum needs a majority before any node serves)."""
        for node in self.nodes:
            if node.node_id not in self.procs or self.procs[node.node_id].poll() is not None:
                self.start_node(node.node_id)
        self.wait_healthy(timeout_s)

    def wait_healthy(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            if node.node_id not in self.procs:
                continue
            single = dataclasses.replace(self.settings, kafka_bootstrap=node.bootstrap)
            while not kafka_healthy(single):
                proc = self.procs[node.node_id]
                if proc.poll() is not None:
                    raise StackError(f"Kafka node {node.node_id} exited; see "
                                     f"{self.home(node) / 'kafka.log'}")
                if time.monotonic() > deadline:
                    raise StackError(f"Kafka node {node.node_id} not healthy after "
                                     f"{timeout_s:.0f}s")
                time.sleep(0.5)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (a crash: no controlled shutdown, no leadership hand-over)."""
        proc = self.procs.pop(node_id, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop(self, timeout_s: float = 30.0) -> None:
        for proc in list(self.procs.values()):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for node_id, proc in list(self.procs.items()):
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            self.procs.pop(node_id, None)


# -- the stack's cluster (``ioe stack up --brokers N``) -------------------------------------------
def _pid_file(cluster: KafkaCluster, node: Node) -> Path:
    return cluster.home(node) / "pid"


def up_cluster(settings: Settings, brokers: int, out: Callable[[str], None] = print) -> str:
    """Start (or reuse) the stack's ``brokers``-node cluster; returns its bootstrap list."""
    cluster = KafkaCluster.local(settings, brokers)
    first = cluster.nodes[0]
    if port_open(first.host, first.port) and not _pid_file(cluster, first).exists():
        raise StackError(f"a Kafka not started as a {brokers}-broker cluster answers on "
                         f"{first.bootstrap}: run `ioe stack down --only kafka` first")
    for node in cluster.nodes:
        pid_file = _pid_file(cluster, node)
        if pid_file.exists() and _pid_alive(int(pid_file.read_text() or 0)):
            cluster.procs[node.node_id] = None  # type: ignore[assignment] # running already
            continue
        proc = cluster.start_node(node.node_id)
        pid_file.write_text(str(proc.pid))
    cluster.procs = {k: v for k, v in cluster.procs.items() if v is not None}
    cluster.wait_healthy()
    out(f"{'kafka':<11} {brokers} brokers       {cluster.settings.kafka_bootstrap} "
        f"(export IOE_KAFKA={cluster.settings.kafka_bootstrap})")
    return cluster.settings.kafka_bootstrap


def down_cluster(settings: Settings, out: Callable[[str], None] = print) -> None:
    """Stop the nodes of the stack's cluster that ``up_cluster`` started (pid files)."""
    base = settings.local_dir / "kafka-cluster"
    for pid_file in sorted(base.glob("node-*/pid")):
        stop_process_group(int(pid_file.read_text() or 0))
        pid_file.unlink(missing_ok=True)
        out(f"{'kafka':<11} {pid_file.parent.name} stopped")
