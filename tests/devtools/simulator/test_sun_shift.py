"""``ioe simulate --sun-at HH:MM``: only the sun moves, the clock stays true."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from devtools.simulator import pv
from devtools.simulator.command import sun_shift_ms
from devtools.simulator.engine import SimConfig, Simulator

from .conftest import SimCommunity

MADRID = ZoneInfo("Europe/Madrid")
EVENING_MS = int(datetime(2026, 12, 4, 19, 45, tzinfo=MADRID).timestamp() * 1000)
NOON_MS = int(datetime(2026, 12, 4, 12, 30, tzinfo=MADRID).timestamp() * 1000)


def test_the_shift_is_from_now_to_that_local_time_today() -> None:
    assert sun_shift_ms("12:30", "Europe/Madrid", EVENING_MS) == -(7 * 60 + 15) * 60_000
    assert sun_shift_ms("19:45", "Europe/Madrid", EVENING_MS) == 0
    for bad in ("25:00", "12", "noon", "12:60"):
        with pytest.raises(ValueError, match="HH:MM"):
            sun_shift_ms(bad, "Europe/Madrid", EVENING_MS)


def test_an_evening_inverter_produces_what_the_noon_sun_gives(community: SimCommunity,
                                                               tmp_path) -> None:
    sim = Simulator(SimConfig(registry_path=community.path, seed=3, start_ms=EVENING_MS,
                              state_dir=tmp_path / "state", enable_meters=False,
                              sun_shift_ms=NOON_MS - EVENING_MS))
    plant = sim.plants["p1"]
    inverter = next(i for i in sim.inverters if i.device_id == "inv-ss")
    assert pv.plant_power_w(plant, EVENING_MS) == 0.0  # night in December
    sample = inverter.step(EVENING_MS, tripped=False)
    # 6 kW of a 10 kW plant, 97.5 % efficiency, at the noon sun (worked out again here)
    expected = min(pv.plant_power_w(plant, NOON_MS) * 0.6 * 0.975, 6000.0)
    assert expected > 500 and sample.power_w == pytest.approx(expected, abs=0.1)
    assert sample.ts_ms == EVENING_MS
