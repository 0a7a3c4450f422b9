"""The bridge in this process against the real Mosquitto and Kafka: routing, retained messages,
registry following, metrics, and messages kept by the broker while the bridge is away."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from mqtt_helpers import (
    COMMUNITY,
    consume,
    forget_session,
    make_registry,
    mqtt_client,
    publish_all,
)

from connectors.mqtt_bridge.bridge import Bridge, BridgeConfig
from ioe.kafka import make_producer
from ioe.reading import Reading
from ioe.registry import parse_registry
from ioe.settings import Settings
from ioe.topics import DEADLETTER, READINGS, REGISTRY

pytestmark = pytest.mark.stack


@pytest.fixture
def root(unique_id: str) -> str:
    return f"ioetest/{unique_id}"


@pytest.fixture
def bridge_factory(kafka_settings: Settings, unique_id: str, root: str) -> Iterator[object]:
    started: list[Bridge] = []
    client_id = f"ioe-test-bridge-{unique_id}"

    def start(**overrides: object) -> Bridge:
        options = {"settings": kafka_settings, "client_id": client_id, "topic_root": root,
                   "registry": make_registry(["shellyem-AA:0", "tasmota_1"]),
                   "follow_registry": False}
        options.update(overrides)
        bridge = Bridge(BridgeConfig(**options))  # type: ignore[arg-type]
        bridge.start()
        started.append(bridge)
        assert bridge.wait_ready(30), "bridge did not subscribe"
        return bridge

    yield start
    for bridge in started:
        bridge.stop(timeout_s=10)
    forget_session(kafka_settings, client_id)


def test_messages_routed_retained_ignored_metrics_counted(
        kafka_settings: Settings, root: str, bridge_factory) -> None:  # noqa: ANN001
    publisher = mqtt_client(kafka_settings)
    retained_topic = f"{root}/shellies/shellyem-AA/emeter/0/total"
    try:
        # a value retained before the bridge subscribes is replayed to it: old, not fresh
        publish_all(publisher, [(retained_topic, b"99999")], retain=True)
        bridge = bridge_factory()
        publish_all(publisher, [
            (f"{root}/shellies/shellyem-AA/emeter/0/power", b"-450.5"),
            (f"{root}/shellies/shellyem-AA/emeter/0/energy", b"7000"),  # watt-minutes
            (f"{root}/shellies/shellyem-AA/online", b"true"),
            (f"{root}/tele/tasmota_1/SENSOR",
             b'{"Time":"2024-01-15T12:00:00","ENERGY":{"Total":2.5,"Power":[100,200]}}'),
            (f"{root}/tele/tasmota_1/LWT", b"Online"),
            (f"{root}/tele/tasmota_9/SENSOR", b'{"ENERGY":{"Power":1}}'),  # unknown device
            (f"{root}/tele/tasmota_1/SENSOR", b"not json"),
            (f"{root}/weather/online", b"1"),  # subscribed shape, no decoder
        ])
        readings = consume(kafka_settings, READINGS, lambda rs: len(rs) >= 2)
        dead = consume(kafka_settings, DEADLETTER, lambda rs: len(rs) >= 3)
        by_device = {Reading.from_json(r.value).device_id: Reading.from_json(r.value)
                     for r in readings}
        assert len(readings) == 2 and set(by_device) == {"shellyem-AA:0", "tasmota_1"}
        assert by_device["shellyem-AA:0"].power_w == -450.5
        tasmota = by_device["tasmota_1"]
        assert (tasmota.energy_wh, tasmota.power_w, tasmota.ts_ms) == (2500.0, 300.0,
                                                                       1705316400000)
        assert all(r.key == COMMUNITY.encode() for r in readings)
        reasons = sorted(orjson.loads(r.value)["reason"] for r in dead)
        assert reasons == ["decode_error", "no_decoder", "unknown_device"]
        deadline = time.monotonic() + 10
        while bridge.metrics.value("ioe_mqtt_bridge_acked_total") < 9 and (
                time.monotonic() < deadline):
            time.sleep(0.1)
        m = bridge.metrics
        assert m.value("ioe_mqtt_bridge_received_total") == 9
        assert m.value("ioe_mqtt_bridge_acked_total") == 9
        assert m.value("ioe_mqtt_bridge_readings_produced_total") == 2
        assert m.value("ioe_mqtt_bridge_ignored_total", reason="retained") == 1
        assert m.value("ioe_mqtt_bridge_ignored_total", reason="availability") == 2
        assert m.value("ioe_mqtt_bridge_ignored_total", reason="unused_field") == 1
        for reason in ("decode_error", "no_decoder", "unknown_device"):
            assert m.value("ioe_mqtt_bridge_dead_lettered_total", reason=reason) == 1
    finally:
        publish_all(publisher, [(retained_topic, b"")], retain=True)  # clear the retained value
        publisher.disconnect()
        publisher.loop_stop()


def test_messages_published_while_stopped_arrive_after_restart(
        kafka_settings: Settings, root: str, bridge_factory) -> None:  # noqa: ANN001
    publisher = mqtt_client(kafka_settings)
    topic = f"{root}/tele/tasmota_1/SENSOR"

    def message(i: int) -> tuple[str, bytes]:
        return topic, orjson.dumps({"Time": f"2024-01-15T12:00:{i:02d}",
                                    "ENERGY": {"Power": float(i)}})
    try:
        first = bridge_factory()
        publish_all(publisher, [message(i) for i in range(0, 10)])
        consume(kafka_settings, READINGS, lambda rs: len(rs) >= 10, timeout_s=30)
        first.stop()
        publish_all(publisher, [message(i) for i in range(10, 30)])  # nobody listening
        bridge_factory()  # same client id: the broker kept the session and its queue
        publish_all(publisher, [message(i) for i in range(30, 40)])
        readings = consume(kafka_settings, READINGS, lambda rs: len(rs) >= 40, timeout_s=60)
        powers = sorted(Reading.from_json(r.value).power_w for r in readings)
        assert powers == [float(i) for i in range(40)]
    finally:
        publisher.disconnect()
        publisher.loop_stop()


def test_registry_followed_from_kafka(kafka_settings: Settings, root: str,
                                      bridge_factory) -> None:  # noqa: ANN001
    from mqtt_helpers import registry_document

    bridge = bridge_factory(registry=None, follow_registry=True)
    acme = {"id": "acme-new", "role": "generation", "member": "m2",
            "protocol": {"type": "mqtt", "decoder": "json-map", "topic": "acme/new/state",
                         "fields": {"power_w": {"path": "out.kw", "unit": "kW"}}}}
    document = registry_document(["zb_plug_new"], [acme], community="ce-live")
    community = parse_registry(document).community("ce-live")
    producer = make_producer(kafka_settings)
    producer.send(kafka_settings.topic(REGISTRY), key="ce-live", value=community.to_json())
    producer.flush()
    producer.close()
    deadline = time.monotonic() + 30
    while bridge.registry.device("zb_plug_new") is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert bridge.registry.community_of_device("zb_plug_new") == "ce-live"
    # the JSON meter's topic was not subscribed at start: the bridge adds it on its own
    deadline = time.monotonic() + 30
    while f"{root}/acme/new/state" not in bridge.active_filters and (
            time.monotonic() < deadline):
        time.sleep(0.2)
    publisher = mqtt_client(kafka_settings)
    try:
        publish_all(publisher, [(f"{root}/zigbee2mqtt/zb_plug_new", b'{"power": 42}'),
                                (f"{root}/acme/new/state", b'{"out": {"kw": 2.5}}')])
        readings = consume(kafka_settings, READINGS, lambda rs: len(rs) >= 2, timeout_s=30)
        got = sorted((r.key, Reading.from_json(r.value).device_id,
                      Reading.from_json(r.value).power_w) for r in readings)
        assert got == [(b"ce-live", "acme-new", 2500.0), (b"ce-live", "zb_plug_new", 42.0)]
    finally:
        publisher.disconnect()
        publisher.loop_stop()


# -- fuzzing through the real broker and Kafka ------------------------------------------------------
def test_fuzzed_messages_through_the_running_bridge(kafka_settings: Settings, root: str,
                                                    bridge_factory) -> None:  # noqa: ANN001
    """Random topics and payloads never stop the bridge; each message is acked and its records
    (readings + dead letters) are exactly those a fresh processor derives from the same input."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from paho.mqtt.client import topic_matches_sub
    from test_mqtt_processor import PAYLOADS, TOPICS

    from connectors.mqtt_bridge.decoders import DecodeContext
    from connectors.mqtt_bridge.processor import Processor

    registry = make_registry(["shellyem-AA:0", "tasmota_1", "plug1"])
    bridge = bridge_factory(registry=registry)
    reference = Processor(registry, DecodeContext(), topic_root=root)
    filters = bridge._filters()
    publisher = mqtt_client(kafka_settings)
    totals = {"messages": 0, "records": 0}

    @settings(max_examples=4, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(TOPICS, PAYLOADS), min_size=1, max_size=40))
    def batch(messages: list[tuple[str, bytes]]) -> None:
        routed = [(f"{root}/{t}", p) for t, p in messages]
        routed = [(t, p) for t, p in routed if any(topic_matches_sub(f, t) for f in filters)]
        publish_all(publisher, routed)
        for topic, payload in routed:
            totals["records"] += len(reference.process(topic, payload, int(time.time() * 1000))
                                     .records)
        totals["messages"] += len(routed)

    try:
        batch()
        deadline = time.monotonic() + 60
        while bridge.metrics.value("ioe_mqtt_bridge_acked_total") < totals["messages"] and (
                time.monotonic() < deadline):
            time.sleep(0.1)
        assert bridge.metrics.value("ioe_mqtt_bridge_acked_total") == totals["messages"]
        assert bridge.metrics.value("ioe_mqtt_bridge_received_total") == totals["messages"]
        readings = consume(kafka_settings, READINGS, lambda rs: False, timeout_s=3)
        dead = consume(kafka_settings, DEADLETTER, lambda rs: False, timeout_s=3)
        assert len(readings) + len(dead) == totals["records"]
        assert all(orjson.loads(r.value)["reason"] != "internal_error" for r in dead)
        assert not bridge._worker_done.is_set(), "the bridge worker died"
    finally:
        publisher.disconnect()
        publisher.loop_stop()


# -- MQTT broker restart: automatic reconnect, session kept -----------------------------------------
class PrivateMosquitto:
    """A private broker (the shared one on 1883 must never be restarted)."""

    def __init__(self, workdir: Path) -> None:
        import shutil
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1", "allow_anonymous true",
            f"user {'root' if os.geteuid() == 0 else os.environ.get('USER', 'root')}",
            "persistence true", f"persistence_location {workdir}/",
            "max_queued_messages 100000", "log_dest stderr", "log_type error", ""]))
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from devtools.stack import port_open

        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", self.port):
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "private mosquitto did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves sessions and queues to disk
            self.proc.wait(20)
        self.proc = None


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    broker = PrivateMosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_bridge_reconnects_by_itself_after_a_broker_restart(
        kafka_settings: Settings, root: str, bridge_factory,  # noqa: ANN001
        private_mosquitto: PrivateMosquitto) -> None:
    settings = dataclasses.replace(kafka_settings, mqtt_port=private_mosquitto.port)
    bridge = bridge_factory(settings=settings, reconnect_min_s=1, reconnect_max_s=2)
    topic = f"{root}/tele/tasmota_1/SENSOR"

    def publish(lo: int, hi: int) -> None:
        publisher = mqtt_client(settings)
        publish_all(publisher, [(topic, orjson.dumps(
            {"Time": f"2024-01-15T12:{i // 60:02d}:{i % 60:02d}", "ENERGY": {"Power": i}}))
            for i in range(lo, hi)])
        publisher.disconnect()
        publisher.loop_stop()

    publish(0, 20)
    consume(kafka_settings, READINGS, lambda rs: len(rs) >= 20, timeout_s=30)
    private_mosquitto.stop()
    deadline = time.monotonic() + 10
    while bridge.metrics.value("ioe_mqtt_bridge_connected") == 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert bridge.metrics.value("ioe_mqtt_bridge_connected") == 0
    private_mosquitto.start()
    publish(20, 40)  # queued in the bridge's restored session even before it reconnects
    def distinct(rs) -> dict[tuple[str, int], bytes]:  # noqa: ANN001
        """QoS 1 across a broker restart is at-least-once: a message whose ack the broker had
        not yet saved comes again. Copies must be identical, so (device_id, ts_ms) absorbs
        them downstream; what must never happen is a missing or a different reading."""
        by_key: dict[tuple[str, int], bytes] = {}
        for r in rs:
            reading = Reading.from_json(r.value)
            key = (reading.device_id, reading.ts_ms)
            assert by_key.setdefault(key, r.value) == r.value, f"two different readings {key}"
        return by_key

    readings = consume(kafka_settings, READINGS, lambda rs: len(distinct(rs)) >= 40,
                       timeout_s=60)
    assert sorted(Reading.from_json(v).power_w for v in distinct(readings).values()) == [
        float(i) for i in range(40)]
    assert bridge.metrics.value("ioe_mqtt_bridge_connected") == 1
