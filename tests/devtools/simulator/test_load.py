"""Household load profiles: yearly energy, daily shape, holidays, determinism."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from devtools.simulator import load
from ioe.holidays import easter

TZ = "Europe/Madrid"


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def yearly_kwh(h: load.Household, year: int = 2026, step_min: int = 30) -> float:
    """A second, simpler integration: left Riemann sum of the power every ``step_min``."""
    start, end = ms(year, 1, 1), ms(year + 1, 1, 1)
    step = step_min * 60_000
    return sum(load.household_power_w(h, t, TZ) for t in range(start, end, step)) \
        * (step_min / 60.0) / 1000.0


@pytest.mark.parametrize("key", ["m01", "m07", "m13", "m22", "m30"])
def test_a_simulated_year_is_between_2000_and_4500_kwh(key: str) -> None:
    h = load.make_household(key, seed=3)
    energy = yearly_kwh(h)
    assert 2000.0 <= energy <= 4500.0, energy
    # and the calibration hits the household's own target closely
    assert energy == pytest.approx(h.annual_kwh, rel=0.06)


def test_same_seed_same_profile_other_seed_other_profile() -> None:
    t0 = ms(2026, 3, 10)
    times = [t0 + i * 97_000 for i in range(500)]
    a = [load.household_power_w(load.make_household("m01", 5), t) for t in times]
    b = [load.household_power_w(load.make_household("m01", 5), t) for t in times]
    c = [load.household_power_w(load.make_household("m01", 6), t) for t in times]
    assert a == b
    assert a != c


def test_power_never_negative_and_evening_beats_night() -> None:
    h = load.make_household("m05", seed=1)
    # a working Tuesday in March; local evening 21:00 is 20:00 UTC, night 04:00 is 03:00 UTC
    evening = [load.household_power_w(h, ms(2026, 3, 10, 20, m)) for m in range(0, 60, 5)]
    night = [load.household_power_w(h, ms(2026, 3, 10, 3, m)) for m in range(0, 60, 5)]
    assert min(evening + night) >= 0.0
    assert sum(evening) / len(evening) > 2.0 * sum(night) / len(night)


def test_holidays_and_vacation() -> None:
    assert easter(2026) == date(2026, 4, 5)
    assert load.is_free_day(date(2026, 4, 3))      # Viernes Santo
    assert load.is_free_day(date(2026, 12, 8))     # Inmaculada (a Tuesday)
    assert not load.is_free_day(date(2026, 12, 9))
    h = load.make_household("m09", seed=2)
    doy = h.vacation_start_doy + 1
    vacation_day = date.fromordinal(date(2026, 1, 1).toordinal() + doy - 1)
    start = int(datetime(vacation_day.year, vacation_day.month, vacation_day.day,
                         tzinfo=UTC).timestamp() * 1000)
    on_vacation = load.energy_wh(h, start, start + 86_400_000, 300)
    normal = load.energy_wh(h, start - 21 * 86_400_000, start - 20 * 86_400_000, 300)
    # only the base load is left while the family is away
    assert on_vacation == pytest.approx(h.base_w * 24, rel=0.05)
    assert on_vacation < 0.7 * normal


def test_winter_days_use_more_than_spring_days() -> None:
    h = load.make_household("m11", seed=4)
    january = sum(load.energy_wh(h, ms(2026, 1, d), ms(2026, 1, d + 1), 600) for d in range(5, 26))
    april = sum(load.energy_wh(h, ms(2026, 4, d), ms(2026, 4, d + 1), 600) for d in range(6, 27))
    assert january > april


def test_energy_wh_matches_power_times_time_for_constant_spans() -> None:
    h = load.make_household("m02", seed=1)
    start = ms(2026, 5, 5, 12)
    by_model = load.energy_wh(h, start, start + 3_600_000, step_s=1.0)
    riemann = sum(load.household_power_w(h, start + s * 1000) for s in range(0, 3600, 10)) \
        * 10 / 3600.0
    assert by_model == pytest.approx(riemann, rel=0.03)
