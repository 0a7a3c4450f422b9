"""The whole rule loop, as processes on the real stack: simulated live values on ``ioe.live``
-> ``ioe control run`` (rules) -> ``ioe.commands.<community>`` -> ``ioe modbus-edge run`` and
``ioe mqtt-bridge run --control`` -> a SunSpec inverter and a Shelly relay change state ->
the inverter's next readings on ``ioe.readings`` show the capped power, the command log in
ClickHouse shows who acted and why."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml
from control_helpers import COMMUNITY, community_live, member, write_registry
from relays import FakeRelays

from connectors.modbus_edge.writesim import SunSpecInverter
from ioe.commands.registry import publish
from ioe.kafka import make_producer
from ioe.reading import Reading
from ioe.settings import ROOT
from ioe.topics import LIVE, READINGS

pytestmark = pytest.mark.stack

RULES = f"""\
community: {COMMUNITY}
rules:
  - id: export-limit
    kind: export_limit
    inverter: inv-1
    max_export_kw: 5
    hysteresis_kw: 2
    rated_kw: 10
    revert_s: 60
    min_interval_s: 60
  - id: boiler-m1
    kind: surplus_load
    member: m1
    device: {COMMUNITY}-boiler:0
    on_above_w: 1500
    off_below_w: 200
    for_s: 2
"""


def start(settings, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "IOE_KAFKA": settings.kafka_bootstrap,
           "IOE_TOPIC_PREFIX": settings.topic_prefix,
           "IOE_CLICKHOUSE_DB": settings.clickhouse_database,
           "IOE_PARTITIONS": str(settings.partitions)}
    return subprocess.Popen([sys.executable, "-m", "ioe.cli", *args], cwd=ROOT, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def start_executors(settings, tmp_path: Path, registry: Path, inverter_port: int, root: str,
                    unique_id: str) -> list[subprocess.Popen[bytes]]:
    """The two executors of the loop as processes: the Modbus edge (the inverter's limits) and
    the MQTT bridge with ``--control`` (the relays)."""
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump({
        "edge": {"queue_path": str(tmp_path / "edge.sqlite"), "registry": str(registry),
                 "kafka_bootstrap": settings.kafka_bootstrap,
                 "topic_prefix": settings.topic_prefix},
        "devices": [{"id": "inv-1", "map": "sunspec", "host": "127.0.0.1", "port": inverter_port,
                     "poll_interval_s": 0.5, "timeout_s": 2}],
        "control": {"enabled": True, "group_id": f"edge-{unique_id}"},
    }))
    return [
        start(settings, ["modbus-edge", "run", "--config", str(tmp_path / "edge.yaml")],
              tmp_path / "edge.log"),
        start(settings, ["mqtt-bridge", "run", "--control", "--registry", str(registry),
                         "--no-follow-registry", "--topic-root", root,
                         "--client-id", f"bridge-{unique_id}"], tmp_path / "bridge.log"),
    ]


def inverter_powers(settings) -> list[float]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False)
    topic = settings.topic(READINGS)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out = []
        for records in consumer.poll(timeout_ms=1000, max_records=5000).values():
            for record in records:
                reading = orjson.loads(record.value)
                if reading["device_id"] == "inv-1" and reading.get("power_w") is not None:
                    out.append((reading["ts_ms"], reading["power_w"]))
        return [p for _, p in sorted(out)]
    finally:
        consumer.close()


def test_rule_loop_acts_on_the_inverter_and_the_boiler(stack_settings, tmp_path, unique_id):
    settings = stack_settings
    inverter = SunSpecInverter(rated_w=10_000, available_w=8_000)
    server = inverter.server().start()
    root = f"t{unique_id}"
    relays = FakeRelays(settings, root, gen1=[f"{COMMUNITY}-boiler"])
    registry = write_registry(tmp_path / "registry.yaml", inverter_port=server.port)
    (tmp_path / "rules.yaml").write_text(RULES)
    processes = [
        *start_executors(settings, tmp_path, registry, server.port, root, unique_id),
        start(settings, ["control", "run", "--rules", str(tmp_path / "rules.yaml"),
                         "--registry", str(registry), "--interval-s", "0.5"],
              tmp_path / "control.log"),
    ]
    producer = make_producer(settings)
    try:
        time.sleep(6)  # the executors join their groups, the control loop follows ioe.live
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            now = int(time.time() * 1000)
            for message in (community_live(8000, now), member(2500, now)):
                producer.send(settings.topic(LIVE), key=COMMUNITY, value=message.encode())
            producer.flush()
            if inverter.limit_pct is not None and relays.state[f"{COMMUNITY}-boiler"]:
                break
            for process in processes:
                assert process.poll() is None, (tmp_path / "control.log").read_text()[-2000:]
            time.sleep(0.5)
        # 8 kW export, 5 kW allowed, 10 kW inverter: the rule went straight to 70 %
        assert inverter.limit_pct == 70, (tmp_path / "control.log").read_text()[-3000:]
        assert relays.state[f"{COMMUNITY}-boiler"] is True
        # the device state change shows in the live readings: 8 kW available, capped at 7 kW
        deadline = time.monotonic() + 20
        powers: list[float] = []
        while time.monotonic() < deadline:
            powers = inverter_powers(settings)
            if powers and powers[-1] == 7000.0:
                break
            time.sleep(0.5)
        assert 8000.0 in powers and powers[-1] == 7000.0, powers[-10:]
        # the command log: the rule, its reason, the read-back
        rows: list[dict] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            log = subprocess.run(
                [sys.executable, "-m", "ioe.cli", "control", "log", "--json"], cwd=ROOT,
                capture_output=True, text=True, timeout=60,
                env={**os.environ, "IOE_CLICKHOUSE_DB": settings.clickhouse_database})
            rows = [orjson.loads(x) for x in log.stdout.splitlines()]
            if sum(r["result"] == "acknowledged" for r in rows) >= 2:
                break
            time.sleep(1)
        by_rule = {r["rule_id"]: r for r in rows if r["result"] == "acknowledged"}
        assert set(by_rule) == {"export-limit", "boiler-m1"}, rows
        export = by_rule["export-limit"]
        assert export["requested_by"] == "rule:export-limit"
        assert "8.0 kW > 5 kW" in export["reason"] and orjson.loads(export["readback"]) == 70
        assert orjson.loads(by_rule["boiler-m1"]["readback"]) == "on"
    finally:
        producer.close(timeout=5)
        for process in processes:
            stop(process)
        relays.close()
        server.stop()


#: the members' other consumption devices report 0 W (a member with a silent meter has no
#: known consumption, so no surplus: the rules would rightly do nothing)
QUIET = (f"{COMMUNITY}-boiler:0", f"{COMMUNITY}-plug", f"{COMMUNITY}-plus:0", "ev-1")


def meter_readings(ts_ms: int, watts: float) -> list[Reading]:
    return [Reading(device_id=d, ts_ms=ts_ms, source="test", community_id=COMMUNITY,
                    power_w=watts if d.startswith("meter-") else 0.0)
            for d in ("meter-m1", "meter-m2", *QUIET)]


WORKER_RULES = RULES.replace("max_export_kw: 5", "max_export_kw: 5\n    step_pct: 10")


def test_the_worker_runs_the_rules_on_its_own_live_state(stack_settings, tmp_path, unique_id):
    """Readings in, commands out, with no ``ioe control run``: the worker that computes the
    community's live state evaluates its rules (``ioe worker --rules``).

    By hand: the edge reads 9,000 W from the inverter, each member's meter 500 W, so the
    community exports 9,000 − 1,000 = 8,000 W, 3,000 W over the 5 kW allowed; the 10 kW inverter
    making 9,000 W gets ⌊(9,000 − 3,000) / 10,000 · 100⌋ = 60 % → 6,000 W. m1's share is half the generation
    (β = 0.5), so its surplus is 4,500 − 500 = 4,000 W ≥ 1,500 W: after ``for_s`` the boiler
    goes on."""
    settings = stack_settings
    inverter = SunSpecInverter(rated_w=10_000, available_w=9_000)
    server = inverter.server().start()
    root = f"t{unique_id}"
    relays = FakeRelays(settings, root, gen1=[f"{COMMUNITY}-boiler"])
    meters = [{"id": f"meter-{m}", "role": "consumption", "member": m,
               "protocol": {"type": "mqtt", "decoder": "emonhub", "topic_id": f"x{m}"}}
              for m in ("m1",)]
    registry = write_registry(tmp_path / "registry.yaml", inverter_port=server.port,
                              extra=meters, betas=(0.5, 0.5))
    doc = yaml.safe_load(registry.read_text())  # meter-m2 is in the shared document already
    assert {d["id"] for d in doc["communities"][0]["devices"]} >= {"meter-m1", "meter-m2"}
    publish(registry, settings)
    (tmp_path / "rules.yaml").write_text(WORKER_RULES)
    processes = [
        *start_executors(settings, tmp_path, registry, server.port, root, unique_id),
        start(settings, ["worker", "--rules", str(tmp_path / "rules.yaml"), "--stall-s", "0",
                         "--data-dir", str(tmp_path / "faust")], tmp_path / "worker.log"),
    ]
    producer = make_producer(settings)
    log = tmp_path / "worker.log"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for reading in meter_readings(int(time.time() * 1000), 500.0):
                producer.send(settings.topic(READINGS), key=COMMUNITY, value=reading.to_json())
            producer.flush()
            if inverter.limit_pct is not None and relays.state[f"{COMMUNITY}-boiler"]:
                break
            for process in processes:
                assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        assert inverter.limit_pct == 60, log.read_text()[-3000:]
        assert relays.state[f"{COMMUNITY}-boiler"] is True, log.read_text()[-3000:]
        rows: list[dict] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run(
                [sys.executable, "-m", "ioe.cli", "control", "log", "--json"], cwd=ROOT,
                capture_output=True, text=True, timeout=60,
                env={**os.environ, "IOE_CLICKHOUSE_DB": settings.clickhouse_database})
            rows = [orjson.loads(x) for x in out.stdout.splitlines()]
            if sum(r["result"] == "acknowledged" for r in rows) >= 2:
                break
            time.sleep(1)
        by_rule = {r["rule_id"]: r for r in rows if r["result"] == "acknowledged"}
        assert set(by_rule) == {"export-limit", "boiler-m1"}, rows
        assert "8.0 kW > 5 kW: limit 100 -> 60 %" in by_rule["export-limit"]["reason"]
        assert orjson.loads(by_rule["export-limit"]["readback"]) == 60
        assert by_rule["boiler-m1"]["requested_by"] == "rule:boiler-m1"
        # 4,000 W before the limit landed, 6,000 / 2 − 500 = 2,500 W after it
        surplus = re.match(r"surplus (\d+) W >= 1500 W", by_rule["boiler-m1"]["reason"])
        assert surplus and surplus.group(1) in {"4000", "2500"}, by_rule["boiler-m1"]
    finally:
        producer.close(timeout=5)
        for process in processes:
            stop(process)
        relays.close()
        server.stop()
