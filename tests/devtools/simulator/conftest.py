"""Fixtures for the simulator tests: a small private registry, free ports, an MQTT recorder.

Every test gets its own device ids (a unique suffix) so it only ever sees its own messages on
the shared Mosquitto, and free Modbus ports (never the demo's 5020/5021).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from ioe.settings import Settings

#: valid CUPS borrowed from the example community
CUPS = ("ES0021380404050463BV", "ES0021310451747942WF", "ES0021302959018947AX",
        "ES0021482977564358KG")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SimCommunity:
    path: Path
    suffix: str
    gen1: str
    gen2: str
    tasmota: str
    emon: str
    sunspec_port: int
    huawei_port: int

    @property
    def topic_filters(self) -> list[str]:
        return [f"shellies/{self.gen1}/#", f"{self.gen2}/#", f"tele/{self.tasmota}/#",
                f"emon/{self.emon}/#"]


def write_registry(tmp_path: Path, suffix: str) -> SimCommunity:
    gen1, gen2 = f"shellyem-T{suffix.upper()}", f"shellypro3em-t{suffix}"
    tasmota, emon = f"tasmota_T{suffix.upper()}", f"emontxT{suffix}"
    sunspec_port, huawei_port = free_port(), free_port()
    members = [{"id": f"m{i + 1}", "name": f"Member {i + 1}", "cups": cups,
                "contracted_power_kw": 4.6} for i, cups in enumerate(CUPS)]
    devices = [
        {"id": "inv-ss", "role": "generation", "plant": "p1", "rated_power_w": 6000,
         "protocol": {"type": "modbus", "host": "127.0.0.1", "port": sunspec_port, "unit": 1,
                      "map": "sunspec"}},
        {"id": "inv-hw", "role": "generation", "plant": "p1", "rated_power_w": 4000,
         "protocol": {"type": "modbus", "host": "127.0.0.1", "port": huawei_port, "unit": 1,
                      "map": "huawei-sun2000"}},
        {"id": f"{gen1}:0", "role": "consumption", "member": "m1",
         "protocol": {"type": "mqtt", "decoder": "shelly-gen1", "topic_id": gen1}},
        {"id": f"{gen2}:0", "role": "consumption", "member": "m2",
         "protocol": {"type": "mqtt", "decoder": "shelly-gen2", "topic_id": gen2}},
        {"id": tasmota, "role": "consumption", "member": "m3",
         "protocol": {"type": "mqtt", "decoder": "tasmota", "topic_id": tasmota}},
        {"id": f"{emon}:1", "role": "consumption", "member": "m4",
         "protocol": {"type": "mqtt", "decoder": "emonhub", "topic_id": emon}},
    ]
    document = {"communities": [{
        "id": f"ce-test-{suffix}", "name": "Test", "timezone": "Europe/Madrid",
        "location": {"latitude": 39.4863, "longitude": -0.3586},
        "plants": [{"id": "p1", "name": "Plant", "peak_power_kw": 10, "tilt_deg": 15,
                    "azimuth_deg": 180}],
        "members": members, "devices": devices}]}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return SimCommunity(path, suffix, gen1, gen2, tasmota, emon, sunspec_port, huawei_port)


@pytest.fixture
def community(tmp_path: Path, unique_id: str) -> SimCommunity:
    return write_registry(tmp_path, unique_id)


@pytest.fixture(scope="session")
def mosquitto() -> Settings:
    """Mosquitto only (the simulator needs no Kafka or ClickHouse)."""
    from devtools import stack
    from ioe.settings import get_settings

    settings = get_settings()
    stack.up(settings, only=["mosquitto"], out=lambda line: None)
    return settings


@dataclass
class Recorder:
    """Every message received on some topic filters, with the real arrival time."""

    messages: list[tuple[str, bytes, bool, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, _client: object, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain), time.time()))

    def of(self, topic: str, include_retained: bool = False) -> list[bytes]:
        with self.lock:
            return [p for t, p, r, _ in self.messages
                    if t == topic and (include_retained or not r)]

    def topics(self) -> set[str]:
        with self.lock:
            return {t for t, _, _, _ in self.messages}


@contextmanager
def recording(settings: Settings, topic_filters: list[str]) -> Iterator[Recorder]:
    """Subscribe before anything is published; clear the retained availability afterwards."""
    rec = Recorder()
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = rec.on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    client.subscribe([(f, 0) for f in topic_filters])
    assert subscribed.wait(10), "no SUBACK from Mosquitto"
    try:
        yield rec
    finally:
        client.disconnect()
        client.loop_stop()
        cleaner = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        cleaner.connect(settings.mqtt_host, settings.mqtt_port)
        cleaner.loop_start()
        infos = [cleaner.publish(t, b"", retain=True) for t in rec.topics()
                 if t.endswith(("/online", "/LWT"))]
        for info in infos:
            info.wait_for_publish(5)
        cleaner.disconnect()
        cleaner.loop_stop()


@pytest.fixture
def recorder(mosquitto: Settings, community: SimCommunity) -> Iterator[Recorder]:
    with recording(mosquitto, community.topic_filters) as rec:
        yield rec
