"""Configuration overlay, engine state round trips, wire messages."""

from __future__ import annotations

import random

import orjson
import pytest
from anomaly_helpers import MIN, Harness, community, ms, reading

from ioe.messages import LiveAlarm
from streams.anomalies.config import AnomalyConfig
from streams.anomalies.engine import AnomalyEngine
from streams.anomalies.lifecycle import Alarm

T0 = ms(2026, 6, 21, 6, 0)


def test_config_overlay_from_dict_and_yaml(tmp_path):
    cfg = AnomalyConfig.from_dict({"offline": {"k": 5, "hysteresis": {"open_n": 2}},
                                   "frozen": {"max_unchanged_s": {"consumption": 600}}})
    assert cfg.offline.k == 5.0 and cfg.offline.hysteresis.open_n == 2
    assert cfg.offline.hysteresis.close_n == 1  # untouched defaults stay
    assert cfg.frozen.max_unchanged_s == {"consumption": 600, "grid": 7200.0,
                                          "generation": 3600.0, "storage": 7200.0}
    path = tmp_path / "anomalies.yaml"
    path.write_text("night:\n  max_elevation_deg: -6\nout_of_range:\n  sentinels: [-1]\n")
    cfg = AnomalyConfig.from_yaml(path)
    assert cfg.night.max_elevation_deg == -6.0 and cfg.out_of_range.sentinels == (-1,)
    with pytest.raises(ValueError, match="unknown setting 'kk'"):
        AnomalyConfig.from_dict({"offline": {"kk": 1}})


def day_of_readings(seed: int):
    """Two meters and four inverters for 14 h, with faults sprinkled in (a frozen stretch, a
    sentinel, a counter reset, an inverter fault, an offline gap)."""
    rng = random.Random(seed)
    energy = {d: 1e6 for d in ("meter-m1", "meter-m2", "inv-1", "inv-2", "inv-3", "inv-4")}
    out = []
    for i in range(14 * 60):
        ts = T0 + i * MIN
        for d in energy:
            if d == "meter-m2" and 300 <= i < 330:
                continue  # offline half an hour
            p = rng.uniform(100, 900) if d.startswith("meter") else rng.uniform(3000, 6000)
            if d == "meter-m1" and 100 <= i < 260:
                p = 321.0
            energy[d] += p / 60 if not (d == "meter-m1" and 100 <= i < 260) else 0.0
            if d == "meter-m2" and i == 400:
                energy[d] = 5.0
            extra = {"status": "7"} if d == "inv-2" and 500 <= i < 540 else {}
            if d == "meter-m1" and 600 <= i < 605:
                p = 65535.0
            out.append(reading(d, ts, round(p, 1), energy_wh=round(energy[d], 1),
                               source="sunspec" if d.startswith("inv") else "test", **extra))
        out.append(("tick", ts))
    return out


def drive(engine: AnomalyEngine, comm, items):
    events: list[Alarm] = []
    for item in items:
        if isinstance(item, tuple):
            events += engine.on_tick(item[1])
        else:
            events += engine.on_reading(comm.device(item.device_id), comm, item)
    return events


def test_engine_state_survives_serialisation_mid_stream():
    comm = community(members=2, inverters=4)
    items = day_of_readings(5)
    whole = AnomalyEngine()
    whole.on_registry(comm, now_ms=T0)
    expected = drive(whole, comm, items)
    kinds = {a.kind for a in expected}
    assert {"frozen", "out_of_range", "counter_backwards", "inverter_fault", "offline"} <= kinds

    first = AnomalyEngine()
    first.on_registry(comm, now_ms=T0)
    half = len(items) // 2
    got = drive(first, comm, items[:half])
    second = AnomalyEngine()
    second.communities[comm.id] = comm
    second.load_dict(orjson.loads(orjson.dumps(first.to_dict())))
    got += drive(second, comm, items[half:])
    assert [a.to_message() for a in got] == [a.to_message() for a in expected]


def test_per_device_snapshots_restore_the_same_behaviour():
    comm = community(members=2, inverters=4)
    items = day_of_readings(6)
    whole = AnomalyEngine()
    whole.on_registry(comm, now_ms=T0)
    expected = drive(whole, comm, items)
    first = AnomalyEngine()
    first.on_registry(comm, now_ms=T0)
    cut = 250 * 7  # in the middle of meter-m1's frozen stretch
    got = drive(first, comm, items[:cut])
    snaps = {d.id: orjson.loads(orjson.dumps(first.device_snapshot(d.id)))
             for d in comm.devices}
    community_snap = orjson.loads(orjson.dumps(first.community_snapshot(comm.id)))
    second = AnomalyEngine()
    second.on_registry(comm, now_ms=T0)
    second.restore_community(community_snap)
    for device_id, snap in snaps.items():
        second.restore_device(device_id, snap)
    second.clock_ms = first.clock_ms
    got += drive(second, comm, items[cut:])
    assert [a.to_message() for a in got] == [a.to_message() for a in expected]


def test_live_messages_go_to_operators_and_the_owning_member_only():
    h = Harness(community(members=2, inverters=1))
    h.feed([reading("meter-m2", T0 + i * MIN, 65535.0) for i in range(3)])
    h.feed([reading("inv-1", T0 + i * MIN, 65535.0) for i in range(3)])
    member_alarm, plant_alarm = h.of("out_of_range", "open")
    assert [m.to_dict()["channel"] for m in LiveAlarm.for_alarm(member_alarm)] == [
        "operators:ce-test", "member:ce-test:m2"]
    assert [m.to_dict()["channel"] for m in LiveAlarm.for_alarm(plant_alarm)] == ["operators:ce-test"]
    msg = LiveAlarm.for_alarm(member_alarm)[0].to_dict()
    assert msg["type"] == "alarm" and msg["v"] == 1
    assert msg["alarm"]["kind"] == "out_of_range" and msg["alarm"]["member_id"] == "m2"


def test_worker_engine_only_watches_communities_whose_readings_it_owns():
    """A worker sees every community in the registry but owns only some partitions: it must
    not declare the devices of other workers' communities offline."""
    bad = community(members=2, inverters=1, betas=[0.5, 0.4])
    engine = AnomalyEngine(claim_on_registry=False)
    assert engine.on_registry(bad, now_ms=T0) == []
    assert engine.on_tick(T0) == [] and engine.on_tick(T0 + 60 * MIN) == []
    events = engine.on_reading(bad.device("meter-m1"), bad, reading("meter-m1", T0, 200.0))
    assert [(a.kind, a.state) for a in events] == [("coefficients_sum", "open")]
    engine.on_tick(T0 + MIN)
    offline = engine.on_tick(T0 + 10 * MIN, [bad.id])
    assert {a.device_id for a in offline} == {"meter-m1", "meter-m2", "inv-1"}
    assert engine.on_tick(T0 + 11 * MIN, ["another-community"]) == []
