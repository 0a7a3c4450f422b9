"""``ioe simulate --as-if HH:MM``: the sun and the load profiles move, the clock stays true."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from devtools.simulator import pv
from devtools.simulator.command import day_shift_ms
from devtools.simulator.engine import SimConfig, Simulator

from .conftest import SimCommunity

MADRID = ZoneInfo("Europe/Madrid")
EVENING_MS = int(datetime(2026, 12, 4, 19, 45, tzinfo=MADRID).timestamp() * 1000)
NOON_MS = int(datetime(2026, 12, 4, 12, 30, tzinfo=MADRID).timestamp() * 1000)


def test_the_shift_is_from_now_to_that_local_time_today() -> None:
    assert day_shift_ms("12:30", "Europe/Madrid", EVENING_MS) == -(7 * 60 + 15) * 60_000
    assert day_shift_ms("19:45", "Europe/Madrid", EVENING_MS) == 0
    june = int(datetime(2026, 6, 21, 12, 30, tzinfo=MADRID).timestamp() * 1000)
    assert day_shift_ms("2026-06-21T12:30", "Europe/Madrid", EVENING_MS) == june - EVENING_MS
    assert day_shift_ms("2026-06-21T10:30+00:00", "Europe/Madrid", EVENING_MS) == \
        june - EVENING_MS  # 12:30 CEST
    for bad in ("25:00", "12", "noon", "12:60", "2026-13-01T12:00"):
        with pytest.raises(ValueError, match="--as-if"):
            day_shift_ms(bad, "Europe/Madrid", EVENING_MS)


def test_an_evening_inverter_produces_what_the_noon_sun_gives(community: SimCommunity,
                                                               tmp_path) -> None:
    sim = Simulator(SimConfig(registry_path=community.path, seed=3, start_ms=EVENING_MS,
                              state_dir=tmp_path / "state", enable_meters=False,
                              day_shift_ms=NOON_MS - EVENING_MS))
    plant = sim.plants["p1"]
    inverter = next(i for i in sim.inverters if i.device_id == "inv-ss")
    assert pv.plant_power_w(plant, EVENING_MS) == 0.0  # night in December
    sample = inverter.step(EVENING_MS, tripped=False)
    # 6 kW of a 10 kW plant, 97.5 % efficiency, at the noon sun (worked out again here)
    expected = min(pv.plant_power_w(plant, NOON_MS) * 0.6 * 0.975, 6000.0)
    assert expected > 500 and sample.power_w == pytest.approx(expected, abs=0.1)
    assert sample.ts_ms == EVENING_MS


def test_an_evening_household_draws_what_it_draws_at_noon(community: SimCommunity,
                                                          tmp_path) -> None:
    from devtools.simulator import load

    sim = Simulator(SimConfig(registry_path=community.path, seed=3, start_ms=EVENING_MS,
                              state_dir=tmp_path / "state", enable_inverters=False,
                              day_shift_ms=NOON_MS - EVENING_MS))
    meter = sim.meters[0]
    measured = meter.measure(EVENING_MS)
    assert measured.ts_ms == EVENING_MS
    assert measured.power_w == load.household_power_w(meter.household, NOON_MS, "Europe/Madrid")
    assert measured.power_w != load.household_power_w(meter.household, EVENING_MS,
                                                      "Europe/Madrid")
