"""The anomaly agent of ``ioe worker``: the engine bound to the Faust worker.

``streams.app`` imports this module and calls :func:`setup` with its typed
:class:`streams.context.WorkerContext`; we register a batch hook (called by the worker's
readings agent once per batch with the valid readings of known devices, inside the batch's
event context) and a wall-clock timer.

Time. Detectors run on *event time*: ticks (offline devices, silent members) are driven by the
community's newest reading timestamp crossing minute boundaries, so a replay of old data (the
``--via-kafka`` bench, an edge flushing its backlog) behaves exactly like the in-process replay.
When a live community goes completely silent no event time advances, so the wall-clock timer
ticks communities whose data was live (event time within ``live_lag_s`` of the wall clock) and
that have sent nothing for two tick periods.

State. The engine's state of each device (and each community's member/registry alarms) is kept
in the changelog-backed Faust table ``anomaly_state``: written when an alarm event concerns it
and at most every ``snapshot_s`` otherwise (at most once per device per batch), restored when
a worker first meets the device (after a restart or a rebalance). Writes happen in the hook,
i.e. in the batch's event context (one partition per call), so they land in the partition of
the community that owns the device.

Output. Every alarm event goes to ``ioe.anomalies`` (key = community id) and, as an ``alarm``
update, to ``ioe.live`` on ``operators:<cid>`` plus ``member:<cid>:<mid>`` when the alarm
concerns a member's device. Optional notifications: ``IOE_ANOMALY_WEBHOOK_URL`` (HTTP POST with
retries) and ``IOE_ANOMALY_MQTT_PREFIX`` (e.g. ``ioe/alarms``, on the settings' broker).
Detector settings: ``IOE_ANOMALY_CONFIG`` = a YAML file (see ``config.AnomalyConfig``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter

from ioe.messages import Alarm, LiveAlarm
from ioe.reading import Reading
from ioe.registry import Community, Device
from ioe.topics import ANOMALIES, LIVE
from streams.anomalies.config import AnomalyConfig
from streams.anomalies.engine import AnomalyEngine
from streams.context import Routed, WorkerContext

log = logging.getLogger(__name__)

TABLE_NAME = "anomaly_state"
TICK_MS = 60_000
#: the first reading after a long pause ticks once, not once per missed minute
MAX_CATCH_UP_TICKS = 30


class AnomalyAgent:
    def __init__(self, ctx: WorkerContext, config: AnomalyConfig | None = None, *,
                 tick_s: float = 60.0,
                 snapshot_s: float = 300.0, live_lag_s: float = 900.0,
                 notifiers: list[Any] | None = None) -> None:
        self.ctx = ctx
        self.engine = AnomalyEngine(config, claim_on_registry=False)
        self.tick_ms = int(tick_s * 1000)
        self.snapshot_s = snapshot_s
        self.live_lag_ms = int(live_lag_s * 1000)
        self.notifiers = notifiers or []
        self.table = ctx.app.Table(TABLE_NAME, default=None, partitions=ctx.settings.partitions,
                                   key_type=str, value_type=None)
        self._community_version: dict[str, Community] = {}
        self._next_tick: dict[str, int] = {}
        self._received: dict[str, tuple[float, int]] = {}  # cid -> (wall s, newest event ms)
        self._restored: set[str] = set()
        self._snapshot_at: dict[str, float] = {}
        self._pending: set[asyncio.Task[Any]] = set()
        self.events = Counter("ioe_anomaly_alarm_events", "alarm lifecycle events",
                              ["kind", "state"], registry=ctx.metrics)
        self.errors = Counter("ioe_anomaly_errors", "anomaly engine failures",
                              registry=ctx.metrics)

    # -- the batch hook (inside the readings agent's event context) ---------------------------
    async def on_batch(self, batch: Sequence[Routed]) -> None:
        """The engine is pure and synchronous: run it over the whole batch, then publish the
        batch's alarm events at once and snapshot each touched device once."""
        events: list[Alarm] = []
        touched: dict[str, tuple[Device, Community]] = {}
        for item in batch:
            try:
                events += self._process(item.reading, item.device, item.community)
            except Exception:  # the engine must never stop the worker
                self.errors.inc()
                log.exception("anomaly engine failed on a reading of %s", item.device.id)
                continue
            touched[item.device.id] = (item.device, item.community)
        await self._publish(events)
        self._persist(touched, events)

    async def on_reading(self, reading: Reading, device: Device, community: Community) -> None:
        """One reading (a batch of one)."""
        await self.on_batch([Routed(reading, device, community)])

    def _process(self, reading: Reading, device: Device, community: Community) -> list[Alarm]:
        cid = community.id
        events: list[Alarm] = []
        if cid not in self._restored:
            self._restore(community, reading.ts_ms)
        if self._community_version.get(cid) is not community:  # first time or new version
            self._community_version[cid] = community
            self.engine.owned.add(cid)
            events += self.engine.on_registry(community, now_ms=reading.ts_ms)
        events += self._event_ticks(cid, reading.ts_ms)
        newest = max(self._received.get(cid, (0.0, 0))[1], reading.ts_ms)
        self._received[cid] = (time.time(), newest)
        events += self.engine.on_reading(device, community, reading)
        return events

    def _restore(self, community: Community, ts_ms: int) -> None:
        """First reading of a community in this worker (start-up, rebalance): bring back the
        state of the community and of all its devices (they share the partition, so their
        table entries are here). Snapshots may be up to ``snapshot_s`` old, so a restored
        ``last_seen`` is moved up to now: a restart delays an offline alarm by at most one
        window instead of raising a false one; alarms already open were restored as open."""
        self._restored.add(community.id)
        snapshot = self.table.get(f"community:{community.id}")
        if snapshot:
            self.engine.restore_community(snapshot)
        for device in community.devices:
            if device.id in self._restored:
                continue
            self._restored.add(device.id)
            snapshot = self.table.get(device.id)
            if snapshot:
                self.engine.restore_device(device.id, snapshot)
                state = self.engine.devices.get(device.id)
                if state is not None and state.last_seen_ms is not None:
                    state.last_seen_ms = max(state.last_seen_ms, ts_ms)

    def _event_ticks(self, cid: str, ts_ms: int) -> list[Alarm]:
        events: list[Alarm] = []
        next_tick = self._next_tick.get(cid)
        if next_tick is None:
            next_tick = (ts_ms // self.tick_ms + 1) * self.tick_ms
        if ts_ms - next_tick > MAX_CATCH_UP_TICKS * self.tick_ms:
            next_tick = ts_ms - ts_ms % self.tick_ms
        while next_tick <= ts_ms:
            events += self.engine.on_tick(next_tick, [cid])
            next_tick += self.tick_ms
        self._next_tick[cid] = next_tick
        return events

    # -- the wall-clock timer --------------------------------------------------------------
    async def wall_tick(self) -> None:
        """Tick live communities that went silent (their event time stopped advancing)."""
        now_wall = time.time()
        now_ms = int(now_wall * 1000)
        for cid, (received_wall, newest_ms) in list(self._received.items()):
            live = now_ms - newest_ms <= self.live_lag_ms + (now_wall - received_wall) * 1000
            silent = (now_wall - received_wall) * 1000 >= 2 * self.tick_ms
            if not (live and silent):
                continue
            try:
                events = self.engine.on_tick(now_ms, [cid])
            except Exception:
                self.errors.inc()
                log.exception("anomaly tick failed for %s", cid)
                continue
            self._next_tick[cid] = max(self._next_tick.get(cid, 0),
                                       now_ms - now_ms % self.tick_ms + self.tick_ms)
            await self._publish(events)

    # -- output ------------------------------------------------------------------------------
    async def _publish(self, events: list[Alarm]) -> None:
        for alarm in events:
            self.events.labels(alarm.kind, alarm.state).inc()
            cid = alarm.community_id
            log.info("alarm %s %s %s on %s (%s)", alarm.state, alarm.kind, alarm.severity,
                     alarm.device_id, alarm.alarm_id)
            await self.ctx.publish(ANOMALIES, cid, alarm.encode())
            for message in LiveAlarm.for_alarm(alarm):
                await self.ctx.publish(LIVE, cid, message.encode())
            for notifier in self.notifiers:
                task = asyncio.ensure_future(asyncio.to_thread(notifier.send, alarm.copy()))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

    def _persist(self, touched: dict[str, tuple[Device, Community]],
                 events: list[Alarm]) -> None:
        """Snapshot every device an alarm event concerns, and each device of the batch whose
        last snapshot is older than ``snapshot_s`` — each key once per batch."""
        now = time.monotonic()
        communities = {c.id: c for _, c in touched.values()}
        alarmed: dict[str, set[str]] = {}
        for alarm in events:
            alarmed.setdefault(alarm.community_id, set()).add(alarm.device_id)
        by_subject: dict[str, list[str]] | None = None
        for cid, community in communities.items():
            subjects = alarmed.get(cid, set())
            keys = {d for d in subjects if community.device(d) is not None}
            keys |= {d for d, (_, c) in touched.items() if c.id == cid
                     and now - self._snapshot_at.get(d, 0.0) >= self.snapshot_s}
            if keys and by_subject is None:
                by_subject = self.engine.book.keys_by_subject()  # once per batch
            for key in keys:
                self.table[key] = self.engine.device_snapshot(key, by_subject)
                self._snapshot_at[key] = now
            community_key = f"community:{cid}"
            if subjects - keys or now - self._snapshot_at.get(community_key, 0.0) \
                    >= self.snapshot_s:
                self.table[community_key] = self.engine.community_snapshot(cid)
                self._snapshot_at[community_key] = now


def notifiers_from_env(ctx: WorkerContext) -> list[Any]:
    from streams.anomalies.notify import MqttConfig, MqttNotifier, WebhookConfig, WebhookNotifier

    out: list[Any] = []
    url = os.environ.get("IOE_ANOMALY_WEBHOOK_URL")
    if url:
        out.append(WebhookNotifier(WebhookConfig(url=url), ctx.metrics))
    prefix = os.environ.get("IOE_ANOMALY_MQTT_PREFIX")
    if prefix:
        out.append(MqttNotifier(MqttConfig(host=ctx.settings.mqtt_host,
                                           port=ctx.settings.mqtt_port, topic_prefix=prefix),
                                ctx.metrics))
    return out


def setup(ctx: WorkerContext) -> AnomalyAgent:
    """Called by ``streams.app.create_app`` with its context."""
    path = os.environ.get("IOE_ANOMALY_CONFIG")
    config = AnomalyConfig.from_yaml(path) if path else AnomalyConfig()
    agent = AnomalyAgent(ctx, config, notifiers=notifiers_from_env(ctx))
    ctx.batch_hooks.append(agent.on_batch)
    ctx.app.timer(interval=agent.tick_ms / 1000 / 2)(agent.wall_tick)
    log.info("anomaly detection enabled (%d notifiers)", len(agent.notifiers))
    return agent
