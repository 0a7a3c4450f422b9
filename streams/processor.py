"""The readings path of ``ioe worker``, one batch at a time.

Per batch (:meth:`ReadingsProcessor.process`): the events are grouped by partition (a Faust
table write lands in the changelog partition of the current event, :mod:`streams.faust_glue`);
for each partition every reading is parsed once (orjson, :meth:`Reading.from_json`), routed
through the registry, and folded into the state through write-back views of the tables, so a
key written many times in the batch reaches its changelog once; the batch hooks (the anomaly
agent) run once; each community whose intervals are due emits its balances once, and each
community whose live values changed is published at most once (throttled to
``live_interval_s``). Finally the changelog is drained once, before the batch's offsets can
be acknowledged (``take_events`` acks after the body returns): nothing is acknowledged before
the state it produced is durable.

The pure parts: :mod:`streams.clock` (when), :mod:`streams.compute` and :mod:`streams.live`
(what), :mod:`streams.state` (typed state and its changelog codec).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
from prometheus_client import Counter

from ioe.deadletter import dead_letter, encode_dead_letter
from ioe.reading import Reading, ReadingError
from ioe.registry import Community
from ioe.topics import BALANCES, DEADLETTER, LIVE, READINGS
from streams import live
from streams.balances import BalanceConfig, BalanceEngine, EmissionPlan
from streams.context import Routed, WorkerContext
from streams.faust_glue import (
    Offsets,
    Record,
    StallWatchdog,
    WriteBack,
    by_partition,
    drain_changelog,
    in_event,
)
from streams.state import Latest, legacy_latest

log = logging.getLogger(__name__)

TABLES = ("latest", "slots", "official", "pending", "emitted", "watermarks")


class ReadingsProcessor:
    """The readings agent: validate, live shares, balances; never crashes on one bad reading."""

    def __init__(self, ctx: WorkerContext, tables: dict[str, Any]) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.tables = tables
        self.views = {name: WriteBack(tables[name]) for name in TABLES}
        v = self.views
        self.engine = BalanceEngine(
            slots=v["slots"], official=v["official"], pending=v["pending"],
            emitted=v["emitted"], watermarks=v["watermarks"],
            config=BalanceConfig(lateness_ms=int(ctx.config.lateness_s * 1000),
                                 max_gap_ms=int(ctx.config.max_gap_s * 1000)))
        self.latest = v["latest"]
        m = ctx.metrics
        self.processed = Counter("ioe_worker_readings", "readings processed", registry=m)
        self.batches = Counter("ioe_worker_batches", "batches processed", registry=m)
        self.dead = Counter("ioe_worker_dead_letters", "dead letters", ["reason"], registry=m)
        self.errors = Counter("ioe_worker_errors", "unexpected processing errors", registry=m)
        self.balances_sent = Counter("ioe_worker_balances", "balance messages", registry=m)
        self.live_sent = Counter("ioe_worker_live", "live messages", registry=m)
        self.gaps = Counter("ioe_worker_stream_gaps", "skipped offset ranges re-read",
                            registry=m)
        self.hook_errors = Counter("ioe_worker_hook_errors", "batch hooks that raised",
                                   registry=m)
        self.stalls = Counter("ioe_worker_stalls", "consumer stalls detected", registry=m)
        self.offsets = Offsets(ctx.app, ctx.settings)
        self.watchdog = StallWatchdog(ctx.app, ctx.settings.topic(READINGS), self.offsets,
                                      ctx.config.stall_s, ctx.follower.ready, self.stalls.inc)
        self._live_dirty: set[str] = set()
        #: communities whose live inputs changed in the batch being processed
        self._changed: set[str] = set()
        self._live_at: dict[str, float] = {}
        self._live_last: dict[tuple[str, str], Any] = {}
        self._due: set[str] = set()
        self._emit_at: dict[str, float] = {}

    def on_rebalance(self) -> None:
        """Communities may have moved: re-check each one's due intervals on its next reading,
        republish its full live state (the new owner has no "last published" memory), and
        check the first offset of every partition against the committed one."""
        self._emit_at.clear()
        self._live_last.clear()
        self.offsets.clear()
        self.watchdog.progress()
        for hook in self.ctx.rebalance_hooks:
            hook()

    async def check_stall(self) -> None:
        await self.watchdog.check()

    async def agent(self, stream: faust.StreamT) -> None:
        await self.ctx.follower.ready.wait()
        async for events in stream.take_events(self.config.batch_max,
                                               within=self.config.batch_within_s):
            await self.process(events)
            self.watchdog.progress()

    # -- one batch ---------------------------------------------------------------------------
    async def process(self, events: Sequence[Any]) -> None:
        self.batches.inc()
        for tp, group in by_partition(events).items():
            records, skipped = await self.offsets.records(tp, group)
            if skipped:
                self.gaps.inc()
            with in_event(group[-1]):
                await self._partition(records)
        await drain_changelog(self.ctx.app)

    async def _partition(self, records: list[Record]) -> None:
        """The records of one partition, in offset order, inside its event context."""
        routed: list[Routed] = []
        for _key, raw in records:
            try:
                item = await self._route(raw or b"")
            except Exception as exc:
                self.errors.inc()
                log.exception("reading not processed")
                await self._dead_letter("processing_error", str(exc), raw)
                continue
            if item is not None:
                routed.append(item)
        self.processed.inc(len(routed))
        for item in routed:
            try:
                self._fold(item)
            except Exception as exc:
                self.errors.inc()
                log.exception("reading not processed")
                await self._dead_letter("processing_error", str(exc), item.reading.to_json())
        for hook in self.ctx.batch_hooks:
            try:
                await hook(routed)
            except Exception:  # a failing add-on must not dead-letter good readings
                self.hook_errors.inc()
                log.exception("batch hook %r failed", hook)
        communities = {item.community.id: item.community for item in routed}
        await self._emit_due(communities)
        for view in self.views.values():
            view.flush()
        # only now: the live timer runs during the awaits above and must not publish from the
        # tables before this batch's values are in them
        self._live_dirty |= self._changed
        self._changed = set()
        now = time.monotonic()
        for cid in communities:
            if cid in self._live_dirty and (now - self._live_at.get(cid, 0.0)
                                            >= self.config.live_interval_s):
                await self.publish_live(cid)

    async def _route(self, raw: bytes) -> Routed | None:
        try:
            reading = Reading.from_json(raw)
        except ReadingError as exc:
            await self._dead_letter("invalid_reading", str(exc), raw)
            return None
        device = self.ctx.registry.device(reading.device_id)
        community = self.ctx.registry.community(device.community_id) if device else None
        if device is None or community is None:
            await self._dead_letter("unknown_device",
                                    f"device {reading.device_id!r} is not in the registry", raw)
            return None
        return Routed(reading, device, community)

    def _fold(self, item: Routed) -> None:
        reading, device, community = item.reading, item.device, item.community
        cid = community.id
        if reading.power_w is not None and not device.is_official:
            current = legacy_latest(self.latest.get(device.id))
            if current is None or reading.ts_ms >= current.ts_ms:
                value = Latest(float(reading.power_w), reading.ts_ms)
                if current != value:
                    self.latest[device.id] = value
                self._changed.add(cid)
        if self.engine.add(community, device, reading) or cid not in self._emit_at:
            # (first reading of a community since start or since it was assigned here: pending
            # intervals left by the previous owner may already be due)
            self._due.add(cid)

    async def _emit_due(self, communities: dict[str, Community]) -> None:
        """Publish the due balances of the batch's communities and wait for Kafka to have them
        *before* the tables record them as emitted: a crash in between re-emits (same
        numbers), never loses one. One emission per community per batch at most."""
        now = time.monotonic()
        plans: list[EmissionPlan] = []
        futures = []
        for cid, community in communities.items():
            if cid not in self._due or now - self._emit_at.get(cid, 0.0) < self.config.emit_min_s:
                continue
            self._due.discard(cid)
            plan = self.engine.plan(community)
            # measured from the end of the recalculation: taken before it, a recalculation
            # longer than emit_min_s made the very next reading trigger another one
            self._emit_at[cid] = time.monotonic()
            if not plan.done:
                continue
            plans.append(plan)
            futures += [await self.ctx.publish(BALANCES, cid, msg.encode())
                        for msg in plan.messages]
        if futures:
            await asyncio.gather(*futures)
        for plan in plans:
            self.engine.commit(plan)
            self.balances_sent.inc(len(plan.messages))

    # -- live --------------------------------------------------------------------------------
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
        update = live.compute(community, self.tables["latest"], now_ms,
                              int(self.config.staleness_s * 1000))
        messages: list[tuple[str, Any]] = [(f"m:{mid}", msg)
                                           for mid, msg in update.members.items()]
        messages.append(("community", update.community))
        for live_hook in self.ctx.live_hooks:
            try:
                live_hook(cid, [msg for _channel, msg in messages])
            except Exception:  # an add-on must not stop the live view
                self.hook_errors.inc()
                log.exception("live hook %r failed", live_hook)
        for channel, msg in messages:
            fp = live.fingerprint(msg)
            if self._live_last.get((cid, channel)) == fp:
                continue
            self._live_last[(cid, channel)] = fp
            await self.ctx.publish(LIVE, cid, msg.encode())
            self.live_sent.inc()

    async def _dead_letter(self, reason: str, detail: str, raw: bytes | None) -> None:
        self.dead.labels(reason).inc()
        log.error("dead letter (%s): %s", reason, detail)
        record = dead_letter(source="worker", reason=reason, detail=detail, payload=raw)
        await self.ctx.publish(DEADLETTER, "worker", encode_dead_letter(record))
