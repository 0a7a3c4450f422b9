"""The Kafka feeds of one web instance: ``ioe.live`` (and ``ioe.deadletter``), on the event loop.

Why no consumer group: every web instance must see every partition, since any client may
subscribe to any community (DESIGN.md §6). Partitions are assigned by hand; on start each
partition is read from a little before its end (``backfill`` records per partition), so the
snapshots are warm at once without replaying the whole topic.

The web is an asyncio process, so its consumers are aiokafka (``ioe.kafka.make_async_consumer``)
on the server's own event loop: each fetched batch is handed to ``deliver`` right there, which
never awaits (the hub only touches memory), so Kafka never waits for a websocket and no thread
hand-off is needed. The registry is followed by ``ioe.registry_follower.RegistryFollower``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from aiokafka import TopicPartition

from ioe.kafka import make_async_consumer
from ioe.settings import Settings

log = logging.getLogger(__name__)

Batch = list[tuple[bytes | None, bytes | None]]  # (key, value) of each record, in order


class TopicTail:
    """Follows every partition of one topic from ``backfill`` records before its end."""

    def __init__(self, settings: Settings, topic: str, deliver: Callable[[Batch], None], *,
                 backfill: int = 200, retry_s: float = 2.0) -> None:
        self.settings = settings
        self.logical_topic = topic
        self.deliver = deliver
        self.backfill = backfill
        self.retry_s = retry_s
        #: set once the partitions are assigned (a threading.Event: tests wait from outside)
        self.ready = threading.Event()
        self.error: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> None:
        """Follow until cancelled; a broker outage is retried, never fatal to the server."""
        self.loop = asyncio.get_running_loop()
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker restart must not kill the web server
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("%s consumer failed (%s); retrying in %.0f s", self.logical_topic,
                            self.error, self.retry_s)
                await asyncio.sleep(self.retry_s)

    async def _partitions(self, consumer: object, topic: str) -> list[TopicPartition]:
        """The partitions of ``topic``, waiting for it to exist."""
        waited = 0.0
        while True:
            # an unsubscribed consumer keeps no metadata for the topic: ask the cluster
            cluster = await consumer._client.fetch_all_metadata()  # type: ignore[attr-defined]
            found = cluster.partitions_for_topic(topic)
            if found:
                return [TopicPartition(topic, p) for p in sorted(found)]
            if waited >= 30:
                log.warning("topic %s not found yet; still waiting", topic)
                waited = 0.0
            await asyncio.sleep(0.5)
            waited += 0.5

    async def _consume(self) -> None:
        topic = self.settings.topic(self.logical_topic)
        consumer = make_async_consumer(self.settings, fetch_max_wait_ms=50,
                                       max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            parts = await self._partitions(consumer, topic)
            consumer.assign(parts)
            ends = await consumer.end_offsets(parts)
            starts = await consumer.beginning_offsets(parts)
            for tp in parts:
                consumer.seek(tp, max(starts[tp], ends[tp] - self.backfill))
            self.error = None
            self.ready.set()
            log.info("following %s (%d partitions, last %d records each)", topic, len(parts),
                     self.backfill)
            while True:
                polled = await consumer.getmany(timeout_ms=500, max_records=2000)
                batch: Batch = [(record.key, record.value)
                                for records in polled.values() for record in records]
                if batch:
                    self.deliver(batch)
        finally:
            await consumer.stop()
