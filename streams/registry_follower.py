"""Follow the compacted ``ioe.registry`` topic into an in-memory :class:`Registry`.

Every worker needs *every* community (a reading may arrive on any partition it owns), so this
is a plain aiokafka consumer without a group that reads all partitions from the beginning,
rather than a Faust table (whose partitions would be split between workers). ``ready`` is set
once the topic has been read up to its end offsets at start-up: the readings agent waits for it,
so a reading is never dead-lettered as ``unknown_device`` merely because the registry was
still loading. Later messages (a coefficient change, a new device) apply without restart.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from ioe.registry import Community, Registry
from ioe.settings import Settings
from ioe.topics import REGISTRY

log = logging.getLogger(__name__)


class RegistryFollower:
    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else Registry()
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One registry message: a community document, or a tombstone removing it."""
        if value is None:
            if key:
                self.registry.remove(key.decode())
            return
        try:
            community = Community.from_json(value)
        except Exception as exc:  # a bad document must not stop the worker
            log.error("ignoring unreadable registry message for %r: %s", key, exc)
            return
        self.registry.put(community)
        log.info("registry: community %s (%d members, %d devices)", community.id,
                 len(community.members), len(community.devices))

    async def run(self) -> None:
        topic = self.settings.topic(REGISTRY)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap,
                                    enable_auto_commit=False, group_id=None)
        self._consumer = consumer
        await consumer.start()
        try:
            # a consumer without subscription keeps no metadata for the topic: ask for it
            partitions = await consumer._client._wait_on_metadata(topic)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            remaining = {tp for tp in tps if end[tp] > 0}
            if not remaining:
                self.ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
                for messages in batch.values():
                    for message in messages:
                        self.apply(message.key, message.value)
                if not self.ready.is_set():
                    for tp in list(remaining):
                        if await consumer.position(tp) >= end[tp]:
                            remaining.discard(tp)
                    if not remaining:
                        log.info("registry loaded: %d communities",
                                 len(self.registry.communities))
                        self.ready.set()
        finally:
            await consumer.stop()
