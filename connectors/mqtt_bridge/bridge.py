"""The bridge process: MQTT (QoS 1, persistent session) in, Kafka (acks=all) out, nothing lost.

Threads and hand-offs:

* paho's network thread receives messages and only queues them (``on_message`` never blocks);
* one worker thread decodes (:class:`Processor`, one encode per reading) and hands the records to
  the Kafka producer, which batches them (``linger_ms``/``batch_size``: one produce request
  carries hundreds of readings; nothing is flushed per message);
* the producer's I/O thread confirms records through the send futures' callbacks; a message
  whose last record is confirmed wakes the worker, which acknowledges **in arrival order and in
  batches** every message Kafka has fully confirmed (``manual_ack``). A message whose records are
  still being retried holds back the ones behind it; the broker's in-flight window then stops
  the flow (back-pressure) instead of the bridge buffering without bound;
* the registry follower (:class:`ioe.registry_follower.RegistryFollower`, on its own thread)
  keeps the registry current from ``ioe.registry``; the :class:`Registry` is copy-on-write, so
  the worker always reads a whole one.

A crash at any point leaves the un-acked messages in the broker's session for this fixed client
id, so they are delivered again when the bridge returns (at-least-once; readings are idempotent on
``(device_id, ts_ms)`` downstream). A graceful stop stops taking messages, drains what it took,
waits for Kafka, acks, and only then disconnects.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from kafka.errors import KafkaError
from paho.mqtt.enums import CallbackAPIVersion

from ioe.kafka import make_producer
from ioe.registry import Registry
from ioe.registry_follower import RegistryFollower
from ioe.settings import Settings

from .decoders import DEFAULT_SUBSCRIPTIONS, DecodeContext
from .metrics import BridgeMetrics
from .processor import Outcome, Processor, Record

log = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "ioe-mqtt-bridge"
_WAKE = ("wake",)
#: producer batching: one produce request carries many readings (the MQTT in-flight window and
#: the Kafka round trip, not a per-message flush, bound the latency of an ack)
PRODUCER_OPTIONS: dict[str, object] = {"linger_ms": 1, "batch_size": 256 * 1024}
#: messages taken from the inbox before the worker acks what Kafka confirmed meanwhile
TAKE_MAX = 500


@dataclass
class BridgeConfig:
    settings: Settings
    registry: Registry | None = None
    client_id: str = DEFAULT_CLIENT_ID
    #: prefix of every subscribed topic (stripped before decoding); tests use a private root
    topic_root: str = ""
    subscriptions: tuple[str, ...] = DEFAULT_SUBSCRIPTIONS
    timezone: str = "Europe/Madrid"
    follow_registry: bool = True
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    #: longest wait between bridge-level retries of a failed Kafka send
    retry_max_s: float = 10.0


class _Pending:
    """One MQTT message until it is acked: its records and how many Kafka has not confirmed."""

    __slots__ = ("mid", "qos", "outcome", "futures", "remaining", "failed", "attempts")

    def __init__(self, mid: int, qos: int, outcome: Outcome) -> None:
        self.mid = mid
        self.qos = qos
        self.outcome = outcome
        self.futures: list[Any] = [None] * len(outcome.records)
        self.remaining = len(outcome.records)
        self.failed: list[int] = []
        self.attempts = 0

    def done(self) -> bool:
        return self.remaining <= 0


class Bridge:
    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.settings = config.settings
        self.metrics = BridgeMetrics()
        #: copy-on-write: the follower swaps its dicts, the worker reads them without locks
        self.registry = config.registry if config.registry is not None else Registry()
        self.processor = Processor(self.registry, DecodeContext(timezone=ZoneInfo(config.timezone)),
                                   topic_root=config.topic_root)
        self._woken = False
        self._confirm_lock = threading.Lock()
        self._inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._pending: deque[_Pending] = deque()
        self._stopping = threading.Event()
        self._worker_done = threading.Event()
        self.subscribed = threading.Event()
        self._producer: Any = None
        self._client: mqtt.Client | None = None
        self._worker: threading.Thread | None = None
        self._follower: RegistryFollower | None = None
        self._metrics_server: Any = None
        self._subscribed_filters: set[str] = set()
        self._subscribe_mids: dict[int, list[str]] = {}
        self._subscribe_lock = threading.Lock()  # the SUBACK may beat the bookkeeping
        #: filters the broker confirmed (SUBACK)
        self.active_filters: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.config.metrics_port is not None:
            self._metrics_server = self.metrics.serve(self.config.metrics_port,
                                                      self.config.metrics_addr)
        if self.config.follow_registry:
            self._follower = RegistryFollower(self.settings, self.registry)
            self._follower.start_thread()
        self._producer = self._connect_kafka()
        self._worker = threading.Thread(target=self._work, name="mqtt-bridge-worker",
                                        daemon=True)
        self._worker.start()
        self._client = self._make_client()
        self._client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port,
                                   keepalive=self.config.keepalive_s)
        self._client.loop_start()

    def _connect_kafka(self) -> Any:
        """Kafka first: taking MQTT messages we cannot deliver would only hold them longer."""
        delay = 1.0
        while True:
            try:
                return make_producer(self.settings, **PRODUCER_OPTIONS)
            except KafkaError as exc:
                if self._stopping.is_set():
                    raise
                log.warning("Kafka at %s not available (%s); retrying in %.0fs",
                            self.settings.kafka_bootstrap, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.config.retry_max_s)

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.config.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        client.reconnect_delay_set(self.config.reconnect_min_s, self.config.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        return self.subscribed.wait(timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking messages, finish (Kafka + ack) the ones taken, then disconnect."""
        self._stopping.set()
        self._inbox.put(_WAKE)
        if self._worker is not None:
            self._worker_done.wait(timeout_s)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self._producer is not None:
            self._producer.close(timeout=5)
        if self._follower is not None:
            self._follower.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        log.info("mqtt-bridge stopped (%d messages still un-acked will be redelivered)",
                 len(self._pending) + self._inbox.qsize())

    def run_until(self, stop: threading.Event) -> bool:
        """Run until ``stop`` is set; False when the worker died (let a supervisor restart us:
        the broker keeps every un-acked message for the next run)."""
        self.start()
        healthy = True
        try:
            while not stop.wait(1.0):
                if self._worker_done.is_set():
                    log.error("mqtt-bridge worker stopped unexpectedly; exiting")
                    healthy = False
                    break
        finally:
            self.stop()
        return healthy

    # -- MQTT callbacks (paho network thread) ----------------------------------------------
    def _filters(self) -> list[str]:
        ctx = self.processor.ctx
        filters = list(dict.fromkeys([*self.config.subscriptions,
                                      *(m.topic for m in ctx.json_maps),
                                      *(r.filter for r in ctx.routes)]))
        root = self.config.topic_root.strip("/")
        return [f"{root}/{f}" if root else f for f in filters]

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        self.metrics.connected.set(1)
        # JSON mappings come from the registry: make sure their topics are known before subscribing
        self.processor.refresh_json_maps(self.registry)
        self._subscribed_filters = set(self._filters())
        filters = sorted(self._subscribed_filters)
        log.info("MQTT connected to %s:%s (session present: %s), subscribing %s",
                 self.settings.mqtt_host, self.settings.mqtt_port,
                 getattr(flags, "session_present", "?"), filters)
        self._subscribe(client, filters)

    def _subscribe(self, client: mqtt.Client, filters: list[str]) -> None:
        with self._subscribe_lock:
            _, mid = client.subscribe([(f, 1) for f in filters])
            if mid is not None:
                self._subscribe_mids[mid] = filters

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        with self._subscribe_lock:
            filters = self._subscribe_mids.pop(mid, [])
        refused = [f for f, r in zip(filters, reasons, strict=False) if r.is_failure]
        if refused:
            log.error("MQTT subscription refused for %s", refused)
        self.active_filters.update(f for f in filters if f not in refused)
        log.info("mqtt-bridge: subscribed")
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self.metrics.connected.set(0)
        if not self._stopping.is_set():
            log.warning("MQTT disconnected (%s); reconnecting with backoff", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # not acked: stays in the broker's session, redelivered on the next start
        self.metrics.received.inc()
        self._inbox.put(("msg", message.mid, message.qos, message.topic, message.payload,
                         bool(message.retain), int(time.time() * 1000)))

    # -- worker ----------------------------------------------------------------------------
    def _wake(self) -> None:
        if not self._woken:  # one wake-up item is enough, however many confirmations arrive
            self._woken = True
            self._inbox.put(_WAKE)

    def _work(self) -> None:
        next_topic_check = 0.0
        try:
            while True:
                try:
                    item = self._inbox.get(timeout=0.5)
                except queue.Empty:
                    item = _WAKE
                taken = 0
                while True:  # take what is queued, then ack once for all of it
                    if item[0] == "msg":
                        self._handle(*item[1:])
                        taken += 1
                    if taken >= TAKE_MAX:
                        break
                    try:
                        item = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                if time.monotonic() >= next_topic_check:
                    next_topic_check = time.monotonic() + 1.0
                    self._follow_json_map_topics()
                self._woken = False
                self._settle()
                if self._stopping.is_set() and self._inbox.empty():
                    self._drain()
                    return
        except Exception:
            log.exception("mqtt-bridge worker crashed; un-acked messages will be redelivered")
        finally:
            self._worker_done.set()

    def _follow_json_map_topics(self) -> None:
        """A registry update may configure a device on a topic not subscribed yet."""
        self.processor.refresh_json_maps(self.registry)
        if self._client is None or not self.subscribed.is_set():
            return
        new = [f for f in self._filters() if f not in self._subscribed_filters]
        if new:
            log.info("registry changed: subscribing %s", new)
            self._subscribed_filters.update(new)
            self._subscribe(self._client, new)

    def _handle(self, mid: int, qos: int, topic: str, payload: bytes, retain: bool,
                received_at_ms: int) -> None:
        outcome = self.processor.process(topic, payload, received_at_ms, retain)
        pending = _Pending(mid, qos, outcome)
        self._pending.append(pending)
        self._send(pending, range(len(outcome.records)))

    def _send(self, pending: _Pending, indexes: Any) -> None:
        send, topic = self._producer.send, self.settings.topic
        for i in indexes:
            record: Record = pending.outcome.records[i]
            try:
                future = send(topic(record.topic), key=record.key, value=record.value)
            except Exception as exc:  # buffer full / no metadata: retried by _settle
                log.warning("Kafka send failed: %s", exc)
                self._confirmed(pending, i, exc)
                continue
            pending.futures[i] = future
            future.add_both(self._confirmed, pending, i)

    def _confirmed(self, pending: _Pending, index: int, result: Any) -> None:
        """A send future's callback (the producer's I/O thread): count the record down; the
        message's last record wakes the worker, which acks in order."""
        with self._confirm_lock:  # the worker too calls this when send() itself fails
            if isinstance(result, BaseException):
                pending.failed.append(index)
            pending.remaining -= 1
            last = pending.remaining <= 0
        if last:
            self._wake()

    def _settle(self) -> None:
        """Ack, in arrival order, every message whose records Kafka has confirmed."""
        acked: list[_Pending] = []
        try:
            while self._pending:
                head = self._pending[0]
                if not head.done():
                    return
                if head.failed:
                    if self._stopping.is_set():
                        return  # leave it un-acked: the broker redelivers it next time
                    failed, head.failed = sorted(head.failed), []
                    head.attempts += 1
                    self.metrics.kafka_retries.inc(len(failed))
                    delay = min(0.5 * 2 ** (head.attempts - 1), self.config.retry_max_s)
                    log.warning("%d Kafka record(s) of MQTT message %d failed; retry %d in "
                                "%.1fs", len(failed), head.mid, head.attempts, delay)
                    self._stopping.wait(delay)
                    head.remaining = len(failed)
                    self._send(head, failed)
                    return
                self._ack(head)
                acked.append(head)
                self._pending.popleft()
        finally:
            self._count(acked)
            self.metrics.pending.set(len(self._pending))

    def _ack(self, pending: _Pending) -> None:
        assert self._client is not None
        if pending.qos > 0:
            self._client.ack(pending.mid, pending.qos)

    def _count(self, acked: list[_Pending]) -> None:
        """Metrics of a batch of acked messages, one increment per counter."""
        if not acked:
            return
        readings = 0
        for pending in acked:
            outcome = pending.outcome
            readings += outcome.readings
            for reason in outcome.dead_letter_reasons:
                self.metrics.dead_lettered.labels(reason=reason).inc()
            if outcome.ignored:
                self.metrics.ignored.labels(reason=outcome.ignored).inc()
            if outcome.suppressed_reason:
                self.metrics.suppressed.labels(reason=outcome.suppressed_reason).inc()
        if readings:
            self.metrics.produced.inc(readings)
        self.metrics.acked.inc(len(acked))

    def _drain(self) -> None:
        """On stop: wait (bounded) for Kafka to confirm what was sent, acking as it does."""
        if not self._pending:
            return
        try:
            self._producer.flush(timeout=10)
        except Exception as exc:
            log.warning("flush on stop: %s", exc)
        self._settle()
