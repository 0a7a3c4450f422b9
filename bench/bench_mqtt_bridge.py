"""MQTT bridge: messages per second through the bridge vs a bare paho subscriber, same run.

Both sides drain the same backlog: the broker queues N messages (a mix of Tasmota, Shelly Gen2,
emonhub and Zigbee2MQTT payloads) for a persistent QoS 1 session while the subscriber is away,
then the subscriber connects and the clock runs until the last message is handled. The bare
subscriber only counts (paho acknowledges automatically); the bridge decodes, validates, looks
the device up, produces to Kafka with ``acks=all`` and acknowledges each message only after
Kafka confirmed it. The ratio is the price of all that on this machine.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
import uuid
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from connectors.mqtt_bridge.bridge import Bridge, BridgeConfig
from ioe.kafka import ensure_topics
from ioe.registry import parse_registry
from ioe.settings import Settings, get_settings

CUPS = "ES0021380404050463BV"
DEVICES = ["bench_tasmota", "shellypro3em-bench:0", "benchnode:1", "bench_plug"]
BASE_S = 1_736_467_200  # 2025-01-10T00:00:00Z


def _messages(n: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        ts = BASE_S + i
        family = i % 4
        if family == 0:
            local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts + 3600))
            out.append(("tele/bench_tasmota/SENSOR", orjson.dumps(
                {"Time": local, "ENERGY": {"Total": i / 1000, "Power": [i, 1, 2]}})))
        elif family == 1:
            out.append(("shellypro3em-bench/events/rpc", orjson.dumps(
                {"method": "NotifyStatus", "params": {"ts": float(ts), "em:0": {
                    "total_act_power": -i * 0.5, "a_voltage": 230.0, "b_voltage": 231.0}}})))
        elif family == 2:
            out.append(("emon/benchnode", orjson.dumps({"time": ts, "P1": i, "E1": i * 10})))
        else:
            out.append(("zigbee2mqtt/bench_plug", orjson.dumps(
                {"power": i, "energy": i / 1000, "last_seen": ts * 1000})))
    return out


def _client(settings: Settings, client_id: str, clean: bool) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                         protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(100)
    return client


def _publish(settings: Settings, root: str, messages: list[tuple[str, bytes]]) -> None:
    client = _client(settings, "", True)
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    infos = [client.publish(f"{root}/{t}", p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.disconnect()
    client.loop_stop()


def _forget(settings: Settings, client_id: str) -> None:
    client = _client(settings, client_id, True)
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.disconnect()


def _bare(settings: Settings, root: str, messages: list[tuple[str, bytes]]) -> float:
    """Seconds for a bare paho subscriber to drain the backlog."""
    client_id = f"ioe-bench-bare-{uuid.uuid4().hex[:8]}"
    got = threading.Event()
    subscribed = threading.Event()
    count = 0

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        nonlocal count
        count += 1
        if count >= len(messages):
            got.set()

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(f"{root}/#", qos=1)

    client = _client(settings, client_id, False)
    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    subscribed.wait(10)
    client.disconnect()
    client.loop_stop()
    _publish(settings, root, messages)  # queued by the broker for the absent session
    start = time.perf_counter()
    client.reconnect()
    client.loop_start()
    finished = got.wait(60)
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    _forget(settings, client_id)
    if not finished:
        raise RuntimeError(f"bare subscriber got {count} of {len(messages)}")
    return elapsed


def _bridge(settings: Settings, root: str, messages: list[tuple[str, bytes]]) -> float:
    """Seconds for the bridge to drain the backlog into Kafka (every message acked)."""
    document = {"communities": [{
        "id": "ce-bench", "members": [{"id": "m1", "cups": CUPS, "contracted_power_kw": 5}],
        "devices": [{"id": d, "role": "consumption", "member": "m1"} for d in DEVICES]}]}
    config = BridgeConfig(settings=settings, registry=parse_registry(document),
                          client_id=f"ioe-bench-bridge-{uuid.uuid4().hex[:8]}", topic_root=root,
                          follow_registry=False)
    first = Bridge(config)  # creates the persistent session, then goes away
    first.start()
    first.wait_ready(30)
    first.stop()
    _publish(settings, root, messages)
    bridge = Bridge(config)
    start = time.perf_counter()
    bridge.start()
    deadline = time.monotonic() + 120
    while bridge.metrics.value("ioe_mqtt_bridge_acked_total") < len(messages):
        if time.monotonic() > deadline:
            raise RuntimeError("bridge did not drain the backlog in time")
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    produced = bridge.metrics.value("ioe_mqtt_bridge_readings_produced_total")
    bridge.stop()
    _forget(settings, config.client_id)
    if produced != len(messages):
        raise RuntimeError(f"bridge produced {produced} readings for {len(messages)} messages")
    return elapsed


def _drop_topics(settings: Settings) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        names = [t for t in admin.list_topics() if t.startswith(settings.topic_prefix)]
        if names:
            admin.delete_topics(names)
    except Exception as exc:  # leftover topics are harmless, just untidy
        print(f"   (could not delete bench topics: {exc})")
    finally:
        admin.close()


def run(quick: bool = False) -> dict[str, Any]:
    n = 4_000 if quick else 12_000
    base = get_settings()
    tag = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(base, topic_prefix=f"bench{tag}.", partitions=3)
    ensure_topics(settings)
    messages = _messages(n)
    try:
        bare_s = _bare(settings, f"ioebench/{tag}/bare", messages)
        bridge_s = _bridge(settings, f"ioebench/{tag}/bridge", messages)
    finally:
        _drop_topics(settings)
    bare_rate, bridge_rate = n / bare_s, n / bridge_s
    print(f"   mqtt bridge: {bridge_rate:,.0f} msg/s, bare paho: {bare_rate:,.0f} msg/s, "
          f"ratio {bridge_rate / bare_rate:.2f}", flush=True)
    return {
        "messages": n,
        "bridge_seconds": bridge_s,
        "bare_seconds": bare_s,
        "figures": [{"name": f"msg/s draining {n} queued MQTT messages "
                             "(bridge → Kafka acks=all vs bare paho subscriber)",
                     "value": bridge_rate, "baseline": bare_rate, "unit": "msg/s",
                     "ratio": bridge_rate / bare_rate}],
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("kafka", "connectors"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    print(run(quick="--quick" in sys.argv))
