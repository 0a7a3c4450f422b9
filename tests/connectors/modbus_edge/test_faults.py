"""Faults never stop the agent: it logs, marks the device offline, and keeps polling others."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer

from connectors.modbus_edge.agent import Agent, config_from_dict
from ioe.registry import load_registry
from ioe.topics import DEADLETTER, READINGS

from .faulty import FaultyPeer
from .images import block, f32, put, registry_yaml

pytestmark = pytest.mark.stack


def sdm_image(power: float) -> dict[int, int]:
    image: dict[int, int] = {}
    block(image, 0, 0x12)
    put(image, 0x0034, f32(power))
    put(image, 0x003E, f32(1.0))
    put(image, 0x0046, f32(50.0))
    put(image, 0x0048, f32(10.0))
    put(image, 0x004A, f32(2.0))
    return image


def consume(settings, topic: str, expected: int, timeout_s: float = 20.0) -> list:
    consumer = KafkaConsumer(settings.topic(topic), bootstrap_servers=settings.kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=2000,
                             enable_auto_commit=False)
    out = []
    import time
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for message in consumer:
                out.append(message)
                if len(out) >= expected:
                    break
    finally:
        consumer.close()
    return out


def sample(agent, name: str, **labels) -> float:
    value = agent.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_faulty_devices_go_offline_others_keep_reporting(
        modbus_server, kafka_settings, tmp_path: Path, caplog):
    good = modbus_server({1: sdm_image(-420.0)})
    busy_calls = {"n": 0}

    def busy_twice(unit, fc, address, count, image):
        busy_calls["n"] += 1
        return 6 if busy_calls["n"] % 3 != 0 else None   # busy, busy, answer

    busy = modbus_server({1: sdm_image(100.0)}, on_read=busy_twice)
    failing = modbus_server({1: sdm_image(1.0)}, on_read=lambda *a: 4)   # device failure
    partial_image = sdm_image(1.0)
    for a in (0x0048, 0x0049):      # import counter missing from the image
        del partial_image[a]
    partial = modbus_server({1: partial_image})
    silent, dropper = FaultyPeer("silent"), FaultyPeer("drop")
    try:
        tcp = {"host": "127.0.0.1", "map": "sdm630", "timeout_s": 0.5}
        config = config_from_dict({
            "edge": {"queue_path": str(tmp_path / "q.sqlite")},
            "devices": [
                {"id": "good", "port": good.port, **tcp},
                {"id": "busy", "port": busy.port, "busy_backoff_s": 0.01, **tcp},
                {"id": "failing", "port": failing.port, **tcp},
                {"id": "partial", "port": partial.port, **tcp},
                {"id": "silent", "port": silent.port, **tcp},
                {"id": "dropper", "port": dropper.port, **tcp},
                {"id": "nobody", "port": 1, **tcp},   # nothing listens
                {"id": "stranger", "port": good.port, **tcp},   # not in the registry
            ],
        })
        registry_file = tmp_path / "registry.yaml"
        registry_file.write_text(registry_yaml(
            ["good", "busy", "failing", "partial", "silent", "dropper", "nobody"]))
        agent = Agent(config, settings=kafka_settings, registry=load_registry(registry_file))
        caplog.set_level(logging.INFO)
        for _ in range(2):
            results = {p.device.id: agent.poll_device(p) for p in agent.pollers}
        assert results == {"good": True, "busy": True, "failing": False, "partial": False,
                           "silent": False, "dropper": False, "nobody": False,
                           "stranger": True}
        up = {d: sample(agent, "modbus_edge_device_up", device=d) for d in results}
        assert up == {d: (1.0 if ok else 0.0) for d, ok in results.items()}
        errors = {d: k for d in results for k in ("exception_04", "exception_02", "io")
                  if sample(agent, "modbus_edge_modbus_errors_total", device=d, kind=k)}
        assert errors == {"failing": "exception_04", "partial": "exception_02",
                          "silent": "io", "dropper": "io", "nobody": "io"}
        assert "device offline: failing: fc 4 address 0 count 8: exception 0x04" in caplog.text
        assert "device offline: partial: fc 4 address 70 count 6: exception 0x02" in caplog.text
        # only the first failure of a device is an error line, not every poll
        assert caplog.text.count("device offline: silent") == 1
        # 2 polls x (good, busy) = 4 readings; stranger x2 = 2 dead letters
        assert len(agent.outbox) == 6
        assert agent.forwarder.forward_once() == 6
        readings = consume(kafka_settings, READINGS, 4)
        values = [orjson.loads(m.value) for m in readings]
        assert sorted((v["device_id"], v["power_w"]) for v in values) == [
            ("busy", 100.0), ("busy", 100.0), ("good", -420.0), ("good", -420.0)]
        assert {m.key for m in readings} == {b"ce-test"}
        assert all(v["community_id"] == "ce-test" for v in values)
        dead = consume(kafka_settings, DEADLETTER, 2)
        records = [orjson.loads(m.value) for m in dead]
        assert [r["reason"] for r in records] == ["unknown_device", "unknown_device"]
        assert orjson.loads(records[0]["payload"])["device_id"] == "stranger"
        assert {m.key for m in dead} == {b"modbus-edge"}
        assert sample(agent, "modbus_edge_deadletters_total", reason="unknown_device") == 2
        agent.stop(drain_s=1)
    finally:
        silent.stop()
        dropper.stop()


def test_running_agent_keeps_polling_while_a_device_hangs(modbus_server, kafka_settings,
                                                           tmp_path: Path):
    import time

    good = modbus_server({1: sdm_image(250.0)})
    silent = FaultyPeer("silent")
    agent = None
    try:
        tcp = {"host": "127.0.0.1", "map": "sdm630", "timeout_s": 1.0, "poll_interval_s": 0.05}
        config = config_from_dict({
            "edge": {"queue_path": str(tmp_path / "q.sqlite")},
            "devices": [{"id": "good", "port": good.port, **tcp},
                        {"id": "silent", "port": silent.port, **tcp}]})
        registry_file = tmp_path / "registry.yaml"
        registry_file.write_text(registry_yaml(["good", "silent"]))
        agent = Agent(config, settings=kafka_settings, registry=load_registry(registry_file))
        agent.start()
        deadline = time.monotonic() + 30
        while (sample(agent, "modbus_edge_polls_total", device="silent", result="error") < 2
               or sample(agent, "modbus_edge_polls_total", device="good", result="ok") < 20):
            assert time.monotonic() < deadline, "polling stalled"
            time.sleep(0.05)
        # the silent device timing out never held up the polls of the good one
        assert sample(agent, "modbus_edge_polls_total", device="good", result="ok") >= 20
        assert sample(agent, "modbus_edge_device_up", device="silent") == 0
        assert sample(agent, "modbus_edge_device_up", device="good") == 1
        assert all(t.is_alive() for t in agent._threads)
    finally:
        if agent is not None:
            agent.stop(drain_s=10)
        silent.stop()
    readings = consume(kafka_settings, READINGS, 20)
    assert len(readings) >= 20
    assert {orjson.loads(m.value)["device_id"] for m in readings} == {"good"}
