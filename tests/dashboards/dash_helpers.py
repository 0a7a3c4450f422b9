"""Helpers of the dashboards tests: the test registry, a real uvicorn server, live messages."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from dashboards import tokens
from dashboards.app import create_app
from ioe.kafka import make_producer
from ioe.settings import Settings
from ioe.topics import LIVE

CID = "ce-test"
OTHER = "ce-other"
CUPS = {"m1": "ES0021380404050463BV", "m2": "ES0021310451747942WF",
        "m3": "ES0021302959018947AX", "x1": "ES0021482977564358KG"}
PLANT_CUPS = "ES0021084908453624LJ1F"

REGISTRY_YAML = f"""
communities:
  - id: {CID}
    name: Comunidad de Prueba
    timezone: Europe/Madrid
    location: {{latitude: 39.48, longitude: -0.36}}
    prices: {{energy_eur_kwh: 0.15, surplus_eur_kwh: 0.04}}
    plants:
      - {{id: plant-1, name: Cubierta Escuela, cups: {PLANT_CUPS}, peak_power_kw: 10}}
    members:
      - {{id: m1, name: Ana García, cups: {CUPS["m1"]}, contracted_power_kw: 3.45}}
      - {{id: m2, name: Josep Martí, cups: {CUPS["m2"]}, contracted_power_kw: 4.6}}
      - {{id: m3, name: Lucía Pérez, cups: {CUPS["m3"]}, contracted_power_kw: 3.45}}
    devices:
      - {{id: inv-1, role: generation, plant: plant-1, rated_power_w: 10000,
          expected_interval_s: 10}}
      - {{id: "shelly-m1:0", role: consumption, member: m1, expected_interval_s: 10}}
      - {{id: "shelly-m2:0", role: consumption, member: m2, expected_interval_s: 10}}
      - {{id: "shelly-m3:0", role: consumption, member: m3, expected_interval_s: 10}}
    coefficients:
      - effective_from: 2025-01-01
        static: {{{CUPS["m1"]}: 0.5, {CUPS["m2"]}: 0.3, {CUPS["m3"]}: 0.2}}
  - id: {OTHER}
    name: Otra Comunidad
    timezone: Europe/Madrid
    plants:
      - {{id: plant-x, name: Planta X, peak_power_kw: 5,
          location: {{latitude: 40.4, longitude: -3.7}}}}
    members:
      - {{id: x1, name: Xavier, cups: {CUPS["x1"]}, contracted_power_kw: 3.45}}
    coefficients:
      - effective_from: 2025-01-01
        static: {{{CUPS["x1"]}: 1.0}}
"""


def with_web(settings: Settings, tmp_path: Path, registry_file: Path) -> Settings:
    return dataclasses.replace(settings, local_dir=tmp_path / "local",
                               token_secret="test-secret-0123456789abcdef0123456789-" + tmp_path.name,
                               registry_path=registry_file)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The app under uvicorn in a thread; ``url`` is its http root."""

    def __init__(self, settings: Settings, port: int | None = None, **app_options: Any) -> None:
        self.settings = settings
        self.app = create_app(settings, **app_options)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                ws_max_size=64 * 1024, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        for consumer in self.app.state.consumers:
            if not consumer.ready.wait(60):
                raise RuntimeError("the live consumer did not get its partitions")
            self.loop = consumer.loop
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def deliver(self, messages: list[dict[str, Any]]) -> None:
        """Hand messages to the app exactly as its Kafka consumer does (one batch)."""
        batch = [(b"k", orjson.dumps(m)) for m in messages]
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.app.state.router.deliver, batch)

    def token(self, role: str = "member", community: str = CID, member: str | None = "m1",
              **kw: Any) -> str:
        if role == "member":
            return tokens.issue(self.settings, role="member", communities=[community],
                                member_id=member, **kw)[0]
        return tokens.issue(self.settings, role="operator", communities=[community], **kw)[0]

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.app.state.metrics.registry.get_sample_value(name, labels or {})
        return float(value or 0.0)


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition"
             ) -> Any:
    """Poll until ``condition()`` is truthy (waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def member_msg(member: str, ts_ms: int, *, assigned: float, consumption: float,
               community: str = CID, beta: float = 0.5, generation: float | None = None,
               **extra: Any) -> dict[str, Any]:
    """An ioe.live member message in the exact format of docs/internal-conventions.md."""
    gen = generation if generation is not None else assigned / beta if beta else 0.0
    return {"v": 1, "type": "member", "channel": f"member:{community}:{member}",
            "community_id": community, "member_id": member, "ts_ms": ts_ms,
            "coefficient": beta, "generation_w": gen, "assigned_w": assigned,
            "consumption_w": consumption, "self_consumption_w": min(assigned, consumption),
            "surplus_w": max(assigned - consumption, 0.0),
            "import_w": max(consumption - assigned, 0.0), "stale": False, **extra}


def community_msg(ts_ms: int, *, generation: float, consumption: float,
                  self_consumption: float, community: str = CID, reporting: int = 3,
                  total: int = 3) -> dict[str, Any]:
    return {"v": 1, "type": "community", "channel": f"community:{community}",
            "community_id": community, "ts_ms": ts_ms, "generation_w": generation,
            "consumption_w": consumption, "self_consumption_w": self_consumption,
            "surplus_w": max(generation - self_consumption, 0.0),
            "import_w": max(consumption - self_consumption, 0.0),
            "members_reporting": reporting, "members_total": total,
            "plants": {"plant-1": {"power_w": generation, "ts_ms": ts_ms}},
            "generators": {"inv-1": {"power_w": generation, "ts_ms": ts_ms, "stale": False}}}


def alarm_msg(alarm_id: str, channel: str, *, member: str | None, state: str = "open",
              ts_ms: int = 1_700_000_000_000, kind: str = "device_offline",
              device: str = "shelly-m1:0") -> dict[str, Any]:
    return {"v": 1, "type": "alarm", "channel": channel, "alarm": {
        "v": 1, "alarm_id": alarm_id, "community_id": CID, "device_id": device,
        "member_id": member, "kind": kind, "severity": "warning", "state": state,
        "opened_at_ms": ts_ms, "closed_at_ms": None if state == "open" else ts_ms + 1000,
        "evidence": {"age_s": 120}, "updated_at_ms": ts_ms + (0 if state == "open" else 1000),
        "version": 1 if state == "open" else 2}}


def produce(server: LiveServer, *messages: dict[str, Any]) -> None:
    producer = make_producer(server.settings)
    try:
        for message in messages:
            producer.send(server.settings.topic(LIVE), key=message.get("community_id", CID),
                          value=orjson.dumps(message))
        producer.flush(30)
    finally:
        producer.close()
