"""Keeping the bridge's registry current from the compacted ``ioe.registry`` topic.

Device → community lookups happen for every message, on another thread, so the registry is never
mutated in place: each update builds a new :class:`Registry` and swaps the reference, which
readers pick up atomically.
"""

from __future__ import annotations

import logging
import threading

from kafka import KafkaConsumer, TopicPartition

from ioe.registry import Community, Registry
from ioe.settings import Settings
from ioe.topics import REGISTRY

log = logging.getLogger(__name__)


class LiveRegistry:
    def __init__(self, initial: Registry | None = None) -> None:
        self._current = initial or Registry()

    def __call__(self) -> Registry:
        return self._current

    def put(self, community: Community) -> None:
        self._current = Registry(dict(self._current.communities) | {community.id: community})

    def remove(self, community_id: str) -> None:
        communities = dict(self._current.communities)
        communities.pop(community_id, None)
        self._current = Registry(communities)


class RegistryFollower(threading.Thread):
    """Reads ``ioe.registry`` from the beginning, then follows it until stopped."""

    def __init__(self, live: LiveRegistry, settings: Settings) -> None:
        super().__init__(name="registry-follower", daemon=True)
        self.live = live
        self.settings = settings
        self.stopping = threading.Event()
        self.caught_up = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        topic = self.settings.topic(REGISTRY)
        while not self.stopping.is_set():
            try:
                self._follow(topic)
            except Exception as exc:  # Kafka restarting: keep the current registry, retry
                log.warning("registry follower: %s; retrying", exc)
                self.stopping.wait(5)

    def _follow(self, topic: str) -> None:
        consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap,
                                 enable_auto_commit=False, group_id=None,
                                 request_timeout_ms=30_000)
        try:
            partitions = None
            while partitions is None and not self.stopping.is_set():
                partitions = consumer.partitions_for_topic(topic)
                if partitions is None:
                    self.caught_up.set()  # nothing to follow (yet)
                    self.stopping.wait(5)
            if partitions is None:
                return
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            consumer.seek_to_beginning(*assigned)
            end = consumer.end_offsets(assigned)
            while not self.stopping.is_set():
                for records in consumer.poll(timeout_ms=1000).values():
                    for record in records:
                        self._apply(record.key, record.value)
                if not self.caught_up.is_set() and all(
                        consumer.position(tp) >= end[tp] for tp in assigned):
                    self.caught_up.set()
        finally:
            consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key:
                self.live.remove(key.decode())
                log.info("registry: community %s removed", key.decode())
            return
        try:
            community = Community.from_json(value)
        except Exception as exc:
            log.error("registry: unreadable message for %s: %s", key, exc)
            return
        self.live.put(community)
        log.info("registry: community %s updated (%d devices)", community.id,
                 len(community.devices))
