"""The Faust application of ``ioe worker``: live shares, interval balances, ClickHouse sink.

One agent consumes ``ioe.readings`` (keyed by community, so the worker owning a partition owns
whole communities and nothing is repartitioned). Its state lives in changelog-backed Faust
tables (``memory://`` store: on start a worker rebuilds its tables from the changelog topics of
the partitions it is assigned). Every table key is small (one device, one device-slot, one
community-interval), so a reading never rewrites a whole community's state.

Two plain aiokafka loops run beside it as app tasks: the registry follower (every worker needs
every community) and the ClickHouse sink (explicit commit-after-insert). Optional agent modules
(``AGENT_MODULES``) are imported at start-up when present and get a :class:`WorkerContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from ioe.deadletter import dead_letter, encode_dead_letter
from ioe.reading import Reading, ReadingError
from ioe.registry import Community, Device, Registry
from ioe.settings import Settings
from ioe.topics import ANOMALIES, BALANCES, DEADLETTER, LIVE, READINGS
from streams import live
from streams.balances import BalanceConfig, BalanceEngine, is_official
from streams.records import dumps
from streams.registry_follower import RegistryFollower
from streams.sink import Sink

log = logging.getLogger(__name__)

#: Modules providing ``setup(ctx: WorkerContext) -> None``; imported only when they exist.
AGENT_MODULES: tuple[str, ...] = ("streams.anomalies.agent",)

#: ``async hook(reading, device, community)``, called for every valid reading of a known device
ReadingHook = Callable[[Reading, Device, Community], Awaitable[None]]


@dataclass(frozen=True)
class WorkerConfig:
    lateness_s: float = 300.0
    staleness_s: float = 120.0
    #: minimum time between two full live recomputes of one community
    live_interval_s: float = 1.0
    #: minimum time between two emissions of re-opened (late) intervals of one community
    emit_min_s: float = 1.0
    max_gap_s: float = 1800.0
    web_port: int | None = None
    data_dir: Path = Path(".local/faust")
    worker_id: str = "ioe-worker"
    sink: bool = True
    sink_batch: int = 5000
    sink_flush_s: float = 1.0
    log_level: str = "info"
    session_timeout_s: float = 10.0
    #: readings waiting and none processed for this long = a stalled consumer: restart
    stall_s: float = 60.0


@dataclass
class WorkerContext:
    """What an agent module needs: the app, the topics, the followed registry, the metrics."""

    app: faust.App
    settings: Settings
    config: WorkerConfig
    follower: RegistryFollower
    topics: dict[str, faust.TopicT]
    metrics: CollectorRegistry
    reading_hooks: list[ReadingHook] = field(default_factory=list)

    @property
    def registry(self) -> Registry:
        return self.follower.registry

    async def publish(self, logical_topic: str, key: str, value: bytes) -> Any:
        """Send now (not attached to the source offset): live data must not wait for commits."""
        return await self.topics[logical_topic].send(key=key.encode(), value=value, force=True)


def app_id(settings: Settings, config: WorkerConfig) -> str:
    """The topic prefix makes tests (and tenants) independent consumer groups and changelogs."""
    return f"{settings.topic_prefix}{config.worker_id}"


def create_app(settings: Settings, config: WorkerConfig) -> tuple[faust.App, WorkerContext]:
    ident = app_id(settings, config)
    app = faust.App(
        ident,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(config.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=0.005,  # batch the changelog writes (measured: bench/bench_worker.py)
        broker_commit_interval=1.0,
        # a SIGKILLed worker's partitions move to the others after this long
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=min(3.0, config.session_timeout_s / 3),
        web_enabled=config.web_port is not None,
        web_port=config.web_port or 6066,
        web_bind="127.0.0.1",
        autodiscover=False,
    )
    topics = {
        name: app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw",
                        partitions=settings.partitions)
        for name in (READINGS, LIVE, BALANCES, ANOMALIES, DEADLETTER)
    }
    metrics = CollectorRegistry()
    follower = RegistryFollower(settings)
    ctx = WorkerContext(app=app, settings=settings, config=config, follower=follower,
                        topics=topics, metrics=metrics)
    tables = {
        name: app.Table(name, default=None, partitions=settings.partitions,
                        key_type=str, value_type=None)  # changelog codec: json
        for name in ("latest", "slots", "official", "pending", "emitted", "watermarks")
    }
    processor = ReadingsProcessor(ctx, tables)

    @app.on_partitions_assigned.connect
    async def _assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        processor.on_rebalance()

    if config.stall_s > 0:
        app.timer(interval=max(1.0, config.stall_s / 6))(processor.check_stall)

    app.agent(topics[READINGS], name=f"{ident}.readings")(processor.agent)
    app.timer(interval=max(0.05, min(config.live_interval_s, 1.0) / 4))(processor.flush_live)
    app.task(_forever(follower.run, "registry follower"))
    if config.sink:
        sink = Sink(settings, follower.registry, group_id=f"{ident}-sink",
                    batch_size=config.sink_batch, flush_s=config.sink_flush_s, metrics=metrics)
        app.task(_forever(lambda: sink.run(follower.ready), "clickhouse sink"))
    for name in AGENT_MODULES:
        module = _optional_module(name)
        if module is None:
            continue
        if not hasattr(module, "setup"):
            log.error("agent module %s has no setup(ctx); not loaded", name)
            continue
        module.setup(ctx)
        log.info("agent module %s loaded", name)
    return app, ctx


def _optional_module(name: str) -> Any:
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)


def _forever(run: Callable[[], Awaitable[None]], what: str) -> Callable[[], Awaitable[None]]:
    """A background loop that logs and restarts instead of silently dying."""
    async def task() -> None:
        while True:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; restarting in 2 s", what)
                await asyncio.sleep(2)
    task.__name__ = what.replace(" ", "_")
    return task


class ReadingsProcessor:
    """The readings agent: validate, live shares, balances; never crashes on one bad reading."""

    def __init__(self, ctx: WorkerContext, tables: dict[str, Any]) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.latest = tables["latest"]
        self.engine = BalanceEngine(
            slots=tables["slots"], official=tables["official"], pending=tables["pending"],
            emitted=tables["emitted"], watermarks=tables["watermarks"],
            config=BalanceConfig(lateness_ms=int(ctx.config.lateness_s * 1000),
                                 max_gap_ms=int(ctx.config.max_gap_s * 1000)))
        m = ctx.metrics
        self.processed = Counter("ioe_worker_readings", "readings processed", registry=m)
        self.dead = Counter("ioe_worker_dead_letters", "dead letters", ["reason"], registry=m)
        self.errors = Counter("ioe_worker_errors", "unexpected processing errors", registry=m)
        self.balances_sent = Counter("ioe_worker_balances", "balance messages", registry=m)
        self.live_sent = Counter("ioe_worker_live", "live messages", registry=m)
        self.gaps = Counter("ioe_worker_stream_gaps", "skipped offset ranges re-read",
                            registry=m)
        self.hook_errors = Counter("ioe_worker_hook_errors", "reading hooks that raised",
                                   registry=m)
        self._live_dirty: set[str] = set()
        self._live_at: dict[str, float] = {}
        self._live_last: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._due: set[str] = set()
        self._next_offset: dict[tuple[str, int], int] = {}
        self._offsets: AIOKafkaConsumer | None = None
        self._emit_at: dict[str, float] = {}
        self._progress_at = time.monotonic()
        self._stall_positions: dict[tuple[str, int], int] = {}
        self.stalls = Counter("ioe_worker_stalls", "consumer stalls detected", registry=m)

    def on_rebalance(self) -> None:
        """Communities may have moved: re-check each one's due intervals on its next reading,
        republish its full live state (the new owner has no "last published" memory), and
        check the first offset of every partition against the committed one."""
        self._emit_at.clear()
        self._live_last.clear()
        self._next_offset.clear()
        self._progress_at = time.monotonic()

    async def check_stall(self) -> None:
        """Restart the process when readings wait and none has been processed for a while.

        Measured with faust-streaming 0.15.3 (and reported upstream as consumers that stop
        receiving): after a restart the worker sometimes joins the group, recovers its tables,
        says it is ready, and its agent then receives nothing while the partition has readings.
        Offsets are committed only after processing, so re-executing the process is safe: it
        rejoins the group and resumes from the committed offsets, losing nothing.
        """
        if time.monotonic() - self._progress_at < self.config.stall_s:
            return
        if not self.ctx.follower.ready.is_set():
            return
        try:
            assigned = [TopicPartition(tp.topic, tp.partition)
                        for tp in self.ctx.app.consumer.assignment()
                        if tp.topic == self.ctx.settings.topic(READINGS)]
            waiting = 0
            positions: dict[tuple[str, int], int] = {}
            for tp in assigned:
                done = self._next_offset.get((tp.topic, tp.partition))
                if done is None:
                    done = await self._committed((tp.topic, tp.partition))
                if self._offsets is None:
                    return
                first = (await asyncio.wait_for(self._offsets.beginning_offsets([tp]), 10))[tp]
                end = (await asyncio.wait_for(self._offsets.end_offsets([tp]), 10))[tp]
                positions[(tp.topic, tp.partition)] = max(done or 0, first)
                waiting += max(0, end - positions[(tp.topic, tp.partition)])
        except Exception as exc:  # the watchdog must never become the problem
            log.warning("stall check failed: %s", exc)
            return
        suspected, self._stall_positions = self._stall_positions, positions
        if waiting == 0:
            self._progress_at = time.monotonic()
            return
        if suspected != positions:
            return  # readings just arrived after an idle spell: judge at the next check
        self.stalls.inc()
        consumer = self.ctx.app.consumer
        log.error("stall diagnostics: paused=%s active=%s buffered=%s",  # for the open defect
                  sorted(map(tuple, getattr(consumer, "_paused_partitions", ()) or ())),
                  sorted(map(tuple, getattr(consumer, "_active_partitions", ()) or ())),
                  sorted(map(tuple, getattr(consumer, "_buffered_partitions", ()) or ())))
        log.error("no reading processed for %.0f s while %d wait on %d partition(s): the "
                  "consumer is stalled; restarting this worker process", self.config.stall_s,
                  waiting, len(assigned))
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

    async def agent(self, stream: faust.StreamT) -> None:
        await self.ctx.follower.ready.wait()
        async for event in stream.events():
            tp = (event.message.topic, event.message.partition)
            offset = event.message.offset
            await self._check_gap(tp, offset)
            self._next_offset[tp] = offset + 1
            await self._handle_safely(event.key, event.value)
            await self._drain_changelog()
            self._progress_at = time.monotonic()

    async def _handle_safely(self, key: bytes | None, value: bytes | None) -> None:
        try:
            await self.handle(key, value or b"")
        except Exception as exc:
            self.errors.inc()
            log.exception("reading not processed")
            await self._dead_letter("processing_error", str(exc), value)

    async def _check_gap(self, tp: tuple[str, int], offset: int) -> None:
        """Process any readings the stream skipped before this one.

        Measured with faust-streaming 0.15.3: after a rebalance that hands a partition back to
        a worker that owned it before, the stream resumed at the committed offset, delivered a
        few records, then jumped ahead to the position of its old fetch, and the skipped
        readings were committed without ever being processed. Offsets of ``ioe.readings`` are
        contiguous (no transactional producers), so a jump is detectable; the missing range is
        read with a side consumer and processed here, in this event's context (same partition,
        so table writes land in the right changelog partition).
        """
        expected = self._next_offset.get(tp)
        if expected is None:
            expected = await self._committed(tp)
            if expected is None:
                return
        if offset <= expected:
            return
        self.gaps.inc()
        log.warning("stream skipped %s[%d] offsets %d..%d: processing them now", tp[0], tp[1],
                    expected, offset - 1)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.ctx.settings.kafka_bootstrap,
                                    group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            part = TopicPartition(*tp)
            consumer.assign([part])
            consumer.seek(part, expected)
            position = expected
            while position < offset:
                batch = await consumer.getmany(part, timeout_ms=1000)
                for record in batch.get(part, []):
                    if record.offset >= offset:
                        break
                    await self._handle_safely(record.key, record.value)
                    await self._drain_changelog()
                position = await consumer.position(part)
        finally:
            await consumer.stop()

    async def _committed(self, tp: tuple[str, int]) -> int | None:
        """The group's committed offset (where a freshly assigned partition must resume)."""
        try:
            if self._offsets is None:
                self._offsets = AIOKafkaConsumer(
                    bootstrap_servers=self.ctx.settings.kafka_bootstrap,
                    group_id=self.ctx.app.conf.id, enable_auto_commit=False)
                await asyncio.wait_for(self._offsets.start(), timeout=10)
            return await asyncio.wait_for(self._offsets.committed(TopicPartition(*tp)),
                                          timeout=10)
        except Exception as exc:  # only a safety net: never block processing on it
            log.warning("could not read the committed offset of %s: %s", tp, exc)
            return None

    async def _drain_changelog(self) -> None:
        """Hand this event's table writes to the Kafka client before the event is acked.

        Faust's commit flushes its producer buffer with a 0.1 s timeout and then commits the
        acked offsets even if changelog messages are still buffered (measured: a SIGKILL then
        lost slot updates whose readings were already committed). Once the buffer is empty
        the messages sit in aiokafka's accumulator, whose flush (also done before the commit)
        does wait for delivery, so state and offsets can no longer diverge.
        """
        buffer = self.ctx.app.producer.buffer
        while buffer.size:
            # message_sent is set after the message taken from the queue reached aiokafka,
            # so leaving this loop means the last one is there too, not merely dequeued
            buffer.message_sent.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(buffer.message_sent.wait(), timeout=1.0)
        await asyncio.sleep(0)

    async def handle(self, key: bytes | None, raw: bytes) -> None:
        try:
            reading = Reading.from_json(raw)
        except ReadingError as exc:
            await self._dead_letter("invalid_reading", str(exc), raw)
            return
        device = self.ctx.registry.device(reading.device_id)
        community = self.ctx.registry.community(device.community_id) if device else None
        if device is None or community is None:
            await self._dead_letter("unknown_device",
                                    f"device {reading.device_id!r} is not in the registry", raw)
            return
        self.processed.inc()
        cid = community.id
        if reading.power_w is not None and not is_official(device):
            current = self.latest.get(device.id)
            if current is None or reading.ts_ms >= current[1]:
                value = [reading.power_w, reading.ts_ms]
                if current != value:
                    self.latest[device.id] = value
                self._live_dirty.add(cid)
        if self.engine.add(community, device, reading) or cid not in self._emit_at:
            # (first reading of a community since start or since it was assigned here: pending
            # intervals left by the previous owner may already be due)
            self._due.add(cid)
        now = time.monotonic()
        if cid in self._due and now - self._emit_at.get(cid, 0.0) >= self.config.emit_min_s:
            await self._emit(community)
            # measured from the end of the recalculation: taken before it, a recalculation
            # longer than emit_min_s made the very next reading trigger another one, and the
            # agent managed one reading per recalculation (bench/bench_pipeline.py)
            now = time.monotonic()
            self._emit_at[cid] = now
        if cid in self._live_dirty and (now - self._live_at.get(cid, 0.0)
                                        >= self.config.live_interval_s):
            await self.publish_live(cid)
        for hook in self.ctx.reading_hooks:
            try:
                await hook(reading, device, community)
            except Exception:  # a failing add-on must not dead-letter a good reading
                self.hook_errors.inc()
                log.exception("reading hook %r failed", hook)

    async def _emit(self, community: Community) -> None:
        """Publish the due balances and wait for Kafka to have them *before* the tables record
        them as emitted: a crash in between re-emits (same numbers), never loses one."""
        self._due.discard(community.id)
        messages = self.engine.plan(community)
        if not messages.done:
            return
        futures = [await self.ctx.publish(BALANCES, community.id, dumps(msg))
                   for msg in messages.messages]
        for fut in futures:
            await fut
        self.engine.commit(messages)
        self.balances_sent.inc(len(messages.messages))

    async def flush_live(self) -> None:
        now = time.monotonic()
        for cid in list(self._live_dirty):
            if now - self._live_at.get(cid, 0.0) >= self.config.live_interval_s:
                try:
                    await self.publish_live(cid)
                except Exception:
                    log.exception("live update of %s failed", cid)

    async def publish_live(self, cid: str) -> None:
        self._live_dirty.discard(cid)
        self._live_at[cid] = time.monotonic()
        community = self.ctx.registry.community(cid)
        now_ms = self.engine.watermark(cid)
        if community is None or now_ms is None:
            return
        update = live.compute(community, self.latest, now_ms,
                              int(self.config.staleness_s * 1000))
        messages = [(f"m:{mid}", msg) for mid, msg in update.members.items()]
        messages.append(("community", update.community))
        for channel, msg in messages:
            fp = live.fingerprint(msg)
            if self._live_last.get((cid, channel)) == fp:
                continue
            self._live_last[(cid, channel)] = fp
            await self.ctx.publish(LIVE, cid, dumps(msg))
            self.live_sent.inc()

    async def _dead_letter(self, reason: str, detail: str, raw: bytes | None) -> None:
        self.dead.labels(reason).inc()
        log.error("dead letter (%s): %s", reason, detail)
        record = dead_letter(source="worker", reason=reason, detail=detail, payload=raw)
        await self.ctx.publish(DEADLETTER, "worker", encode_dead_letter(record))
