"""The edge agent: poll every device on its own schedule, queue durably, forward to Kafka.

One thread per device keeps a slow or dead inverter from delaying the others; requests to
devices sharing a gateway or a serial line are serialised by their link's lock. A failure is
logged, counted and marks the device offline: the agent itself never stops for a device.
Readings are routed with the registry (key = community_id); a device the registry does not know
becomes a dead letter ``unknown_device`` — queued like readings, so it is not lost either.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge

from connectors.modbus_edge.device import (
    DeviceConfig,
    Link,
    ModbusReadError,
    Poller,
    device_from_dict,
    make_links,
)
from connectors.modbus_edge.forwarder import Forwarder
from connectors.modbus_edge.store import Outbox
from ioe.deadletter import dead_letter, encode_dead_letter
from ioe.reading import Reading
from ioe.registry import Registry, load_registry
from ioe.settings import Settings, get_settings
from ioe.topics import DEADLETTER, READINGS

log = logging.getLogger(__name__)

SOURCE = "modbus-edge"


@dataclass(frozen=True)
class EdgeConfig:
    devices: tuple[DeviceConfig, ...]
    queue_path: Path
    disk_budget_mb: float = 200.0
    registry_path: Path | None = None
    kafka_bootstrap: str | None = None
    topic_prefix: str | None = None
    forward_chunk: int = 500
    metrics_port: int | None = None
    sqlite_synchronous: str = "FULL"
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Kafka client security options from an enrolment bundle (``--bundle``); it holds the
    #: SCRAM password, so it is never part of the repr
    kafka_client: Mapping[str, Any] = field(default_factory=dict, repr=False)


EDGE_KEYS = ("queue_path", "disk_budget_mb", "registry", "kafka_bootstrap", "topic_prefix",
             "forward_chunk", "metrics_port", "sqlite_synchronous")


def load_config(path: str | Path) -> EdgeConfig:
    """Read the edge YAML config; relative paths are relative to the config file."""
    path = Path(path)
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return config_from_dict(document, base_dir=path.parent)


def config_from_dict(document: Mapping[str, Any], *, base_dir: Path = Path(".")) -> EdgeConfig:
    edge = dict(document.get("edge") or {})
    unknown = set(edge) - set(EDGE_KEYS)
    if unknown:
        raise ValueError(f"edge: unknown settings {sorted(unknown)}")
    devices = tuple(device_from_dict(d) for d in document.get("devices") or [])
    ids = [d.id for d in devices]
    if len(set(ids)) != len(ids):
        raise ValueError("device ids must be unique")

    def rel(value: Any) -> Path | None:
        if value is None:
            return None
        p = Path(str(value))
        return p if p.is_absolute() else base_dir / p

    queue = rel(edge.get("queue_path", "modbus-edge.sqlite"))
    assert queue is not None
    return EdgeConfig(
        devices=devices, queue_path=queue,
        disk_budget_mb=float(edge.get("disk_budget_mb", 200.0)),
        registry_path=rel(edge.get("registry")),
        kafka_bootstrap=edge.get("kafka_bootstrap"), topic_prefix=edge.get("topic_prefix"),
        forward_chunk=int(edge.get("forward_chunk", 500)),
        metrics_port=edge.get("metrics_port"),
        sqlite_synchronous=str(edge.get("sqlite_synchronous", "FULL")),
    )


class Metrics:
    """The agent's counters, in a registry it owns (several agents may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter("modbus_edge_polls", "device polls", ["device", "result"],
                             registry=r)
        self.errors = Counter("modbus_edge_modbus_errors", "failed Modbus requests",
                              ["device", "kind"], registry=r)
        self.up = Gauge("modbus_edge_device_up", "1 when the last poll worked", ["device"],
                        registry=r)
        self.points = Counter("modbus_edge_points", "point values decoded", ["device"],
                              registry=r)
        self.readings = Counter("modbus_edge_readings", "readings queued", ["device"],
                                registry=r)
        self.deadletters = Counter("modbus_edge_deadletters", "dead letters queued",
                                   ["reason"], registry=r)
        self.queue_depth = Gauge("modbus_edge_queue_depth", "rows waiting for Kafka",
                                 registry=r)
        self.queue_bytes = Gauge("modbus_edge_queue_bytes", "estimated bytes queued",
                                 registry=r)
        self.dropped = Counter("modbus_edge_queue_dropped", "rows dropped by the disk budget",
                               registry=r)
        self.forwarded = Counter("modbus_edge_forwarded", "rows acknowledged by Kafka",
                                 registry=r)
        self.forward_errors = Counter("modbus_edge_forward_errors", "failed sends to Kafka",
                                      registry=r)


class Router:
    """Reading -> (topic, key, value) rows: readings keyed by community, else a dead letter."""

    def __init__(self, registry: Registry | None, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings

    def rows(self, reading: Reading) -> tuple[tuple[str, bytes | None, bytes], str | None]:
        """The row to queue and, for a dead letter, its reason."""
        device = self.registry.device(reading.device_id) if self.registry else None
        if device is None:
            record = dead_letter(source=SOURCE, reason="unknown_device",
                                 detail=f"device {reading.device_id!r} is not in the registry",
                                 payload=reading.to_json(), origin=reading.device_id,
                                 decoder=reading.source)
            return ((self.settings.topic(DEADLETTER), SOURCE.encode(),
                     encode_dead_letter(record)), "unknown_device")
        routed = reading.with_community(device.community_id)
        return ((self.settings.topic(READINGS), device.community_id.encode(),
                 routed.to_json()), None)


class Agent:
    def __init__(self, config: EdgeConfig, settings: Settings | None = None,
                 registry: Registry | None = None) -> None:
        settings = settings or get_settings()
        overrides: dict[str, Any] = {k: v for k, v in (("kafka_bootstrap", config.kafka_bootstrap),
                                       ("topic_prefix", config.topic_prefix)) if v is not None}
        self.settings = dataclasses.replace(settings, **overrides)
        self.config = config
        if registry is None:
            registry = load_registry(config.registry_path or self.settings.registry_path)
        self.router = Router(registry, self.settings)
        self.metrics = Metrics()
        self.outbox = Outbox(config.queue_path,
                             budget_bytes=int(config.disk_budget_mb * 1024 * 1024),
                             synchronous=config.sqlite_synchronous)
        self.metrics.queue_depth.set_function(lambda: len(self.outbox))
        self.metrics.queue_bytes.set_function(lambda: self.outbox.size_bytes)
        self.forwarder = Forwarder(
            self.outbox, self.settings, chunk=config.forward_chunk,
            on_sent=self.metrics.forwarded.inc,
            on_error=lambda kind: self.metrics.forward_errors.inc(),
            producer_options=config.kafka_client)
        self.links: dict[tuple[str, ...], Link] = make_links(config.devices)
        self.pollers = [Poller(d, self.links[d.link_key]) for d in config.devices]
        self.online: dict[str, bool] = {}
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- one poll ------------------------------------------------------------------------
    def poll_device(self, poller: Poller) -> bool:
        """Poll, queue the readings; on failure log, count and mark offline. Never raises."""
        device = poller.device
        try:
            result = poller.poll()
        except ModbusReadError as exc:
            self._offline(poller, exc.kind, str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - a broken device must never stop the agent
            self._offline(poller, "other", f"{device.id}: {type(exc).__name__}: {exc}")
            return False
        rows: list[tuple[str, bytes | None, bytes]] = []
        for data, error in result.rejected:
            record = dead_letter(source=SOURCE, reason="invalid_reading", detail=str(error),
                                 payload=orjson.dumps(data), origin=str(data["device_id"]))
            rows.append((self.settings.topic(DEADLETTER), SOURCE.encode(),
                         encode_dead_letter(record)))
            self.metrics.deadletters.labels("invalid_reading").inc()
            log.error("%s: reading refused by the contract: %s", device.id, error)
        for reading in result.readings:
            row, reason = self.router.rows(reading)
            rows.append(row)
            if reason:
                self.metrics.deadletters.labels(reason).inc()
            else:
                self.metrics.readings.labels(device.id).inc()
        dropped = self.outbox.put_many(rows)
        if dropped:
            self.metrics.dropped.inc(dropped)
            log.warning("disk budget full: dropped the %d oldest queued readings", dropped)
        self.forwarder.wake.set()
        self.metrics.points.labels(device.id).inc(result.points_read)
        self.metrics.polls.labels(device.id, "ok").inc()
        self.metrics.up.labels(device.id).set(1)
        if not self.online.get(device.id, False):
            log.info("%s online (%d requests, %d points)", device.id, result.requests,
                     result.points_read)
        self.online[device.id] = True
        return True

    def _offline(self, poller: Poller, kind: str, message: str) -> None:
        device = poller.device
        self.metrics.errors.labels(device.id, kind).inc()
        self.metrics.polls.labels(device.id, "error").inc()
        self.metrics.up.labels(device.id).set(0)
        if self.online.get(device.id, True):
            log.error("device offline: %s", message)
        else:
            log.debug("device still offline: %s", message)
        self.online[device.id] = False
        poller.forget_map()

    def _device_loop(self, poller: Poller) -> None:
        interval = poller.device.poll_interval_s
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            self.poll_device(poller)
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # overran: skip missed slots instead of bursting
                next_at = now
            self.stop_event.wait(next_at - now)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.config.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(int(self.config.metrics_port), registry=self.metrics.registry)
        forward = threading.Thread(target=self.forwarder.run, name="forwarder", daemon=True)
        forward.start()
        self._threads.append(forward)
        for poller in self.pollers:
            thread = threading.Thread(target=self._device_loop, args=(poller,),
                                      name=f"poll-{poller.device.id}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("modbus edge: %d devices, %d queued readings", len(self.pollers),
                 len(self.outbox))

    def stop(self, drain_s: float = 5.0) -> None:
        self.stop_event.set()
        self.forwarder.stop_event.set()
        self.forwarder.wake.set()
        for thread in self._threads:
            thread.join(30)
        self.forwarder.drain(drain_s)
        self.forwarder.close()
        for link in self.links.values():
            link.close()
        self.outbox.close()

    def run_forever(self) -> None:
        self.start()
        try:
            while not self.stop_event.wait(1.0):
                pass
        finally:
            self.stop()


def poll_all_once(pollers: Sequence[Poller]) -> list[tuple[Poller, Any]]:
    """Poll each device once (for ``read --once``); returns results or errors per device."""
    out: list[tuple[Poller, Any]] = []
    for poller in pollers:
        try:
            out.append((poller, poller.poll()))
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            out.append((poller, exc))
    return out
