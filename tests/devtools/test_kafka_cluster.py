"""A 3-broker cluster loses one broker (SIGKILL) while readings flow: nothing lost, none twice.

The connectors' producer (``ioe.kafka.make_producer``: acks=all, idempotent) writes numbered
readings to topics made by ``ioe.kafka.ensure_topics`` (replication 3, min.insync.replicas 2 on
a 3-broker cluster) while the broker leading most partitions is killed; then every number is
read back exactly once, and the broker, restarted, catches up into every partition's ISR.
The broker-kill test is long: three JVMs start on a 2-core machine (``pytest -m long``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType

from devtools.kafka_cluster import KafkaCluster
from ioe.kafka import ensure_topics, make_producer
from ioe.reading import Reading
from ioe.settings import Settings
from ioe.topics import READINGS, TOPICS


def _partitions(settings: Settings, topic: str) -> list[dict]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        return admin.describe_topics([topic])[0]["partitions"]
    finally:
        admin.close()


@pytest.mark.long
def test_broker_killed_while_readings_flow(local_stack: Settings, tmp_path: Path,
                                           unique_id: str) -> None:
    cluster = KafkaCluster.private(dataclasses.replace(local_stack, partitions=6),
                                   tmp_path / "cluster")
    cluster.start()
    try:
        settings = dataclasses.replace(cluster.settings, topic_prefix=f"t{unique_id}.",
                                       partitions=6)
        ensure_topics(settings, [s for s in TOPICS if s.name == READINGS])
        topic = settings.topic(READINGS)
        parts = _partitions(settings, topic)
        assert all(len(p["replica_nodes"]) == 3 for p in parts)
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        admin.close()
        assert "min.insync.replicas" in str(configs) and "'2'" in str(configs), configs

        total = 6000
        failures: list[Exception] = []
        producer = make_producer(settings)

        def flow() -> None:
            futures = []
            for n in range(total):
                reading = Reading(device_id=f"dev-{n % 30}", ts_ms=1_760_000_000_000 + n,
                                  source="test", community_id=f"ce-{n % 7}",
                                  power_w=float(n))
                futures.append(producer.send(topic, key=f"ce-{n % 7}",
                                             value=reading.to_json()))
                if n % 200 == 0:
                    time.sleep(0.05)  # a steady flow, not one burst
            for fut in futures:
                try:
                    fut.get(timeout=120)
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    failures.append(exc)

        sender = threading.Thread(target=flow)
        sender.start()
        time.sleep(1.0)
        leaders = Counter(p["leader_id"] for p in parts)
        victim = leaders.most_common(1)[0][0]
        cluster.kill(victim)
        sender.join(300)
        producer.flush(60)
        producer.close()
        assert not sender.is_alive()
        assert not failures, failures[:3]

        consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                 group_id=None, auto_offset_reset="earliest",
                                 enable_auto_commit=False, consumer_timeout_ms=10_000)
        seen = Counter(int(orjson.loads(r.value)["power_w"]) for r in consumer)
        consumer.close()
        assert sorted(seen) == list(range(total))       # nothing lost
        assert max(seen.values()) == 1                  # nothing written twice

        cluster.start_node(victim)
        cluster.wait_healthy()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(len(p["isr_nodes"]) == 3 for p in _partitions(settings, topic)):
                break
            time.sleep(1)
        assert all(len(p["isr_nodes"]) == 3 for p in _partitions(settings, topic))
    finally:
        cluster.stop()


@pytest.mark.parametrize("brokers", [3])
def test_stack_cluster_refuses_to_start_over_a_running_single_broker(
        local_stack: Settings, tmp_path: Path, brokers: int) -> None:
    """`ioe stack up --brokers 3` never starts nodes beside the stack's single broker on 9092
    (it would take its port); it says how to stop it first."""
    from devtools.kafka_cluster import up_cluster
    from devtools.stack import StackError

    settings = dataclasses.replace(local_stack, local_dir=tmp_path)
    with pytest.raises(StackError, match="ioe stack down --only kafka"):
        up_cluster(settings, brokers)
    assert not list(tmp_path.glob("kafka-cluster/node-*/pid"))
