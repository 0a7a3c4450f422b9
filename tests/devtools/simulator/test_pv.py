"""PV model: nothing at night, a noon peak of plausible size, clouds only take away."""

from __future__ import annotations

from datetime import UTC, date, datetime

import astral
import astral.sun
import pytest

from devtools.simulator import pv

PLANT = pv.PlantModel("plant-1", 30.0, 39.4863, -0.3586, tilt_deg=15, azimuth_deg=180, seed=1)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def day_series(day: date, step_min: int = 5, clouds: bool = True) -> list[tuple[int, float]]:
    start = ms(day.year, day.month, day.day)
    return [(t, pv.plant_power_w(PLANT, t, clouds))
            for t in range(start, start + 86_400_000, step_min * 60_000)]


@pytest.mark.parametrize("day", [date(2026, 1, 15), date(2026, 6, 21), date(2026, 9, 30)])
def test_no_production_when_the_sun_is_down(day: date) -> None:
    observer = astral.Observer(PLANT.latitude, PLANT.longitude)
    for t, power in day_series(day):
        elevation = astral.sun.elevation(observer, datetime.fromtimestamp(t / 1000, UTC))
        if elevation <= 0:
            assert power == 0.0, (t, elevation)
        assert power >= 0.0


@pytest.mark.parametrize("day", [date(2026, 3, 20), date(2026, 6, 21), date(2026, 12, 21)])
def test_clear_sky_peak_near_solar_noon_with_a_plausible_size(day: date) -> None:
    series = day_series(day, step_min=2, clouds=False)
    peak_t, peak_w = max(series, key=lambda x: x[1])
    noon = astral.sun.noon(astral.Observer(PLANT.latitude, PLANT.longitude), day)
    assert abs(peak_t / 1000 - noon.timestamp()) < 20 * 60
    # a south-facing 15° roof: 45–95 % of kWp depending on the season
    assert 0.45 * 30_000 <= peak_w <= 0.95 * 30_000
    if day.month == 6:
        assert peak_w >= 0.7 * 30_000


def test_clouds_only_reduce_and_reduce_something_over_a_month() -> None:
    clear_total = cloudy_total = 0.0
    for d in range(1, 31):
        for t, clear in day_series(date(2026, 4, d), step_min=15, clouds=False):
            cloudy = pv.plant_power_w(PLANT, t, clouds=True)
            assert cloudy <= clear + 1e-9
            clear_total += clear
            cloudy_total += cloudy
    assert cloudy_total < 0.95 * clear_total
    assert cloudy_total > 0.3 * clear_total


def test_passing_clouds_make_a_partly_cloudy_day_vary() -> None:
    partly = next(date(2026, 5, d) for d in range(1, 32)
                  if pv.sky_of_day(PLANT.key, PLANT.seed, date(2026, 5, d))[0] == "partly")
    start = ms(partly.year, partly.month, partly.day, 10)
    factors = {round(pv.cloud_factor(PLANT, start + m * 60_000), 2) for m in range(240)}
    assert min(factors) < 0.7 and max(factors) > 0.85


def test_deterministic_with_seed() -> None:
    other = pv.PlantModel(**{**vars(PLANT), "seed": 2})
    times = [ms(2026, 4, d, 11) for d in range(1, 31)]
    a = [pv.plant_power_w(PLANT, t) for t in times]
    assert a == [pv.plant_power_w(PLANT, t) for t in times]
    assert a != [pv.plant_power_w(other, t) for t in times]


def test_yearly_yield_is_plausible_for_valencia() -> None:
    kwh = pv.energy_wh(PLANT, ms(2026, 1, 1), ms(2027, 1, 1), step_s=3600) / 1000.0
    assert 1200 <= kwh / 30.0 <= 1800  # kWh per kWp and year
