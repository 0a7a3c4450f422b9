"""Out-of-range values and counter problems, on hand-built readings."""

from __future__ import annotations

from anomaly_helpers import MIN, Harness, community, ms, reading

from streams.anomalies import counter, out_of_range
from streams.anomalies.config import CounterConfig, OutOfRangeConfig

T0 = ms(2026, 6, 10, 8, 0)
COMM = community(members=1, inverters=1)
METER = COMM.device("meter-m1")
INV = COMM.device("inv-1")


def oor(device, power=None, **extra):
    return out_of_range.check(OutOfRangeConfig(), device, COMM,
                              reading(device.id, T0, power, **extra))


def problems(condition):
    return [p["problem"] for p in condition.evidence.get("problems", [])]


def test_out_of_range_limits_worked_out_by_hand():
    # contracted 4.6 kW × 1.3 = 5980 W
    assert not oor(METER, 5980.0).active
    assert problems(oor(METER, 5981.0)) == ["above_limit"]
    assert oor(METER, 5981.0).severity == "warning"
    assert oor(METER, 4.6e3 * 1.3 * 2 + 1).severity == "critical"
    # rated 10 kW × 1.15 = 11500 W
    assert not oor(INV, 11_500.0).active
    assert problems(oor(INV, 11_501.0)) == ["above_limit"]
    # import-only meter: −30 W of CT noise tolerated, −31 W not
    assert not oor(METER, -30.0).active
    assert problems(oor(METER, -31.0)) == ["negative_consumption"]
    # inverter at night: −max(50, 2 % × 10 kW = 200) W tolerated
    assert not oor(INV, -150.0).active
    assert problems(oor(INV, -201.0)) == ["negative_generation"]


def test_sentinels_and_electrical_ranges():
    assert problems(oor(METER, 65535.0)) == ["sentinel"]
    assert problems(oor(METER, -32768.0)) == ["sentinel"]
    assert problems(oor(METER, 100.0, voltage_v=400.0)) == ["range"]
    assert problems(oor(METER, 100.0, voltage_v=65535.0)) == ["sentinel"]
    assert problems(oor(METER, 100.0, frequency_hz=0.0)) == ["range"]
    assert not oor(METER, 100.0, voltage_v=241.3, frequency_hz=50.02, power_factor=0.93).active


def test_single_spike_does_not_open_but_sustained_excess_does():
    h = Harness(COMM)
    h.feed([reading("meter-m1", T0 + i * MIN, p) for i, p in
            enumerate([300.0, 7000.0, 300.0, 310.0, 4400.0, 300.0])])  # inrush spike, near limit
    assert h.of("out_of_range") == []
    h.feed([reading("meter-m1", T0 + (10 + i) * MIN, 9000.0) for i in range(3)])
    opened = h.of("out_of_range", "open")
    assert len(opened) == 1 and opened[0].opened_at_ms == T0 + 11 * MIN
    h.feed([reading("meter-m1", T0 + (20 + i) * MIN, 300.0) for i in range(3)])
    assert [a.state for a in h.of("out_of_range")] == ["open", "closed"]


def cnt(values, cfg=None, limit_w=5000.0, step_ms=MIN):
    state = counter.CounterState()
    return [counter.check(cfg or CounterConfig(), state,
                          reading("meter-m1", T0 + i * step_ms, None, energy_wh=v), limit_w)
            for i, v in enumerate(values)]


def test_counter_backwards_classified():
    assert cnt([5_000_000.0, 12.0])[1][0].evidence["reason"] == "reset"
    assert cnt([5_000_000.0, 12.0])[1][0].severity == "info"
    assert cnt([65_530.0, 3.0])[1][0].evidence["reason"] == "wrap"
    replaced = cnt([5_000_000.0, 1_234_567.0])[1][0]
    assert (replaced.evidence["reason"], replaced.severity) == ("replacement", "warning")
    assert cnt([5_000_000.0, 4_999_000.0])[1][0].evidence["reason"] == "backwards"
    # rounding jitter of 0.5 Wh is no event
    assert not cnt([5_000_000.0, 4_999_999.5])[1][0].active


def test_counter_jump_implies_impossible_power():
    # limit 5000 W × 1.5 = 7500 W; in one minute that is 125 Wh
    normal = cnt([1000.0, 1100.0, 1224.0])
    assert not any(b.active or j.active for b, j in normal)
    jump = cnt([1000.0, 1126.0])[1][1]
    assert jump.active and jump.evidence["implied_w"] == 126.0 * 60
    assert cnt([1000.0, 81_000.0])[1][1].severity == "critical"  # 4.8 MW
    # after 10 h offline, 30 kWh is 3 kW on average: plausible
    assert not cnt([1000.0, 31_000.0], step_ms=10 * 3_600_000)[1][1].active


def test_counter_event_alarm_closes_after_a_clean_period_and_ignores_out_of_order():
    h = Harness(COMM)
    values = [5_000_000.0 + 10 * i for i in range(5)] + [20.0 + 10 * i for i in range(30)]
    h.feed([reading("meter-m1", T0 + i * MIN, 600.0, energy_wh=v) for i, v in enumerate(values)])
    # duplicate delivery of an old reading must not look like a counter going backwards
    h.feed([reading("meter-m1", T0 + 2 * MIN, 600.0, energy_wh=5_000_020.0)])
    events = h.of("counter_backwards")
    assert [(a.state, a.severity) for a in events] == [("open", "info"), ("closed", "info")]
    assert events[0].opened_at_ms == T0 + 5 * MIN
    # first clean reading at +6 min; closes once clean for ≥ 900 s (close_s): at +21 min
    assert events[1].closed_at_ms == T0 + 21 * MIN
