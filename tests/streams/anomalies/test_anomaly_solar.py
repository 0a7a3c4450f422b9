"""Generation at night, underperformance against peers and the clear-sky bound, inverter
status codes. Sun positions are Valencia's (39.47 N, 0.38 W)."""

from __future__ import annotations

import random

from anomaly_helpers import MIN, Harness, community, ms, reading

from streams.anomalies import inverter_status, underperformance
from streams.anomalies.config import UnderperformanceConfig
from streams.anomalies.sun import clear_sky_ratio, sun_elevation

NIGHT = ms(2026, 6, 10, 0, 0)  # 02:00 local
NOON = ms(2026, 6, 21, 10, 0)  # 12:00 local, sun ~ 70°


def test_sun_elevation_sanity():
    assert sun_elevation(39.47, -0.38, NIGHT) < -20
    assert 65 < sun_elevation(39.47, -0.38, NOON + 90 * MIN) < 75
    assert clear_sky_ratio(-5) == 0.0 and 0.7 < clear_sky_ratio(70) < 0.9


def test_production_at_night_opens_after_five_minutes_standby_noise_does_not():
    h = Harness(community(members=1, inverters=2))
    rng = random.Random(1)
    for i in range(60):  # standby noise on both inverters: fine
        h.feed([reading("inv-1", NIGHT + i * MIN, round(rng.uniform(-5, 45), 1)),
                reading("inv-2", NIGHT + i * MIN, 0.0)])
    assert h.of("night_generation") == []
    start = NIGHT + 60 * MIN
    for i in range(20):
        h.feed([reading("inv-1", start + i * MIN, 800.0 + i)])
    opened = h.of("night_generation", "open")
    # open_n 3 and open_s 300: condition from `start`, open at +5 min
    assert len(opened) == 1 and opened[0].opened_at_ms == start + 5 * MIN
    assert opened[0].evidence["elevation_deg"] < -2


def pv_day(h, start, minutes, factors, rng, cloud_of=lambda i: 1.0):
    """Four 10 kW inverters following the sun and a shared cloud factor."""
    for i in range(minutes):
        ts = start + i * MIN
        sky = clear_sky_ratio(sun_elevation(39.47, -0.38, ts)) * cloud_of(i)
        h.feed([reading(f"inv-{k}", ts, round(10_000 * sky * factors[k - 1](i)
                                              * rng.uniform(0.97, 1.03), 1))
                for k in range(1, 5)])


def test_cloudy_day_does_not_fire_but_a_lagging_inverter_does():
    rng = random.Random(2)
    h = Harness(community(members=1, inverters=4))
    ones = [lambda i: 1.0] * 4
    # overcast with passing gaps: everyone between 15 % and 100 % of clear sky together
    clouds = [rng.choice((0.15, 0.2, 0.3, 1.0)) for _ in range(200)]
    pv_day(h, ms(2026, 6, 21, 7, 0), 8 * 60, ones, rng, cloud_of=lambda i: clouds[i // 3])
    assert h.of("underperformance") == []
    # next day: inverter 3 at 40 % of the others from 10:00 UTC for two hours
    start = ms(2026, 6, 22, 8, 0)
    lagging = [lambda i: 1.0, lambda i: 1.0, lambda i: 0.4 if 120 <= i < 240 else 1.0,
               lambda i: 1.0]
    pv_day(h, start, 6 * 60, lagging, rng)
    opened = h.of("underperformance", "open")
    assert [(a.device_id, a.severity) for a in opened] == [("inv-3", "warning")]
    # ratios are smoothed (EWMA, τ = 300 s, 60 s steps: a = 1 − e^−0.2 = 0.1813). After k
    # derated readings inv-3 stands at 0.4 + 0.6·(1 − a)^k of its peers, below 0.6 once
    # (1 − a)^k < 1/3, i.e. k ≥ 6: the 6th derated reading (10:05) starts the condition,
    # which must hold 30 min: open at 10:35
    assert opened[0].evidence["condition_since_ms"] == start + 125 * MIN
    assert opened[0].opened_at_ms == start + 155 * MIN
    assert [a.state for a in h.of("underperformance")] == ["open", "closed"]


def test_lone_inverter_only_judged_dead_against_clear_sky():
    cfg = UnderperformanceConfig()
    # heavy overcast: 5 % of rating at 70° sun is weather, not a fault
    assert not underperformance.check(cfg, 0.05, [], 70.0, clear_sky_ratio(70.0)).active
    # nothing at all at high sun is a dead inverter
    assert underperformance.check(cfg, 0.0, [], 70.0, clear_sky_ratio(70.0)).active
    # too low a sun: not judged at all
    assert underperformance.check(cfg, 0.0, [], 20.0, clear_sky_ratio(20.0)) is None
    # peers too dark to compare (storm): not judged
    assert underperformance.check(cfg, 0.0, [0.03, 0.04], 70.0, 0.8) is None


def test_status_code_tables():
    assert inverter_status.classify("sunspec", "7") == ("fault", "One or more faults exist")
    assert inverter_status.classify("sunspec", "4")[0] == "ok"
    assert inverter_status.classify("huawei-sun2000", "0x0300")[0] == "fault"
    assert inverter_status.classify("huawei-sun2000", "768")[0] == "fault"  # same, decimal
    assert inverter_status.classify("huawei-sun2000", "0x0306")[0] == "shutdown"
    assert inverter_status.classify("huawei-sun2000", "0xA000")[0] == "ok"
    assert inverter_status.classify("tasmota", "Fault")[0] == "fault"
    assert inverter_status.classify("sunspec", "99") is None  # unknown: not judged


def test_inverter_fault_status_opens_critical_and_sunspec_off_only_by_day():
    h = Harness(community(members=1, inverters=2))
    for i in range(30):  # "Off" at night is asleep
        h.feed([reading("inv-1", NIGHT + i * MIN, 0.0, source="sunspec", status="1")])
    assert h.of("inverter_fault") == []
    for i in range(5):
        h.feed([reading("inv-1", NOON + i * MIN, 0.0, source="sunspec", status="7")])
    opened = h.of("inverter_fault", "open")
    assert [(a.severity, a.opened_at_ms) for a in opened] == [("critical", NOON + MIN)]
    assert opened[0].evidence["label"] == "One or more faults exist"
    # the fault also explains the zero output: no underperformance alarm on top
    assert h.of("underperformance") == []
    for i in range(5, 10):
        h.feed([reading("inv-1", NOON + i * MIN, 5000.0, source="sunspec", status="4")])
    assert [a.state for a in h.of("inverter_fault")] == ["open", "closed"]
    for i in range(10, 13):
        h.feed([reading("inv-2", NOON + i * MIN, 0.0, source="sunspec", status="1")])
    assert [(a.device_id, a.severity) for a in h.of("inverter_fault", "open")][-1] == (
        "inv-2", "warning")
