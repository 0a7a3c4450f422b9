"""Monitoring vs Datadis divergence, coefficient sums, members without data."""

from __future__ import annotations

import random

import pytest
from anomaly_helpers import HOUR, MIN, Harness, community, ms, reading

from ioe.reading import Reading
from ioe.registry import Community
from streams.anomalies.divergence import MeterHours
from streams.anomalies.registry_check import member_subject, registry_subject

T0 = ms(2026, 6, 10, 0, 0)
COMM = community(members=2, inverters=0)
CUPS1 = COMM.member("m1").cups


def test_meter_hours_from_counter_worked_by_hand():
    hours = MeterHours()
    # counter readings at 00:50, 01:10 (gap 20 min, +200 Wh) and 01:20 (+50 Wh)
    for ts, e in ((T0 + 50 * MIN, 1000.0), (T0 + 70 * MIN, 1200.0), (T0 + 80 * MIN, 1250.0)):
        hours.add(reading("meter-m1", ts, 300.0, energy_wh=e), max_gap_s=1800, keep_hours=48)
    # 200 Wh over 00:50–01:10 split 10/20 min each side -> 100 Wh in hour 0, 100 in hour 1
    assert hours.hour(T0) == (pytest.approx(100.0), pytest.approx(600 / 3600), False)
    assert hours.hour(T0 + HOUR)[0] == pytest.approx(150.0)
    # a counter reset never makes negative energy
    hours.add(reading("meter-m1", T0 + 90 * MIN, 300.0, energy_wh=3.0), 1800, 48)
    assert hours.hour(T0 + HOUR)[0] == pytest.approx(150.0)


def household(h, start, hours, rng, scale=1.0, base=200.0):
    """Feed a meter (power × scale, counter likewise) and the true Datadis hours."""
    energy = 2_000_000.0
    for hour in range(hours):
        true_wh = 0.0
        for i in range(60):
            ts = start + hour * HOUR + i * MIN
            power = base + (600.0 if 18 <= (hour % 24) < 21 else 0.0) + rng.gauss(0, 3)
            true_wh += power / 60
            energy += power * scale / 60
            h.feed([reading("meter-m1", ts, round(power * scale, 1), energy_wh=round(energy, 2))])
        end = start + (hour + 1) * HOUR
        # Datadis arrives for the previous hour at hh:05
        h.feed([Reading(device_id=f"datadis:{CUPS1}", ts_ms=end, source="datadis",
                        interval_s=3600, interval_energy_wh=round(true_wh))])


def test_agreeing_meter_never_diverges():
    h = Harness(COMM)
    household(h, T0, 48, random.Random(1))
    assert h.of("divergence") == []


def test_miscalibrated_ct_opens_after_three_hours():
    h = Harness(COMM)
    household(h, T0, 12, random.Random(2), scale=0.6)
    opened = h.of("divergence", "open")
    assert len(opened) == 1 and opened[0].device_id == "meter-m1"
    assert opened[0].member_id == "m1"
    # ~200 Wh/h measured as ~120: hours 00, 01 and 02 each diverge (> 50 Wh and > 10 %);
    # the third divergent hour opens the alarm
    assert opened[0].evidence["hour_start_ms"] == T0 + 2 * HOUR
    assert opened[0].evidence["ratio"] == pytest.approx(0.6, abs=0.02)


def test_small_household_error_caught_by_the_trailing_window():
    h = Harness(COMM)
    # 70 W base: 45 % low is ~32 Wh an hour, inside the 50 Wh absolute tolerance per hour
    household(h, T0 + 3 * HOUR, 10, random.Random(3), scale=0.55, base=70.0)
    assert len(h.of("divergence", "open")) == 1


def test_hours_with_a_data_quality_problem_or_gaps_are_not_compared():
    h = Harness(COMM)
    # meter counts 60 % but reports an out-of-range value in every hour: all hours tainted
    energy = 0.0
    for hour in range(8):
        for i in range(60):
            ts = T0 + hour * HOUR + i * MIN
            energy += 60.0 / 60
            power = 65535.0 if i in (10, 11, 12) else 60.0
            h.feed([reading("meter-m1", ts, power, energy_wh=energy)])
        h.feed([Reading(device_id=f"datadis:{CUPS1}", ts_ms=T0 + (hour + 1) * HOUR,
                        source="datadis", interval_s=3600, interval_energy_wh=500.0)])
    assert h.of("divergence") == [] and len(h.of("out_of_range", "open")) >= 1


def test_hourly_comparison_api_counts_each_member_hour_once():
    h = Harness(COMM)
    e = h.engine
    out = []
    for _ in range(5):  # the same member-hour delivered five times
        out += e.on_hourly_comparison(COMM, "m1", T0, 500.0, 1000.0)
    assert out == []
    for k in (1, 2):
        out += e.on_hourly_comparison(COMM, "m1", T0 + k * HOUR, 500.0, 1000.0)
    assert [(a.kind, a.device_id, a.state) for a in out] == [("divergence", "meter-m1", "open")]


def test_coefficients_not_summing_to_one_open_and_close_on_fix():
    bad = community(members=2, inverters=0, betas=[0.5, 0.49])
    h = Harness(bad)
    opened = h.of("coefficients_sum", "open")
    assert len(opened) == 1 and opened[0].severity == "critical"
    assert opened[0].device_id == registry_subject(bad.id)
    assert opened[0].evidence["schedules"][0]["sum"] == 0.99
    assert h.engine.on_registry(bad, now_ms=1000) == []  # same problem: no duplicate
    fixed = Community.from_json(COMM.to_json())
    closed = h.engine.on_registry(fixed, now_ms=2000)
    assert [(a.kind, a.state) for a in closed] == [("coefficients_sum", "closed")]
    assert Harness(COMM).of("coefficients_sum") == []


def test_member_without_any_data_for_six_hours():
    h = Harness(COMM)
    h.tick(T0)
    for k in range(1, 7 * 60):
        ts = T0 + k * MIN
        h.feed([reading("meter-m1", ts, 200.0)])  # m1 reports, m2 never does
        h.tick(ts)
    members = h.of("member_no_data", "open")
    assert [(a.device_id, a.member_id) for a in members] == [(member_subject(COMM.id, "m2"), "m2")]
    assert members[0].opened_at_ms == T0 + 6 * HOUR + MIN
