"""Interval energy from counters and power (DESIGN.md §4), against values worked out by hand."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.energy.intervals import (
    IntervalEnergy,
    bucket_start,
    counter_at,
    counter_energy,
    device_energy,
    interval_buckets,
    interval_energy,
    power_energy,
)

H = 3_600_000  # one hour in ms
M = 60_000  # one minute in ms


# -- counter_at --------------------------------------------------------------------------------
def test_counter_at_interpolates_between_readings() -> None:
    samples = [(0, 1000.0), (10 * M, 1100.0), (20 * M, 1400.0)]
    assert counter_at(samples, 5 * M) == pytest.approx(1050.0)
    assert counter_at(samples, 15 * M) == pytest.approx(1250.0)  # 1100 + 300 * 5/10
    assert counter_at(samples, 10 * M) == 1100.0  # exactly on a reading


def test_counter_at_outside_the_readings_is_unknown() -> None:
    samples = [(0, 1000.0), (10 * M, 1100.0)]
    assert counter_at(samples, -1) is None
    assert counter_at(samples, 10 * M + 1) is None
    assert counter_at([], 0) is None


def test_counter_at_across_a_reset_is_unknown() -> None:
    assert counter_at([(0, 5000.0), (10 * M, 20.0)], 5 * M) is None


def test_counter_at_sorts_unsorted_input_and_skips_nan() -> None:
    samples = [(10 * M, 1100.0), (5 * M, float("nan")), (0, 1000.0)]
    assert counter_at(samples, 2 * M) == pytest.approx(1020.0)


# -- counter_energy ----------------------------------------------------------------------------
def test_counter_energy_interpolates_at_both_bounds() -> None:
    # readings every 10 min offset by 5 min from the hour: 13:55 … 15:05
    samples = [(-5 * M, 995.0), (5 * M, 1010.0), (15 * M, 1030.0), (25 * M, 1030.0),
               (35 * M, 1060.0), (45 * M, 1100.0), (55 * M, 1120.0), (65 * M, 1200.0)]
    # counter at 0: 995 + 15 * 5/10 = 1002.5; at 60 min: 1120 + 80 * 5/10 = 1160
    result = counter_energy(samples, 0, H, max_gap_ms=15 * M)
    assert result == IntervalEnergy(pytest.approx(157.5), True, "counter")


def test_counter_energy_of_adjacent_intervals_adds_up() -> None:
    samples = [(0, 0.0), (7 * M, 70.0), (22 * M, 100.0), (40 * M, 400.0), (61 * M, 500.0)]
    quarters = [counter_energy(samples, q * 15 * M, (q + 1) * 15 * M) for q in range(4)]
    hour = counter_energy(samples, 0, H)
    assert sum(q.wh for q in quarters) == pytest.approx(hour.wh)
    assert hour.wh == pytest.approx(400.0 + 100.0 * 20 / 21)  # 400 + (500-400)*(60-40)/(61-40)


def test_counter_reset_counts_before_and_after_separately() -> None:
    # 10:00 1000, 10:20 1200, 10:40 reset (meter replaced): 50, 11:00 150
    samples = [(0, 1000.0), (20 * M, 1200.0), (40 * M, 50.0), (60 * M, 150.0)]
    result = counter_energy(samples, 0, H, max_gap_ms=30 * M)
    # before: 1200 − 1000 = 200; after: 150 − 50 = 100 (post-reset counter starts at 50)
    assert result.wh == pytest.approx(300.0)
    assert result.complete is False  # what happened between 10:20 and 10:40 is unobserved
    assert result.method == "counter"


def test_counter_wrap_never_negative() -> None:
    wrap = 2.0**32
    samples = [(0, wrap - 100.0), (30 * M, wrap - 10.0), (60 * M, 40.0)]
    result = counter_energy(samples, 0, H)
    assert result.wh == pytest.approx(90.0)
    assert result.wh >= 0


def test_counter_reset_outside_the_interval_leaves_it_complete() -> None:
    samples = [(0, 900.0), (10 * M, 5.0), (30 * M, 25.0), (70 * M, 65.0)]
    result = counter_energy(samples, 15 * M, 60 * M)
    # counter at 15 min: 5 + 20*5/20 = 10; at 60: 25 + 40*30/40 = 55
    assert result == IntervalEnergy(pytest.approx(45.0), True, "counter")


def test_counter_gap_marks_incomplete_and_invents_nothing() -> None:
    # 10:00 1000, 10:10 1010, then silence until 11:30 1500
    samples = [(0, 1000.0), (10 * M, 1010.0), (90 * M, 1500.0)]
    result = counter_energy(samples, 0, H, max_gap_ms=15 * M)
    assert result.complete is False
    assert result.wh == pytest.approx(10.0)  # only what was measured inside the hour
    # without a gap limit the interpolation is trusted
    trusting = counter_energy(samples, 0, H)
    assert trusting.complete is True
    assert trusting.wh == pytest.approx(10.0 + 490.0 * 50 / 80)


def test_counter_gap_fully_inside_the_interval_is_measured_not_interpolated() -> None:
    samples = [(0, 0.0), (5 * M, 5.0), (50 * M, 400.0), (60 * M, 410.0)]
    result = counter_energy(samples, 0, H, max_gap_ms=15 * M)
    assert result.wh == pytest.approx(410.0)
    assert result.complete is False  # the rule: a long gap is reported


def test_counter_missing_bracket_is_incomplete_lower_bound() -> None:
    samples = [(20 * M, 100.0), (40 * M, 150.0), (70 * M, 210.0)]
    result = counter_energy(samples, 0, H)
    assert result.complete is False
    assert result.wh == pytest.approx(50.0 + 60.0 * 20 / 30)  # from 10:20 to 11:00 only
    assert counter_energy([], 0, H) == IntervalEnergy(0.0, False, "none")
    assert counter_energy([(5 * M, 1.0)], 0, H) == IntervalEnergy(0.0, False, "counter")


def test_counter_readings_exactly_on_bounds() -> None:
    samples = [(0, 10.0), (H, 30.0), (2 * H, 70.0)]
    assert counter_energy(samples, 0, H) == IntervalEnergy(20.0, True, "counter")
    assert counter_energy(samples, H, 2 * H) == IntervalEnergy(40.0, True, "counter")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4 * H), st.floats(0, 1e6)), min_size=2, max_size=30),
       st.integers(0, 4 * H), st.integers(1, 4 * H), st.integers(1, 4 * H))
def test_counter_energy_never_negative_and_additive(raw, start, length, cut) -> None:
    # a counter with arbitrary resets (values are random, so it goes up and down)
    samples = sorted(raw, key=lambda s: s[0])
    end = start + length
    whole = counter_energy(samples, start, end)
    assert whole.wh >= 0
    middle = start + cut % length
    left, right = counter_energy(samples, start, middle), counter_energy(samples, middle, end)
    assert left.wh >= 0 and right.wh >= 0
    assert left.wh + right.wh == pytest.approx(whole.wh, rel=1e-9, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1000), min_size=2, max_size=20), st.integers(1, 10 * M))
def test_monotonic_counter_energy_equals_counter_difference(increments, step) -> None:
    total = 0.0
    samples = []
    for index, inc in enumerate(increments):
        total += inc
        samples.append((index * step, total))
    start, end = step // 3, (len(samples) - 1) * step - step // 4
    if end <= start:
        return
    result = counter_energy(samples, start, end)
    assert result.complete
    expected = counter_at(samples, end) - counter_at(samples, start)  # type: ignore[operator]
    assert result.wh == pytest.approx(expected, rel=1e-9, abs=1e-6)


# -- power_energy ------------------------------------------------------------------------------
def test_power_constant_for_an_hour() -> None:
    samples = [(-M, 1200.0), (30 * M, 1200.0), (61 * M, 1200.0)]
    assert power_energy(samples, 0, H, max_gap_ms=40 * M) == IntervalEnergy(
        pytest.approx(1200.0), True, "power")


def test_power_trapezoids_clipped_to_bounds() -> None:
    # 0 W at 09:50, 600 W at 10:10, 600 W at 10:50, 0 W at 11:10; hour 10:00-11:00
    samples = [(-10 * M, 0.0), (10 * M, 600.0), (50 * M, 600.0), (70 * M, 0.0)]
    # 10:00 → 300 W; 10:00-10:10: (300+600)/2 * 1/6 h = 75; 10:10-10:50: 600 * 2/3 = 400;
    # 10:50-11:00: (600+300)/2 * 1/6 = 75 → 550 Wh
    assert power_energy(samples, 0, H, max_gap_ms=45 * M).wh == pytest.approx(550.0)


def test_power_gap_is_a_hole_not_energy() -> None:
    samples = [(0, 1000.0), (10 * M, 1000.0), (50 * M, 1000.0), (60 * M, 1000.0)]
    result = power_energy(samples, 0, H, max_gap_ms=15 * M)
    assert result.complete is False
    assert result.wh == pytest.approx(1000.0 * 20 / 60)


def test_power_missing_bracket_and_no_samples() -> None:
    result = power_energy([(30 * M, 600.0), (60 * M, 600.0)], 0, H, max_gap_ms=H)
    assert result == IntervalEnergy(pytest.approx(300.0), False, "power")
    assert power_energy([], 0, H, max_gap_ms=H) == IntervalEnergy(0.0, False, "none")


def test_power_positive_and_negative_parts_split_at_zero_crossing() -> None:
    # -600 W at 0 to +600 W at 60 min: net 0, import triangle 150 Wh, export triangle 150 Wh
    samples = [(0, -600.0), (H, 600.0)]
    assert power_energy(samples, 0, H, max_gap_ms=H).wh == pytest.approx(0.0)
    assert power_energy(samples, 0, H, max_gap_ms=H, part="positive").wh == pytest.approx(150.0)
    assert power_energy(samples, 0, H, max_gap_ms=H, part="negative").wh == pytest.approx(150.0)
    with pytest.raises(ValueError):
        power_energy(samples, 0, H, max_gap_ms=H, part="sideways")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-5000, 5000), min_size=2, max_size=20), st.integers(1, 10 * M),
       st.integers(0, 100), st.integers(1, 100))
def test_power_parts_add_up_to_net(powers, step, a, b) -> None:
    samples = [(i * step, p) for i, p in enumerate(powers)]
    span = (len(samples) - 1) * step
    start, end = span * a // 200, span * a // 200 + max(1, span * b // 200)
    net = power_energy(samples, start, end, max_gap_ms=step)
    pos = power_energy(samples, start, end, max_gap_ms=step, part="positive")
    neg = power_energy(samples, start, end, max_gap_ms=step, part="negative")
    assert pos.wh >= 0 and neg.wh >= 0
    assert pos.wh - neg.wh == pytest.approx(net.wh, rel=1e-9, abs=1e-6)


# -- closed intervals, device choice, buckets ----------------------------------------------------
def test_interval_energy_from_quarter_hours() -> None:
    quarters = [(q * 15 * M, 900, 10.0 * q) for q in range(1, 5)]  # ends 00:15 … 01:00
    assert interval_energy(quarters, 0, H) == IntervalEnergy(100.0, True, "interval")
    assert interval_energy(quarters[:3], 0, H) == IntervalEnergy(60.0, False, "interval")
    # a replayed record is not counted twice
    assert interval_energy(quarters + quarters[:1], 0, H).wh == 100.0
    # an hour is never split into quarters
    assert interval_energy([(H, 3600, 400.0)], 0, 15 * M) == IntervalEnergy(0.0, False, "none")


def test_device_energy_prefers_the_counter() -> None:
    counter = [(0, 0.0), (H, 500.0)]
    power = [(0, 100.0), (H, 100.0)]
    assert device_energy(counter, power, 0, H, max_gap_ms=H).method == "counter"
    assert device_energy([], power, 0, H, max_gap_ms=H) == IntervalEnergy(
        pytest.approx(100.0), True, "power")
    assert device_energy([], [], 0, H, max_gap_ms=H).method == "none"


def test_buckets() -> None:
    assert bucket_start(H + 17 * M, 900) == H + 15 * M
    assert interval_buckets(H + 17 * M, 2 * H + 1, 900) == [
        H + 15 * M, H + 30 * M, H + 45 * M, 2 * H]
    assert interval_buckets(H, H, 3600) == []
