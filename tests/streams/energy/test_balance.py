"""Per member-hour balance (DESIGN.md §1) and the hour-of-year clock, checked by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioe.coefficients import CoefficientSchedule, hour_of_year, hour_start_ms, hours_in_year
from streams.energy.balance import split

H = 3_600_000


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_sunny_hour() -> None:
    # β 0.25 of 12 kWh = 3 kWh assigned, member uses 1.8 kWh
    s = split(0.25, 12.0, 1.8)
    assert s.assigned == pytest.approx(3.0)
    assert s.self_consumed == pytest.approx(1.8)
    assert s.surplus == pytest.approx(1.2)
    assert s.grid_import == 0.0


def test_cloudy_hour_member_imports_the_rest() -> None:
    s = split(0.4, 2.0, 1.5)  # 0.8 assigned
    assert (s.assigned, s.self_consumed, s.surplus) == pytest.approx((0.8, 0.8, 0.0))
    assert s.grid_import == pytest.approx(0.7)


def test_night_hour_and_plant_standby() -> None:
    s = split(0.35, 0.0, 0.42)
    assert (s.assigned, s.self_consumed, s.surplus, s.grid_import) == (0.0, 0.0, 0.0, 0.42)
    # negative net generation (inverter standby) assigns nothing, charges nothing
    s = split(0.35, -0.015, 0.42)
    assert (s.assigned, s.self_consumed, s.surplus, s.grid_import) == (0.0, 0.0, 0.0, 0.42)


def test_member_with_zero_consumption_has_everything_as_surplus() -> None:
    s = split(0.2, 5.0, 0.0)
    assert (s.assigned, s.self_consumed, s.surplus, s.grid_import) == (1.0, 0.0, 1.0, 0.0)


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        split(1.2, 1.0, 1.0)
    with pytest.raises(ValueError):
        split(0.5, 1.0, -0.1)


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 1), st.floats(-10, 1e4), st.floats(0, 1e4))
def test_invariants(beta, generation, consumption) -> None:
    s = split(beta, generation, consumption)
    assert s.assigned == pytest.approx(s.self_consumed + s.surplus, abs=1e-9)
    assert s.consumption == pytest.approx(s.self_consumed + s.grid_import, abs=1e-9)
    for value in (s.assigned, s.self_consumed, s.surplus, s.grid_import):
        assert value >= 0
    # a second, simpler statement of the rules
    a = beta * generation if generation > 0 else 0.0
    assert s.self_consumed == pytest.approx(a if a < consumption else consumption)


@st.composite
def coefficient_sets(draw):  # noqa: ANN001, ANN201 - hypothesis strategy
    """β with 6 decimals summing exactly to 1 (integer millionths)."""
    n = draw(st.integers(1, 8))
    cuts = sorted(draw(st.lists(st.integers(0, 1_000_000), min_size=n - 1, max_size=n - 1)))
    bounds = [0, *cuts, 1_000_000]
    return [(b - a) / 1_000_000 for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=300, deadline=None)
@given(coefficient_sets(), st.floats(0, 1e4), st.lists(st.floats(0, 1e4), min_size=8,
                                                           max_size=8))
def test_assigned_shares_add_up_to_generation(betas, generation, consumptions) -> None:
    splits = [split(b, generation, c) for b, c in zip(betas, consumptions, strict=False)]
    assert math.fsum(s.assigned for s in splits) == pytest.approx(generation, rel=1e-9,
                                                                   abs=1e-9)
    # what the community generated is either self-consumed or surplus, nothing else
    assert math.fsum(s.self_consumed + s.surplus for s in splits) == pytest.approx(
        generation, rel=1e-9, abs=1e-9)


# -- hourly coefficients and the hour of the year ------------------------------------------------
def test_hour_of_year_first_and_last_hours() -> None:
    # 1 Jan 2025 00:00 CET is 2024-12-31T23:00Z: hour 0001
    assert hour_of_year(utc_ms("2024-12-31T23:00:00Z")) == (2025, 1)
    assert hour_of_year(utc_ms("2024-12-31T23:59:59Z")) == (2025, 1)
    assert hour_of_year(utc_ms("2025-01-01T00:00:00Z")) == (2025, 2)
    # 31 Dec 2025 23:00 CET = 22:00Z: hour 8760
    assert hour_of_year(utc_ms("2025-12-31T22:30:00Z")) == (2025, 8760)
    assert hour_of_year(utc_ms("2024-12-31T22:30:00Z")) == (2024, 8784)  # leap year
    assert hours_in_year(2024) == 8784 and hours_in_year(2025) == 8760
    assert hour_start_ms(2025, 7154) == utc_ms("2025-10-26T00:00:00Z")


# Hour by hour, written out by hand: (UTC start of the hour, hour of the year).
# 30 March 2025: 00:00 CET = 29 Mar 23:00Z is hour 2113; the clock jumps 02:00 CET → 03:00 CEST
# at 01:00Z; the day has 23 hours, 2113 … 2135.
MARCH_2025 = [
    ("2025-03-29T23:00:00Z", 2113), ("2025-03-30T00:00:00Z", 2114),
    ("2025-03-30T01:00:00Z", 2115), ("2025-03-30T02:00:00Z", 2116),
    ("2025-03-30T03:00:00Z", 2117), ("2025-03-30T04:00:00Z", 2118),
    ("2025-03-30T05:00:00Z", 2119), ("2025-03-30T06:00:00Z", 2120),
    ("2025-03-30T07:00:00Z", 2121), ("2025-03-30T08:00:00Z", 2122),
    ("2025-03-30T09:00:00Z", 2123), ("2025-03-30T10:00:00Z", 2124),
    ("2025-03-30T11:00:00Z", 2125), ("2025-03-30T12:00:00Z", 2126),
    ("2025-03-30T13:00:00Z", 2127), ("2025-03-30T14:00:00Z", 2128),
    ("2025-03-30T15:00:00Z", 2129), ("2025-03-30T16:00:00Z", 2130),
    ("2025-03-30T17:00:00Z", 2131), ("2025-03-30T18:00:00Z", 2132),
    ("2025-03-30T19:00:00Z", 2133), ("2025-03-30T20:00:00Z", 2134),
    ("2025-03-30T21:00:00Z", 2135),
]
# 26 October 2025: 00:00 CEST = 25 Oct 22:00Z is hour 7152; 03:00 CEST → 02:00 CET at 01:00Z;
# 25 hours, 7152 … 7176.
OCTOBER_2025 = [
    ("2025-10-25T22:00:00Z", 7152), ("2025-10-25T23:00:00Z", 7153),
    ("2025-10-26T00:00:00Z", 7154), ("2025-10-26T01:00:00Z", 7155),
    ("2025-10-26T02:00:00Z", 7156), ("2025-10-26T03:00:00Z", 7157),
    ("2025-10-26T04:00:00Z", 7158), ("2025-10-26T05:00:00Z", 7159),
    ("2025-10-26T06:00:00Z", 7160), ("2025-10-26T07:00:00Z", 7161),
    ("2025-10-26T08:00:00Z", 7162), ("2025-10-26T09:00:00Z", 7163),
    ("2025-10-26T10:00:00Z", 7164), ("2025-10-26T11:00:00Z", 7165),
    ("2025-10-26T12:00:00Z", 7166), ("2025-10-26T13:00:00Z", 7167),
    ("2025-10-26T14:00:00Z", 7168), ("2025-10-26T15:00:00Z", 7169),
    ("2025-10-26T16:00:00Z", 7170), ("2025-10-26T17:00:00Z", 7171),
    ("2025-10-26T18:00:00Z", 7172), ("2025-10-26T19:00:00Z", 7173),
    ("2025-10-26T20:00:00Z", 7174), ("2025-10-26T21:00:00Z", 7175),
    ("2025-10-26T22:00:00Z", 7176),
]


@pytest.mark.parametrize(("start", "hour"), MARCH_2025 + OCTOBER_2025)
def test_hour_of_year_on_clock_change_days(start: str, hour: int) -> None:
    assert hour_of_year(utc_ms(start)) == (2025, hour)
    assert hour_of_year(utc_ms(start) + H - 1) == (2025, hour)
    assert hour_start_ms(2025, hour) == utc_ms(start)


def test_clock_change_days_have_23_and_25_hours() -> None:
    assert len(MARCH_2025) == 23 and len(OCTOBER_2025) == 25
    # and the next local midnight starts the next hour of the year
    assert hour_of_year(utc_ms("2025-03-30T22:00:00Z")) == (2025, 2136)
    assert hour_of_year(utc_ms("2025-10-26T23:00:00Z")) == (2025, 7177)


def _hourly(year: int, base: list[float], changes: dict[int, list[float]]) -> CoefficientSchedule:
    cups = ["ES0021000000000001RK", "ES0021000000000002RE", "ES0021000000000003WT"]
    hours = hours_in_year(year)
    by_cups = {c: [changes.get(h + 1, base)[i] for h in range(hours)] for i, c in enumerate(cups)}
    return CoefficientSchedule("hourly", by_cups, year=year, source="test")


def test_hourly_coefficient_changes_exactly_at_the_hour_boundary() -> None:
    # from hour 7165 (26 Oct 2025 11:00Z, the hour ending 13:00 CET) the first member gets 0.2
    schedule = _hourly(2025, [0.5, 0.3, 0.2], {7165: [0.2, 0.3, 0.5]})
    schedule.check_sums()
    boundary = utc_ms("2025-10-26T11:00:00Z")
    a = "ES0021000000000001RK"
    assert schedule.beta(a, boundary - 1) == 0.5
    assert schedule.beta(a, boundary) == 0.2
    assert schedule.beta(a, boundary + H - 1) == 0.2
    assert schedule.beta(a, boundary + H) == 0.5
    # the balance of that hour with G = 4 kWh and 0.5 kWh consumption
    before = split(schedule.beta(a, boundary - 1), 4.0, 0.5)
    after = split(schedule.beta(a, boundary), 4.0, 0.5)
    assert (before.assigned, before.surplus) == pytest.approx((2.0, 1.5))
    assert (after.assigned, after.surplus) == pytest.approx((0.8, 0.3))


def test_hourly_coefficients_keep_the_two_october_three_oclock_hours_apart() -> None:
    schedule = _hourly(2025, [0.5, 0.3, 0.2], {7155: [0.1, 0.1, 0.8]})
    a = "ES0021000000000001RK"
    assert schedule.beta(a, utc_ms("2025-10-26T00:30:00Z")) == 0.5  # 02:30 CEST
    assert schedule.beta(a, utc_ms("2025-10-26T01:30:00Z")) == 0.1  # 02:30 CET
    assert datetime.fromtimestamp(utc_ms("2025-10-26T01:30:00Z") / 1000, UTC).hour == 1
