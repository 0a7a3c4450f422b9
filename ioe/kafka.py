"""Kafka plumbing shared by every service: producers that never lose, topic creation.

Two client libraries, one per runtime: threaded processes (the MQTT bridge's paho loop, the
Modbus edge, Datadis, the CLI) use kafka-python; asyncio processes (the Faust worker, which
brings aiokafka, and the web server) use aiokafka. Both are made here, with the same settings.

All producers use ``acks=all`` with retries and at most one in-flight request per connection,
so readings of one community keep their order even when a send is retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner.abc import Partitioner
from kafka.partitioner.default import DefaultPartitioner, murmur2

from ioe.settings import Settings, get_settings
from ioe.topics import TOPICS, TopicSpec

log = logging.getLogger(__name__)


class KeyHashCache(Partitioner):
    """kafka-python's default partitioning (murmur2 of the key, as the Java client and
    aiokafka do, so every producer puts a community on the same partition) with the hash of
    each key remembered: the keys are a few community ids, and the pure-Python murmur2 was a
    fifth of the MQTT bridge's cost of a send. The partition count is read on every record,
    so adding partitions is seen at once."""

    MAX_KEYS = 100_000

    def __init__(self) -> None:
        self._hash: dict[bytes, int] = {}
        self._fallback = DefaultPartitioner()

    def partition(self, topic: str, key: object, serialized_key: bytes | None, value: object,
                  serialized_value: bytes | None, cluster: object) -> int:
        if serialized_key is None:
            return int(self._fallback.partition(topic, key, serialized_key, value,
                                                serialized_value, cluster))
        partitions = cluster.partitions_for_topic(topic)  # type: ignore[attr-defined]
        if not partitions:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        hashed = self._hash.get(serialized_key)
        if hashed is None:
            if len(self._hash) >= self.MAX_KEYS:
                self._hash.clear()
            hashed = self._hash[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        return sorted(partitions)[hashed % len(partitions)]


def _key_bytes(key: object) -> object:
    return key.encode() if isinstance(key, str) else key


def make_producer(settings: Settings | None = None, **overrides: object) -> KafkaProducer:
    settings = settings or get_settings()
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        # a retried send after a broker failover must not write the reading twice
        "enable_idempotence": True,
        "retries": 10,
        "max_in_flight_requests_per_connection": 1,
        "linger_ms": 5,
        "compression_type": "gzip",
        "max_request_size": 16 * 1024 * 1024,
        "request_timeout_ms": 30_000,
        "key_serializer": _key_bytes,
        "partitioner": KeyHashCache(),
    }
    options.update(overrides)
    return KafkaProducer(**options)


def make_async_consumer(settings: Settings | None = None, *, group_id: str | None = None,
                        **overrides: object) -> AIOKafkaConsumer:
    """An aiokafka consumer (asyncio processes); no group and no auto-commit by default:
    followers read every partition and commit nothing, group members commit explicitly."""
    settings = settings or get_settings()
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)


def ensure_topics(
    settings: Settings | None = None,
    specs: Iterable[TopicSpec] = TOPICS,
    *,
    partitions: int | None = None,
    timeout_s: float = 60.0,
) -> list[str]:
    """Create the topics that do not exist yet; returns the physical names of all of them."""
    settings = settings or get_settings()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                     request_timeout_ms=20_000)
            break
        except Exception as exc:  # broker still starting
            if time.monotonic() > deadline:
                raise
            log.info("waiting for Kafka at %s: %s", settings.kafka_bootstrap, exc)
            time.sleep(1)
    try:
        existing = set(admin.list_topics())
        brokers = _broker_count(admin)
        # a real cluster: every partition on 3 brokers, a write on 2 before it is acknowledged
        replication = min(3, brokers)
        durability = {"min.insync.replicas": "2"} if replication >= 3 else {}
        names = []
        for spec in specs:
            name = settings.topic(spec.name)
            names.append(name)
            if name in existing:
                continue
            count = spec.partitions or partitions or settings.partitions
            try:
                admin.create_topics(
                    [NewTopic(name, num_partitions=count, replication_factor=replication,
                              topic_configs={**durability, **dict(spec.config)})]
                )
                log.info("created topic %s (%d partitions, replication %d)", name, count,
                         replication)
            except TopicAlreadyExistsError:
                pass
        return names
    finally:
        admin.close()


def _broker_count(admin: KafkaAdminClient) -> int:
    try:
        return max(1, len(admin.describe_cluster().get("brokers") or []))
    except Exception:  # an old broker without DescribeCluster: assume one
        return 1


def topic_partitions(topic: str, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        described = admin.describe_topics([topic])
        return len(described[0]["partitions"])
    finally:
        admin.close()
