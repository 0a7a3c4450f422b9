"""The ``ioe.live`` (and ``ioe.registry``) consumer of one web instance.

Why no consumer group: every web instance must see every partition, since any client may
subscribe to any community (DESIGN.md §6). Partitions are assigned by hand; on start each
``ioe.live`` partition is read from a little before its end (``backfill`` messages) so the
snapshots are warm at once, and ``ioe.registry`` (compacted) is read from the beginning so the
instance follows registry changes without a restart.

kafka-python is blocking, so the consumer runs in a thread and hands each polled batch to the
event loop with one ``call_soon_threadsafe``: the loop never waits for Kafka and Kafka never
waits for a websocket.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import orjson
from kafka import KafkaConsumer, TopicPartition

from ioe.settings import Settings
from ioe.topics import LIVE, REGISTRY

log = logging.getLogger(__name__)

Batch = list[tuple[str, bytes | None, bytes | None]]  # (logical topic, key, value)


class LiveConsumer:
    """Polls Kafka in a thread and delivers batches to ``deliver`` on the event loop."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop,
                 deliver: Callable[[Batch], None], *, backfill: int = 200,
                 follow_registry: bool = True) -> None:
        self.settings = settings
        self.loop = loop
        self.deliver = deliver
        self.backfill = backfill
        self.follow_registry = follow_registry
        self.ready = threading.Event()
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ioe-live-consumer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _partitions(self, consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
        deadline = time.monotonic() + 30
        while not self._stop.is_set():
            found = consumer.partitions_for_topic(topic)
            if found:
                return [TopicPartition(topic, p) for p in sorted(found)]
            if time.monotonic() > deadline:
                log.warning("topic %s not found yet; still waiting", topic)
                deadline = time.monotonic() + 60
            time.sleep(0.5)
        return []

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception as exc:  # a broker restart must not kill the web server
                self.error = f"{type(exc).__name__}: {exc}"
                log.exception("live consumer failed; retrying in 2 s")
                self._stop.wait(2)

    def _consume(self) -> None:
        live = self.settings.topic(LIVE)
        registry = self.settings.topic(REGISTRY)
        consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
                                 enable_auto_commit=False, fetch_max_wait_ms=50,
                                 max_poll_records=2000)
        try:
            live_parts = self._partitions(consumer, live)
            registry_parts = self._partitions(consumer, registry) if self.follow_registry else []
            consumer.assign(live_parts + registry_parts)
            ends = consumer.end_offsets(live_parts) if live_parts else {}
            starts = consumer.beginning_offsets(live_parts) if live_parts else {}
            for tp in live_parts:
                consumer.seek(tp, max(starts[tp], ends[tp] - self.backfill))
            if registry_parts:
                consumer.seek_to_beginning(*registry_parts)
            names = {live: LIVE, registry: REGISTRY}
            self.ready.set()
            self.error = None
            log.info("following %s (%d partitions) and %s", live, len(live_parts),
                     registry if registry_parts else "no registry topic")
            while not self._stop.is_set():
                polled = consumer.poll(timeout_ms=200)
                if not polled:
                    continue
                batch: Batch = [(names[tp.topic], record.key, record.value)
                                for tp, records in polled.items() for record in records]
                self.loop.call_soon_threadsafe(self.deliver, batch)
        finally:
            consumer.close()


def decode(value: bytes | None) -> object:
    """JSON value of a record (``orjson.JSONDecodeError`` on garbage)."""
    if value is None:
        return None
    return orjson.loads(value)
