"""Relay commands on the real Mosquitto and Kafka: the bridge's executor publishes the right
topic and payload for each family and takes the read-back from the device's own status."""

from __future__ import annotations

import pytest
from control_helpers import COMMUNITY, make_registry
from relays import FakeRelays

from connectors.mqtt_bridge.commands import RelayCommands
from control.bus import ResultWatcher, now_ms, send_command
from control.commands import Requester, issue
from ioe.kafka import make_producer

pytestmark = pytest.mark.stack

BOILER, PLUG, PLUS = f"{COMMUNITY}-boiler:0", f"{COMMUNITY}-plug", f"{COMMUNITY}-plus:0"


@pytest.fixture
def bench(kafka_settings, unique_id):
    root = f"t{unique_id}"
    registry = make_registry()
    relays = FakeRelays(kafka_settings, root, gen1=[f"{COMMUNITY}-boiler"],
                        gen2=[f"{COMMUNITY}-plus"], tasmota=[PLUG])
    executor = RelayCommands(kafka_settings, registry, client_id=f"ctl-{unique_id}",
                             topic_root=root, group_id=f"bridge-{unique_id}",
                             timeout_s=5).start()
    producer = make_producer(kafka_settings)
    try:
        yield registry, relays, executor, producer, root
    finally:
        producer.close(timeout=5)
        executor.stop()
        relays.close()


def roundtrip(settings, registry, producer, device, key, value, ttl_s=10):
    issued = issue(registry, Requester.parse("operator:ana"), device, key, value,
                   reason="test", now_ms=now_ms(), ttl_s=ttl_s)
    assert issued.status == "sent", issued.refusal
    watcher = ResultWatcher(settings)
    try:
        send_command(producer, settings, issued.command)
        found = watcher.wait({issued.command.command_id}, issued.command.deadline_ms + 2000)
    finally:
        watcher.close()
    return found[issued.command.command_id]


def test_each_family_switches_and_reads_back(kafka_settings, bench):
    registry, relays, executor, producer, root = bench
    for device, name in ((BOILER, f"{COMMUNITY}-boiler"), (PLUG, PLUG),
                         (PLUS, f"{COMMUNITY}-plus")):
        on = roundtrip(kafka_settings, registry, producer, device, "relay", "on")
        assert (on.status, on.readback, on.executor) == ("acknowledged", "on", "mqtt-bridge")
        assert relays.state[name] is True
        off = roundtrip(kafka_settings, registry, producer, device, "relay", "off")
        assert (off.status, off.readback) == ("acknowledged", "off")
        assert relays.state[name] is False
    topics = [(t, p) for t, p in relays.received]
    assert (f"{root}/shellies/{COMMUNITY}-boiler/relay/0/command", b"on") in topics
    assert (f"{root}/cmnd/{PLUG}/POWER", b"ON") in topics
    rpc = [p for t, p in topics if t == f"{root}/{COMMUNITY}-plus/rpc"]
    assert b'"method":"Switch.Set"' in rpc[0] and b'"params":{"id":0,"on":true}' in rpc[0]


def test_a_silent_device_with_a_retained_state_is_not_acknowledged(kafka_settings, bench):
    """Only a fresh status counts: a retained 'on' left by a device now dead is no read-back."""
    registry, relays, executor, producer, root = bench
    relays.close()  # the devices die
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    stale = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    stale.connect(kafka_settings.mqtt_host, kafka_settings.mqtt_port)
    stale.loop_start()
    topic = f"{root}/shellies/{COMMUNITY}-boiler/relay/0"
    stale.publish(topic, "on", qos=1, retain=True).wait_for_publish(10)
    try:
        result = roundtrip(kafka_settings, registry, producer, BOILER, "relay", "on")
        assert result.status == "failed" and result.readback is None
        assert "no status" in result.detail
    finally:
        stale.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
        stale.disconnect()
        stale.loop_stop()


def test_wrong_key_for_a_relay_fails_without_publishing(kafka_settings, bench):
    registry, relays, executor, producer, root = bench
    from ioe.messages import Command

    command = Command("x1", COMMUNITY, PLUG, "power_limit_pct", 50, "operator:ana", "t",
                      now_ms(), now_ms() + 10_000)
    watcher = ResultWatcher(kafka_settings)
    try:
        send_command(producer, kafka_settings, command)
        result = watcher.wait({"x1"}, now_ms() + 10_000)["x1"]
    finally:
        watcher.close()
    assert result.status == "failed" and "relays take relay=on|off" in result.detail
    assert not [t for t, _ in relays.received if "cmnd" in t]
