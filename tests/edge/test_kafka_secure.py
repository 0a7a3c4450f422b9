"""Kafka's SASL_SSL listener of ``ioe stack up --secure``: SCRAM-SHA-512 per edge, ACLs from
``ioe edge enrol``, removal by ``ioe edge revoke``; and the Modbus edge started from its bundle
(``ioe modbus-edge --bundle DIR``) keeping what it reads while refused.

One private broker for the module (free ports, tmp state; about 10 s to start), never the
shared one. Its loopback PLAINTEXT listener is the privileged observer.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import yaml
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from connectors.modbus_edge.simserver import SimServer
from devtools import stack
from ioe.edge.authority import EdgeAuthority
from ioe.edge.bundle import Bundle, Endpoints, load_bundle
from ioe.edge.identity import EdgeId
from ioe.edge.kafka_access import KafkaAccess
from ioe.kafka import ensure_topics, make_producer
from ioe.settings import Settings, get_settings
from ioe.topics import BALANCES, READINGS, REGISTRY

from .edge_helpers import REGISTRY_YAML, free_port, start_agent, stop_agent, wait_for

pytestmark = pytest.mark.stack

EDGE = EdgeId("ce-test", "roof")
OTHER = EdgeId("ce-test", "shed")
PREFIX = "sec."


@dataclass
class SecureKafka:
    plain: Settings  # loopback PLAINTEXT, the super user
    options: stack.SecureOptions
    authority: EdgeAuthority
    mqtt: Settings  # a private secure Mosquitto of the same state (heartbeats)

    @property
    def secure_bootstrap(self) -> str:
        return f"127.0.0.1:{self.options.kafka_port}"

    def enrol(self, edge: EdgeId, out: Path) -> Bundle:
        return self.authority.enrol(edge, out, Endpoints("127.0.0.1", self.options.mqtt_port,
                                                         self.secure_bootstrap),
                                    topic_prefix=PREFIX)

    def edge_producer(self, bundle: Bundle, **overrides: object):  # noqa: ANN201
        settings = dataclasses.replace(self.plain, kafka_bootstrap=self.secure_bootstrap)
        options: dict[str, object] = {**bundle.kafka_client_options(), "max_block_ms": 5000,
                                      "bootstrap_timeout_ms": 5000,
                                      "request_timeout_ms": 8000, "retries": 0,
                                      "enable_idempotence": False, **overrides}
        return make_producer(settings, **options)


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    root = tmp_path_factory.mktemp("kafka-secure")
    options = stack.SecureOptions(state_dir=root / "edge", kafka_port=free_port(),
                                  mqtt_port=free_port(), bind="127.0.0.1")
    mqtt = dataclasses.replace(get_settings(), mqtt_port=free_port(), local_dir=root / "local")
    stack.up(mqtt, only=["mosquitto"], out=lambda line: None, secure=options)
    broker = stack.PrivateKafka(get_settings(), root / "kafka", partitions=1, secure=options)
    try:
        broker.start()
        plain = dataclasses.replace(broker.settings, topic_prefix=PREFIX)
        ensure_topics(plain)
        authority = EdgeAuthority(options.state_dir,
                                  kafka=KafkaAccess(plain.kafka_bootstrap, PREFIX))
        yield SecureKafka(plain, options, authority, mqtt)
    finally:
        broker.stop()
        stack.down(mqtt, out=lambda line: None)


def topic_values(settings: Settings, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                             enable_auto_commit=False, consumer_timeout_ms=2000)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        return [m.value for m in consumer]
    finally:
        consumer.close()


def test_edge_produces_readings_and_nothing_else(kafka: SecureKafka, tmp_path: Path) -> None:
    bundle = kafka.enrol(EDGE, tmp_path / "roof")
    producer = kafka.edge_producer(bundle)
    try:
        producer.send(kafka.plain.topic(READINGS), key="ce-test", value=b"roof-1").get(20)
        for forbidden in (BALANCES, REGISTRY):
            with pytest.raises(KafkaError):
                producer.send(kafka.plain.topic(forbidden), key="ce-test",
                              value=b"forged").get(20)
    finally:
        producer.close()
    assert b"roof-1" in topic_values(kafka.plain, kafka.plain.topic(READINGS))
    assert b"forged" not in topic_values(kafka.plain, kafka.plain.topic(BALANCES))
    # nor read the readings of the community
    consumer = KafkaConsumer(bootstrap_servers=kafka.secure_bootstrap,
                             **bundle.kafka_client_options(), consumer_timeout_ms=3000,
                             group_id="ioe-modbus-edge-ce-test.roof-x")
    try:
        consumer.subscribe([kafka.plain.topic(READINGS)])
        with pytest.raises(KafkaError):
            list(consumer)
    finally:
        consumer.close()
    kafka.authority.revoke(EDGE.edge, EDGE.community)


def refused_send(make, topic: str, value: bytes) -> None:  # noqa: ANN001
    """The broker refuses this send: authentication (the producer's bootstrap fails) or
    authorisation (the send fails)."""
    producer = None
    with pytest.raises(KafkaError):
        producer = make()
        producer.send(topic, key="ce-test", value=value).get(20)
    if producer is not None:
        producer.close(timeout=0)


def test_wrong_password_and_revoked_credential_are_refused(kafka: SecureKafka,
                                                           tmp_path: Path) -> None:
    bundle = kafka.enrol(OTHER, tmp_path / "shed")
    good = kafka.edge_producer(bundle)
    good.send(kafka.plain.topic(READINGS), key="ce-test", value=b"shed-1").get(20)
    refused_send(lambda: kafka.edge_producer(bundle, sasl_plain_password="not-the-password"),
                 kafka.plain.topic(READINGS), b"wrong")
    kafka.authority.revoke(OTHER.edge, OTHER.community)
    # the open connection: its ACLs are gone, the next request is refused
    refused_send(lambda: good, kafka.plain.topic(READINGS), b"after-1")
    # a new connection: the credential is gone
    refused_send(lambda: kafka.edge_producer(bundle), kafka.plain.topic(READINGS), b"after-2")
    values = topic_values(kafka.plain, kafka.plain.topic(READINGS))
    assert b"shed-1" in values and not {b"wrong", b"after-1", b"after-2"} & set(values)


def test_loopback_listener_is_unchanged(kafka: SecureKafka) -> None:
    producer = make_producer(kafka.plain)
    try:
        producer.send(kafka.plain.topic(BALANCES), key="ce-test", value=b"service").get(20)
    finally:
        producer.close()


# -- the Modbus edge from its bundle -------------------------------------------------------------
def f32(value: float) -> list[int]:
    raw = struct.pack(">f", value)
    return [int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")]


def counting_sdm630(polls: list[int]) -> SimServer:
    """An SDM630 whose import counter (kWh) goes up by one at every poll: the counters on
    Kafka tell exactly which polls arrived."""
    image = {a: 0 for a in range(0, 0x12)}
    for address in (0x34, 0x3E, 0x46, 0x48, 0x4A):
        image[address], image[address + 1] = f32(0.0)

    def on_read(unit, fc, address, count, live):  # noqa: ANN001, ANN202
        if address <= 0x48 < address + count:
            polls[0] += 1
            live[0x48], live[0x49] = f32(float(polls[0]))
        return None

    return SimServer({1: image}, on_read=on_read).start()


def queued(path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:
        return -1
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.OperationalError:
        return -1
    finally:
        db.close()


def test_modbus_edge_bundle_keeps_readings_while_revoked(kafka: SecureKafka,
                                                         tmp_path: Path) -> None:
    edge = EdgeId("ce-test", "plant-edge")
    bundle_dir = tmp_path / "bundle"
    bundle = kafka.enrol(edge, bundle_dir)
    polls = [0]
    meter = counting_sdm630(polls)
    (tmp_path / "registry.yaml").write_text(REGISTRY_YAML)
    queue = tmp_path / "edge.sqlite"
    (bundle_dir / "edge.yaml").write_text(yaml.safe_dump({
        "edge": {"queue_path": str(queue), "registry": str(tmp_path / "registry.yaml"),
                 "forward_chunk": 5},
        "devices": [{"id": "meter-1", "map": "sdm630", "host": "127.0.0.1",
                     "port": meter.port, "poll_interval_s": 0.1, "timeout_s": 2}]}))
    log = tmp_path / "agent.log"
    topic = kafka.plain.topic(READINGS)
    agent = start_agent(bundle_dir, log, "DEBUG")
    try:
        wait_for(lambda: polls[0] >= 5 and 0 <= queued(queue) < 3, 60, "forwarding via SASL_SSL")
        # its heartbeat, over its own TLS session, is the control centre's last contact
        from ioe.edge.heartbeat import last_contacts

        deadline = time.monotonic() + 20
        while edge not in (beats := last_contacts(kafka.mqtt.mqtt_host, kafka.mqtt.mqtt_port,
                                                  wait_s=0.3)):
            assert time.monotonic() < deadline, "no heartbeat from the agent"
        assert beats[edge].uptime_s >= 0 and beats[edge].queue_depth is not None
        kafka.authority.revoke(edge.edge, edge.community)
        revoked_at = polls[0]
        wait_for(lambda: queued(queue) >= 20, 60, "readings buffered while refused")
        assert polls[0] > revoked_at
        stop_agent(agent)
        left = queued(queue)
        assert left >= 20, "readings taken while refused must stay in the store"
        # a new enrolment (new certificate and password in the same directory): all sent
        load_bundle(kafka.enrol(edge, bundle_dir).directory)
        agent = start_agent(bundle_dir, log, "DEBUG")
        wait_for(lambda: 0 <= queued(queue) < 3, 60, "replay after the new enrolment")
    finally:
        stop_agent(agent)
        meter.stop()
    counters = sorted({orjson.loads(v)["energy_wh"] / 1000.0
                       for v in topic_values(kafka.plain, topic)
                       if v.startswith(b"{") and b"meter-1" in v})
    assert counters and counters[0] <= 2
    missing = set(range(int(counters[0]), int(counters[-1]) + 1)) - {int(c) for c in counters}
    assert not missing, f"readings lost while refused: {sorted(missing)[:10]}"
    # no secret in the agent's log (DEBUG level, so everything it says)
    text = log.read_text(errors="replace")
    assert bundle.kafka_password() not in text
    assert load_bundle(bundle_dir).kafka_password() not in text
    assert "PRIVATE KEY" not in text


# -- commands: one topic per community, read with the bundle's credentials -------------------------
def registry_with_inverter(path: Path, inverter_port: int) -> Path:
    """ce-test with an inverter on the edge, and a second community the edge must not see."""
    path.write_text(yaml.safe_dump({"communities": [
        {"id": "ce-test", "name": "Test community", "timezone": "Europe/Madrid",
         "location": {"latitude": 39.48, "longitude": -0.36},
         "members": [{"id": "m01", "cups": "ES0021380404050463BV", "contracted_power_kw": 3.45}],
         "plants": [{"id": "plant-1", "peak_power_kw": 10}],
         "devices": [{"id": "inv-roof", "role": "generation", "plant": "plant-1",
                      "rated_power_w": 10000,
                      "protocol": {"type": "modbus", "host": "127.0.0.1",
                                   "port": inverter_port, "unit": 1, "map": "sunspec"}}]},
        {"id": "ce-other", "name": "Another community", "timezone": "Europe/Madrid",
         "location": {"latitude": 40.4, "longitude": -3.7},
         "members": [{"id": "m01", "cups": "ES0021310451747942WF", "contracted_power_kw": 4.6}],
         "plants": [{"id": "plant-9", "peak_power_kw": 20}],
         "devices": [{"id": "inv-other", "role": "generation", "plant": "plant-9",
                      "protocol": {"type": "modbus", "host": "127.0.0.1", "port": 1,
                                   "unit": 1, "map": "sunspec"}}]}]}))
    return path


def test_edge_reads_its_community_commands_and_no_other(kafka: SecureKafka,
                                                        tmp_path: Path) -> None:
    from ioe.commands.registry import publish
    from ioe.topics import commands_topic

    edge = EdgeId("ce-test", "reader")
    bundle = kafka.enrol(edge, tmp_path / "reader")  # creates ce-test's command topic
    publish(registry_with_inverter(tmp_path / "registry.yaml", 1), kafka.plain)  # and ce-other's

    def read(community: str) -> list[bytes]:
        """What the edge gets from a community's command topic: the values, or nothing when
        the broker refuses (kafka-python logs the refusal or raises, depending on the call)."""
        consumer = KafkaConsumer(bootstrap_servers=kafka.secure_bootstrap,
                                 **bundle.kafka_client_options(), consumer_timeout_ms=3000,
                                 enable_auto_commit=False)
        try:
            tp = TopicPartition(kafka.plain.topic(commands_topic(community)), 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            return [m.value for m in consumer]
        except KafkaError:
            return []
        finally:
            consumer.close()

    producer = make_producer(kafka.plain)
    try:
        for community in ("ce-test", "ce-other"):
            producer.send(kafka.plain.topic(commands_topic(community)), key=community,
                          value=f"for {community}".encode()).get(20)
    finally:
        producer.close()
    assert read("ce-test") == [b"for ce-test"]
    assert read("ce-other") == []
    assert topic_values(kafka.plain, kafka.plain.topic(commands_topic("ce-other"))) == [
        b"for ce-other"]  # it is there: the edge may not read it
    kafka.authority.revoke(edge.edge, edge.community)


def test_modbus_edge_executes_commands_over_sasl_ssl(kafka: SecureKafka, tmp_path: Path) -> None:
    """``ioe modbus-edge --bundle`` with ``control:`` reads its community's commands and
    answers on the results topic with its own credentials; the inverter obeys and reads back."""
    from connectors.modbus_edge.writesim import SunSpecInverter
    from control.bus import ResultWatcher, now_ms, send_command
    from control.commands import Requester, issue
    from ioe.registry import load_registry

    edge = EdgeId("ce-test", "plant-control")
    bundle_dir = tmp_path / "bundle"
    bundle = kafka.enrol(edge, bundle_dir)
    inverter = SunSpecInverter(rated_w=10_000, available_w=8_000)
    server = inverter.server().start()
    registry_path = registry_with_inverter(tmp_path / "registry.yaml", server.port)
    (bundle_dir / "edge.yaml").write_text(yaml.safe_dump({
        "edge": {"queue_path": str(tmp_path / "edge.sqlite"), "registry": str(registry_path)},
        "control": {"enabled": True},
        "devices": [{"id": "inv-roof", "map": "sunspec", "host": "127.0.0.1",
                     "port": server.port, "poll_interval_s": 1, "timeout_s": 2}]}))
    log = tmp_path / "agent.log"
    agent = start_agent(bundle_dir, log, "DEBUG")
    watcher = ResultWatcher(kafka.plain)
    producer = make_producer(kafka.plain)
    try:
        wait_for(lambda: "executing commands for 1 devices" in log.read_text(errors="replace"),
                 60, "the edge's command executor")
        issued = issue(load_registry(registry_path), Requester.parse("operator:ana"), "inv-roof",
                       "power_limit_pct", 40, reason="export too high", now_ms=now_ms(),
                       ttl_s=30, revert_s=300)
        assert issued.status == "sent", issued
        send_command(producer, kafka.plain, issued.command)
        results = watcher.wait({issued.command.command_id}, now_ms() + 40_000)
    finally:
        producer.close()
        watcher.close()
        stop_agent(agent)
        server.stop()
    result = results.get(issued.command.command_id)
    assert result is not None, log.read_text(errors="replace")[-3000:]
    assert result.status == "acknowledged" and result.readback == 40
    assert result.executor == "modbus-edge"
    assert inverter.limit_pct == 40
    text = log.read_text(errors="replace")
    assert bundle.kafka_password() not in text and "PRIVATE KEY" not in text
    kafka.authority.revoke(edge.edge, edge.community)
