"""Follow the compacted ``ioe.registry`` topic into a :class:`Registry` — for every process.

Every service needs *every* community (a worker may own any partition, the bridge routes any
device, the web serves any community), so this is a consumer without a group that reads all
partitions from the beginning and then follows them. ``ready`` is set once the topic was read
to the end offsets seen at start-up: a worker waits for it, so a reading is never dead-lettered
as ``unknown_device`` merely because the registry was still loading. Later records (a
coefficient change, a new device) apply without restart.

One implementation on the asyncio Kafka client (aiokafka, behind :mod:`ioe.kafka`). A threaded
process (the MQTT bridge) runs it on a private event loop with :meth:`start_thread`; the
:class:`Registry` it fills swaps its dicts on every change (copy-on-write), so readers on
other threads always see a whole registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from aiokafka import TopicPartition

from ioe.kafka import make_async_consumer
from ioe.registry import Community, Registry
from ioe.settings import Settings
from ioe.topics import REGISTRY

log = logging.getLogger(__name__)

#: called after each applied record with the community put (None: a community was removed)
OnChange = Callable[[str, Community | None], None]


class RegistryFollower:
    def __init__(self, settings: Settings, registry: Registry | None = None, *,
                 on_change: OnChange | None = None, retry_s: float = 5.0) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else Registry()
        self.on_change = on_change
        self.retry_s = retry_s
        #: set on the follower's own loop; ``caught_up`` is the same fact for other threads
        self.ready = asyncio.Event()
        self.caught_up = threading.Event()
        self.errors = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One registry record; a bad document is logged and counted, never raised."""
        try:
            community = self.registry.apply_record(key, value)
        except Exception as exc:  # a bad document must not stop the follower
            self.errors += 1
            log.error("ignoring unreadable registry message for %r: %s", key, exc)
            return
        if community is None:
            if key:
                log.info("registry: community %s removed", key.decode(errors="replace"))
        else:
            log.info("registry: community %s (%d members, %d devices)", community.id,
                     len(community.members), len(community.devices))
        if self.on_change is not None and key:
            self.on_change(key.decode(errors="replace"), community)

    def _set_ready(self) -> None:
        if not self.ready.is_set():
            log.info("registry loaded: %d communities", len(self.registry.communities))
        self.ready.set()
        self.caught_up.set()

    async def run(self) -> None:
        """Follow until cancelled (or :meth:`stop`); a broker outage is retried, keeping the
        registry already read."""
        self._stopping = False
        while not self._stopping:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registry follower: %s; retrying in %.0f s", exc, self.retry_s)
                await asyncio.sleep(self.retry_s)

    async def _follow(self) -> None:
        topic = self.settings.topic(REGISTRY)
        consumer = make_async_consumer(self.settings)
        await consumer.start()
        try:
            partitions = await _partitions(consumer, topic)
            if not partitions:
                self._set_ready()  # nothing to follow (yet): an empty registry is the truth
                await asyncio.sleep(self.retry_s)
                return
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            remaining = {tp for tp in tps if end[tp] > 0}
            if not remaining:
                self._set_ready()
            while not self._stopping:
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
                for records in batch.values():
                    for record in records:
                        self.apply(record.key, record.value)
                if remaining:
                    for tp in list(remaining):
                        if await consumer.position(tp) >= end[tp]:
                            remaining.discard(tp)
                    if not remaining:
                        self._set_ready()
        finally:
            await consumer.stop()

    # -- for threaded processes -------------------------------------------------------------
    def start_thread(self) -> threading.Thread:
        """Run the follower on a private event loop in a daemon thread (the MQTT bridge)."""
        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self.ready = asyncio.Event()
            task = loop.create_task(self.run())
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(task)
            loop.close()

        self._thread = threading.Thread(target=main, name="registry-follower", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a follower started with :meth:`start_thread`."""
        self._stopping = True
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            def cancel() -> None:
                for task in asyncio.all_tasks(loop):
                    task.cancel()
            loop.call_soon_threadsafe(cancel)
            thread.join(timeout)


async def _partitions(consumer: object, topic: str) -> set[int]:
    """The partitions of ``topic`` (empty when it does not exist yet).

    A consumer without a subscription keeps no metadata for the topic, so ask for it."""
    client = consumer._client  # type: ignore[attr-defined]
    try:
        return set(await asyncio.wait_for(client._wait_on_metadata(topic), timeout=10))
    except Exception:
        return set()
