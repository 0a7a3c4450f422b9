"""End to end, the issue's acceptance test: 10,000 messages through ``ioe mqtt-bridge`` (a real
subprocess), the bridge killed (SIGKILL) for part of the run and a (private) Kafka broker
restarted once while messages flow. Every message must end in ``ioe.readings`` or
``ioe.deadletter``; duplicates are allowed only as identical copies of one
``(device_id, ts_ms)``, which the idempotent sinks absorb.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from mqtt_helpers import consume, forget_session, mqtt_client, publish_all, write_registry

from devtools.stack import PrivateKafka
from ioe.kafka import ensure_topics
from ioe.settings import ROOT, Settings
from ioe.topics import DEADLETTER, READINGS

pytestmark = pytest.mark.stack

N = 10_000
BASE_LOCAL = "2025-01-10T00:00:00"  # winter: Europe/Madrid = UTC+1 all day
BASE_S = int(datetime.fromisoformat(BASE_LOCAL).replace(tzinfo=UTC).timestamp()) - 3600
DEVICES = ["e2e_tasmota_0", "e2e_tasmota_1", "e2e_tasmota_2", "shellypro3em-e2e0:0",
           "shellypro3em-e2e1:0", "e2enode:1", "e2e_plug"]


def message(i: int) -> tuple[str, bytes, tuple[str, int, float] | str]:
    """Topic, payload and what it must become: (device, ts_ms, power_w) or a dead-letter id."""
    ts_s = BASE_S + i
    local = datetime.fromtimestamp(ts_s + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if i % 97 == 5:
        return "tele/e2e_tasmota_0/SENSOR", f"garbage {i}".encode(), f"garbage {i}"
    if i % 50 == 7:
        doc = {"Time": local, "ENERGY": {"Power": float(i)}}
        return "tele/e2e_unknown/SENSOR", orjson.dumps(doc), f"unknown {i}"
    family = i % 4
    if family == 0:
        device = f"e2e_tasmota_{i % 3}"
        doc = {"Time": local, "ENERGY": {"Total": i / 1000, "Power": [i, -0.5]}}
        return f"tele/{device}/SENSOR", orjson.dumps(doc), (device, ts_s * 1000, i - 0.5)
    if family == 1:
        prefix = f"shellypro3em-e2e{i % 2}"
        doc = {"src": prefix, "method": "NotifyStatus", "params": {
            "ts": float(ts_s), "em:0": {"id": 0, "total_act_power": i * 0.5 - 1000,
                                        "a_voltage": 230.0}}}
        return f"{prefix}/events/rpc", orjson.dumps(doc), (f"{prefix}:0", ts_s * 1000,
                                                            i * 0.5 - 1000)
    if family == 2:
        doc = {"time": ts_s, "P1": i, "E1": i * 10}
        return "emon/e2enode", orjson.dumps(doc), ("e2enode:1", ts_s * 1000, float(i))
    doc = {"power": i, "energy": i / 1000, "last_seen": ts_s * 1000, "linkquality": 99}
    return "zigbee2mqtt/e2e_plug", orjson.dumps(doc), ("e2e_plug", ts_s * 1000, float(i))


@pytest.fixture
def private_kafka(local_stack: Settings, tmp_path: Path) -> Iterator[PrivateKafka]:
    kafka = PrivateKafka(local_stack, tmp_path / "kafka", partitions=3)
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


class BridgeProcess:
    def __init__(self, settings: Settings, args: list[str], log: Path) -> None:
        self.settings, self.args, self.log = settings, args, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        env = dict(os.environ, IOE_KAFKA=self.settings.kafka_bootstrap,
                   IOE_TOPIC_PREFIX=self.settings.topic_prefix)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ioe.cli", "mqtt-bridge", "run", *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 60
        while b"mqtt-bridge: subscribed" not in self.log.read_bytes()[offset:]:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "bridge did not subscribe"
            time.sleep(0.2)

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)
        return self.proc.wait(60)

    def kill_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def test_ten_thousand_messages_bridge_killed_and_kafka_restarted(
        private_kafka: PrivateKafka, unique_id: str, tmp_path: Path) -> None:
    settings = dataclasses.replace(private_kafka.settings, topic_prefix=f"t{unique_id}.")
    ensure_topics(settings)
    root = f"ioetest/{unique_id}"
    client_id = f"ioe-e2e-bridge-{unique_id}"
    registry = write_registry(tmp_path / "registry.yaml", DEVICES)
    metrics_port = int(settings.kafka_bootstrap.rsplit(":", 1)[1]) + 7
    bridge = BridgeProcess(settings, ["--registry", str(registry), "--topic-root", root,
                                      "--client-id", client_id,
                                      "--metrics-port", str(metrics_port)],
                           tmp_path / "bridge.log")
    plan = [message(i) for i in range(N)]
    expected_readings = {(e[0], e[1]): e[2] for _, _, e in plan if isinstance(e, tuple)}
    expected_dead = {e for _, _, e in plan if isinstance(e, str)}
    publisher = mqtt_client(settings)

    def publish(lo: int, hi: int) -> None:
        publish_all(publisher, [(f"{root}/{t}", p) for t, p, _ in plan[lo:hi]])

    try:
        bridge.start()
        publish(0, 3000)
        assert bridge.signal(signal.SIGKILL) == -signal.SIGKILL  # a crash, not a clean stop
        publish(3000, 6000)  # kept by the broker for the bridge's persistent session
        bridge.start()
        publish(6000, 8000)
        restarter = threading.Thread(target=private_kafka.restart)
        restarter.start()  # messages keep arriving while Kafka goes down and comes back
        publish(8000, N)
        restarter.join(180)
        assert not restarter.is_alive()

        def readings_complete(records: list) -> bool:  # noqa: ANN001
            return len({_reading_key(r.value) for r in records}) >= len(expected_readings)

        readings = consume(settings, READINGS, readings_complete, timeout_s=120)
        dead = consume(settings, DEADLETTER, lambda rs: len(
            {_dead_id(r.value) for r in rs}) >= len(expected_dead), timeout_s=60)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                         timeout=10).read().decode()
        assert bridge.signal(signal.SIGTERM) == 0  # clean stop this time
    finally:
        bridge.kill_quietly()
        publisher.disconnect()
        publisher.loop_stop()
        forget_session(settings, client_id)

    copies: dict[tuple[str, int], set[bytes]] = {}
    for record in readings:
        copies.setdefault(_reading_key(record.value), set()).add(record.value)
    missing = set(expected_readings) - set(copies)
    assert not missing, f"{len(missing)} readings lost, e.g. {sorted(missing)[:3]}"
    assert set(copies) == set(expected_readings), "unexpected readings"
    for key, values in copies.items():
        assert len(values) == 1, f"duplicates of {key} differ: {values}"
        reading = orjson.loads(next(iter(values)))
        assert reading["power_w"] == pytest.approx(expected_readings[key]), key
        assert reading["community_id"] == "ce-test"
    dead_ids = {_dead_id(r.value) for r in dead}
    assert dead_ids == expected_dead
    assert sum(1 for _, _, e in plan if isinstance(e, tuple)) + len(expected_dead) == N
    assert 'ioe_mqtt_bridge_dead_lettered_total{reason="unknown_device"}' in metrics
    print(f"\nreadings: {len(readings)} records for {len(copies)} keys "
          f"({len(readings) - len(copies)} duplicate copies absorbed); "
          f"dead letters: {len(dead)} records for {len(dead_ids)} messages")


def _reading_key(value: bytes) -> tuple[str, int]:
    reading = orjson.loads(value)
    return reading["device_id"], reading["ts_ms"]


def _dead_id(value: bytes) -> str:
    record = orjson.loads(value)
    if record["reason"] == "unknown_device":
        ts_s = record["reading"]["ts_ms"] // 1000
        return f"unknown {ts_s - BASE_S}"
    return str(record.get("payload"))
