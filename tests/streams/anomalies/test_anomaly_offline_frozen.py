"""Offline / stale devices (ticks) and frozen meters (identical values for too long)."""

from __future__ import annotations

import random

from anomaly_helpers import MIN, Harness, community, ms, reading

from streams.anomalies import frozen
from streams.anomalies.config import FrozenConfig

T0 = ms(2026, 6, 10, 0, 0)


def test_offline_after_k_intervals_and_closes_when_back():
    h = Harness(community(members=1, inverters=0))
    for i in range(10):
        h.feed([reading("meter-m1", T0 + i * MIN, 200.0 + i)])
        h.tick(T0 + i * MIN + MIN // 2)
    last = T0 + 9 * MIN
    # silence: k=3 × 60 s = 180 s window. At +180 s not yet (≤), at +210 s yes.
    assert h.tick(last + 180_000) == []
    opened = h.tick(last + 210_000)
    assert [(a.kind, a.device_id, a.member_id, a.state) for a in opened] == [
        ("offline", "meter-m1", "m1", "open")]
    assert opened[0].evidence["silence_s"] == 210.0
    for k in range(1, 30):  # still silent: no duplicate
        assert h.tick(last + 210_000 + k * MIN) == []
    h.feed([reading("meter-m1", last + 40 * MIN, 250.0)])
    closed = h.tick(last + 40 * MIN + 30_000)
    assert [(a.kind, a.state) for a in closed] == [("offline", "closed")]


def test_datadis_device_is_never_offline_and_unseen_device_counts_from_first_tick():
    h = Harness(community(members=1, inverters=0))
    assert h.tick(T0) == []  # starts watching: m1's meter never seen yet
    opened = h.tick(T0 + 4 * MIN)
    assert {(a.kind, a.device_id) for a in opened} == {("offline", "meter-m1")}
    for k in range(1, 48):
        h.tick(T0 + k * 3_600_000)
    assert not [a for a in h.events if a.device_id.startswith("datadis:")]


def consumption_series(start: int, minutes: int, rng: random.Random, base: float = 75.0):
    """A household on holiday: low, steady base load with a fridge cycle and noise."""
    energy = 3_000_000.0
    out = []
    for i in range(minutes):
        power = base + (90.0 if i % 45 < 15 else 0.0) + rng.gauss(0, 2.0)
        energy += power / 60
        out.append(reading("meter-m1", start + i * MIN, round(power, 1),
                           energy_wh=round(energy, 1), voltage_v=round(230 + rng.gauss(0, 1), 1)))
    return out


def test_household_on_holiday_is_not_frozen():
    h = Harness(community(members=1, inverters=0))
    h.feed(consumption_series(T0, 3 * 24 * 60, random.Random(3)))
    assert h.of("frozen") == []


def test_identical_consumption_readings_for_more_than_two_hours_open_frozen():
    h = Harness(community(members=1, inverters=0))
    h.feed(consumption_series(T0, 60, random.Random(1)))
    stuck = reading("meter-m1", 0, 143.2, energy_wh=3_000_150.0, voltage_v=231.0)
    start = T0 + 60 * MIN
    for i in range(4 * 60):
        h.feed([reading("meter-m1", start + i * MIN, 143.2, energy_wh=3_000_150.0,
                        voltage_v=231.0)])
    opened = h.of("frozen", "open")
    assert len(opened) == 1 and stuck.power_w == 143.2
    # unchanged since `start`; window 7200 s: first reading with > 7200 s unchanged
    assert opened[0].opened_at_ms == start + 121 * MIN
    assert opened[0].evidence["since_ms"] == start
    h.feed(consumption_series(start + 4 * 60 * MIN, 5, random.Random(2)))
    assert [a.state for a in h.of("frozen")] == ["open", "closed"]


def test_pv_at_night_is_idle_not_frozen():
    h = Harness(community(members=1, inverters=2))
    night = ms(2026, 6, 10, 21, 0)  # 23:00 local
    for i in range(8 * 60):
        h.feed([reading("inv-1", night + i * MIN, 0.0, energy_wh=9_000_000.0, status="2",
                        source="sunspec"),
                reading("inv-2", night + i * MIN, -3.0, energy_wh=7_000_000.0,
                        status="0xA000", source="huawei-sun2000")])
    assert h.of("frozen") == [] and h.of("night_generation") == []


def test_inverter_clipped_at_constant_power_with_moving_counter_is_not_frozen():
    cfg = FrozenConfig()
    state = frozen.FrozenState()
    device = community().device("inv-1")
    noon = ms(2026, 6, 21, 10, 0)
    energy = 1_000_000.0
    results = []
    for i in range(3 * 60):
        energy += 10_000.0 / 60
        results.append(frozen.check(cfg, state, device,
                                    reading("inv-1", noon + i * MIN, 10_000.0,
                                            energy_wh=round(energy, 1))))
    assert not any(r.active for r in results if r is not None)
