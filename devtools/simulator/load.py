"""Household load profiles: what a Spanish home draws from the grid at any instant.

Pure and deterministic: the power at a given instant depends only on the seed, the household
key and the time, never on how often it is asked. That is what lets the meters integrate their
counters at any step (and a test recompute the same energy with a different, simpler loop), and
a restarted simulator continue exactly where the profile would have been.

Shape of a day (local time): a base load (fridge, standby, router), a morning peak (breakfast,
showers), a small lunch bump, a large evening peak (cooking, lights, TV), plus appliance events
(washing machine, dishwasher, oven, kettle, air conditioning in summer) drawn at random per day.
Weekends and Spanish national holidays shift the load into the day; a summer vacation leaves
only the base load. A seasonal factor makes winter (lighting, heat pumps) heavier than spring.
The whole profile is scaled so its expected yearly energy is the household's target
(2,200–4,200 kWh, inside the 2,000–4,500 kWh range of Spanish homes).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from ioe.holidays import holidays

SQRT_2PI = math.sqrt(2.0 * math.pi)

#: Spanish national holidays with a fixed date (month, day); Good Friday is added per year.
@dataclass(frozen=True)
class Appliance:
    """An appliance that runs at random moments: power, run time and when people use it."""

    name: str
    power_w: float
    duration_min: float
    #: expected runs per day
    runs_per_day: float
    #: (earliest, latest) local start hour
    window_h: tuple[float, float]
    #: months in which it is used at all (None = all year)
    months: tuple[int, ...] | None = None


#: The appliance catalogue; each household owns a random subset.
APPLIANCES: tuple[Appliance, ...] = (
    Appliance("washing_machine", 1900.0, 75.0, 0.55, (9.0, 22.0)),
    Appliance("dishwasher", 1700.0, 90.0, 0.6, (14.5, 23.0)),
    Appliance("oven", 2200.0, 45.0, 0.25, (12.5, 21.5)),
    Appliance("kettle", 2000.0, 4.0, 1.2, (7.0, 22.0)),
    Appliance("iron", 1800.0, 30.0, 0.15, (10.0, 21.0)),
    Appliance("air_conditioning", 1100.0, 150.0, 0.8, (14.0, 22.0), (6, 7, 8, 9)),
    Appliance("heat_pump", 900.0, 120.0, 0.9, (7.0, 22.0), (12, 1, 2)),
)


@dataclass(frozen=True)
class Household:
    """Parameters of one simulated home (all derived from the seed and the household key)."""

    key: str
    seed: int
    annual_kwh: float
    base_w: float
    morning_w: float
    morning_h: float
    lunch_w: float
    evening_w: float
    evening_h: float
    appliances: tuple[Appliance, ...]
    #: day of year (1-based) on which the summer vacation starts, and its length in days
    vacation_start_doy: int
    vacation_days: int
    #: multiplier applied to everything but the base load so the yearly energy hits the target
    scale: float


def _rng(*parts: object) -> random.Random:
    """A random generator seeded by the parts, stable across processes (no ``hash()``)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def make_household(key: str, seed: int = 0) -> Household:
    """Draw a household's parameters; the same key and seed always give the same home."""
    rng = _rng("household", seed, key)
    annual_kwh = rng.uniform(2200.0, 4200.0)
    owned = tuple(a for a in APPLIANCES if rng.random() < 0.8)
    unscaled = Household(
        key=key, seed=seed, annual_kwh=annual_kwh,
        base_w=rng.uniform(0.25, 0.38) * annual_kwh * 1000.0 / 8760.0,
        morning_w=rng.uniform(250.0, 600.0), morning_h=rng.uniform(7.0, 8.5),
        lunch_w=rng.uniform(100.0, 400.0),
        evening_w=rng.uniform(500.0, 1100.0), evening_h=rng.uniform(20.0, 21.5),
        appliances=owned, vacation_start_doy=rng.randint(196, 228),
        vacation_days=rng.randint(7, 16), scale=1.0)
    return _calibrated(unscaled)


def _calibrated(h: Household) -> Household:
    """Choose ``scale`` so the expected yearly energy equals ``annual_kwh``.

    Expected daily energy of the variable part: each Gaussian peak integrates to
    amplitude·σ·√(2π), each appliance to runs·power·duration (over the months it is used).
    Vacation days keep only the base load.
    """
    base_wh_day = h.base_w * 24.0
    peaks_wh = (h.morning_w * MORNING_SIGMA_H + h.lunch_w * LUNCH_SIGMA_H
                + h.evening_w * EVENING_SIGMA_H) * SQRT_2PI
    appliance_wh = sum(a.runs_per_day * a.power_w * a.duration_min / 60.0
                       * (len(a.months) / 12.0 if a.months else 1.0) for a in h.appliances)
    active_days = 365.0 - h.vacation_days
    variable_kwh = (peaks_wh + appliance_wh) * active_days / 1000.0
    base_kwh = base_wh_day * 365.0 / 1000.0
    scale = max(0.2, (h.annual_kwh - base_kwh) / variable_kwh) if variable_kwh > 0 else 1.0
    return Household(**{**vars(h), "scale": scale})


MORNING_SIGMA_H = 0.9
LUNCH_SIGMA_H = 1.0
EVENING_SIGMA_H = 1.6


def seasonal_factor(day_of_year: int) -> float:
    """Winter +22 %, spring/autumn −, summer slightly up again (air conditioning); mean ≈ 1."""
    x = 2.0 * math.pi * (day_of_year - 15) / 365.25
    return 1.0 + 0.22 * math.cos(x) + 0.08 * math.cos(2.0 * x)


def is_free_day(day: date) -> bool:
    """Weekend or national holiday: people are at home during the day."""
    return day.weekday() >= 5 or day in holidays(day.year)


def on_vacation(h: Household, day: date) -> bool:
    doy = day.timetuple().tm_yday
    return h.vacation_start_doy <= doy < h.vacation_start_doy + h.vacation_days


@lru_cache(maxsize=4096)
def _appliance_runs(key: str, seed: int, day: date,
                    appliances: tuple[Appliance, ...]) -> tuple[tuple[float, float, float], ...]:
    """The appliance runs of one household-day: (start hour, end hour, power W)."""
    rng = _rng("appliances", seed, key, day.isoformat())
    runs: list[tuple[float, float, float]] = []
    for a in appliances:
        if a.months and day.month not in a.months:
            continue
        # a Poisson-like count with the right mean: floor + Bernoulli remainder
        count = int(a.runs_per_day) + (1 if rng.random() < a.runs_per_day % 1.0 else 0)
        for _ in range(count):
            start = rng.uniform(*a.window_h)
            runs.append((start, start + a.duration_min / 60.0, a.power_w))
    return tuple(runs)


def _gauss(x: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2)


def _ripple(key: str, seed: int, minute: int) -> float:
    """Small minute-to-minute variation (±8 %) so the curve is not suspiciously smooth."""
    return 0.92 + 0.16 * _rng("ripple", seed, key, minute).random()


def household_power_w(h: Household, ts_ms: int, tz: str = "Europe/Madrid") -> float:
    """Active power drawn by the household at ``ts_ms`` (UTC epoch ms), in W (always ≥ 0)."""
    local = datetime.fromtimestamp(ts_ms / 1000.0, ZoneInfo(tz))
    day = local.date()
    hour = local.hour + local.minute / 60.0 + local.second / 3600.0
    if on_vacation(h, day):
        return round(h.base_w * _ripple(h.key, h.seed, ts_ms // 60000), 1)
    free = is_free_day(day)
    # on free days people get up later and stay home at midday
    morning = h.morning_w * _gauss(hour, h.morning_h + (1.5 if free else 0.0), MORNING_SIGMA_H)
    lunch = h.lunch_w * (1.6 if free else 1.0) * _gauss(hour, 14.5, LUNCH_SIGMA_H)
    evening = h.evening_w * (0.85 if free else 1.0) * _gauss(hour, h.evening_h, EVENING_SIGMA_H)
    # the evening peak wraps past midnight a little
    evening += h.evening_w * _gauss(hour + 24.0, h.evening_h, EVENING_SIGMA_H)
    appliances = sum(p for start, end, p in _appliance_runs(h.key, h.seed, day, h.appliances)
                     if start <= hour < end)
    variable = (morning + lunch + evening) * seasonal_factor(day.timetuple().tm_yday)
    variable += appliances
    power = (h.base_w + h.scale * variable) * _ripple(h.key, h.seed, ts_ms // 60000)
    return round(max(power, 0.0), 1)


def energy_wh(h: Household, start_ms: int, end_ms: int, step_s: float = 60.0,
              tz: str = "Europe/Madrid") -> float:
    """Energy between two instants by the midpoint rule (the meters' counter increments)."""
    if end_ms <= start_ms:
        return 0.0
    span_s = (end_ms - start_ms) / 1000.0
    steps = max(1, math.ceil(span_s / step_s))
    dt = span_s / steps
    total = 0.0
    for i in range(steps):
        mid = start_ms + int((i + 0.5) * dt * 1000.0)
        total += household_power_w(h, mid, tz) * dt
    return total / 3600.0
