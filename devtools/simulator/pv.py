"""PV plant output: clear-sky irradiance on the tilted plane, times passing clouds.

Pure and deterministic, like the load profiles: the output at an instant depends only on the
plant, the seed and the time. The sun's position comes from ``astral`` (no hand-written
astronomy). The clear-sky model is the usual textbook chain, good to a few percent, which is all
a demo and an anomaly evaluation need:

* air mass by Kasten & Young (1989);
* direct normal irradiance by Meinel: ``DNI = 1353 · 0.7^(AM^0.678)``;
* diffuse horizontal ≈ 10 % of the direct normal, ground reflection with albedo 0.2;
* plane of array = beam·cos(AOI) + isotropic sky diffuse + ground-reflected;
* DC power = kWp · POA/1000 · temperature derate · system losses (0.86); AC = clipped at the
  inverter rating.

Clouds are a seeded random process per plant and day: each day draws a sky type (clear, partly
cloudy, overcast — cloudier in winter) and, on partly cloudy days, a train of cloud passages of
random start, length (2–20 min) and depth. A cloud only ever reduces output.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

import astral
import astral.sun

SOLAR_CONSTANT_W_M2 = 1353.0
SYSTEM_LOSSES = 0.86
TEMP_COEFF_PER_C = -0.004
ALBEDO = 0.2


@dataclass(frozen=True)
class PlantModel:
    """What the PV model needs to know about a plant."""

    key: str
    peak_power_kw: float
    latitude: float
    longitude: float
    tilt_deg: float = 30.0
    azimuth_deg: float = 180.0
    seed: int = 0


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def sun_position(lat: float, lon: float, ts_ms: int) -> tuple[float, float]:
    """(elevation, azimuth) of the sun in degrees, from astral."""
    when = datetime.fromtimestamp(ts_ms / 1000.0, UTC)
    observer = astral.Observer(latitude=lat, longitude=lon)
    return astral.sun.elevation(observer, when), astral.sun.azimuth(observer, when)


def air_mass(zenith_deg: float) -> float:
    """Kasten & Young relative optical air mass."""
    return 1.0 / (math.cos(math.radians(zenith_deg))
                  + 0.50572 * (96.07995 - zenith_deg) ** -1.6364)


def clear_sky_poa_w_m2(plant: PlantModel, ts_ms: int) -> float:
    """Clear-sky irradiance on the plant's plane (W/m²); 0 whenever the sun is down."""
    elevation, azimuth = sun_position(plant.latitude, plant.longitude, ts_ms)
    if elevation <= 0.0:
        return 0.0
    zenith = 90.0 - elevation
    dni = SOLAR_CONSTANT_W_M2 * 0.7 ** (air_mass(zenith) ** 0.678)
    cos_z = math.cos(math.radians(zenith))
    dhi = 0.1 * dni
    ghi = dni * cos_z + dhi
    tilt = math.radians(plant.tilt_deg)
    cos_aoi = (cos_z * math.cos(tilt) + math.sin(math.radians(zenith)) * math.sin(tilt)
               * math.cos(math.radians(azimuth - plant.azimuth_deg)))
    beam = dni * max(cos_aoi, 0.0)
    sky = dhi * (1.0 + math.cos(tilt)) / 2.0
    ground = ghi * ALBEDO * (1.0 - math.cos(tilt)) / 2.0
    return beam + sky + ground


def clear_sky_power_w(plant: PlantModel, ts_ms: int) -> float:
    """DC-side output under a clear sky, W (temperature derate and system losses included)."""
    poa = clear_sky_poa_w_m2(plant, ts_ms)
    if poa <= 0.0:
        return 0.0
    cell_temp_c = 20.0 + poa * 0.03  # ambient ~20 °C, NOCT-style rise
    derate = 1.0 + TEMP_COEFF_PER_C * (cell_temp_c - 25.0)
    return plant.peak_power_kw * 1000.0 * poa / 1000.0 * derate * SYSTEM_LOSSES


#: sky types with their probability in (winter, summer), and the clearness they allow
SKY_TYPES: tuple[tuple[str, float, float], ...] = (
    ("clear", 0.40, 0.70),
    ("partly", 0.40, 0.25),
    ("overcast", 0.20, 0.05),
)


@lru_cache(maxsize=2048)
def sky_of_day(key: str, seed: int, day: date) -> tuple[str, float, tuple[tuple[float, ...], ...]]:
    """(sky type, base clearness, cloud passages) of one plant-day.

    A cloud passage is (start s since local-agnostic UTC midnight, duration s, depth 0..1).
    """
    rng = _rng("sky", seed, key, day.isoformat())
    summer = 0.5 - 0.5 * math.cos(2.0 * math.pi * (day.timetuple().tm_yday - 15) / 365.25)
    weights = [w + (s - w) * summer for _, w, s in SKY_TYPES]
    sky = rng.choices([name for name, _, _ in SKY_TYPES], weights=weights)[0]
    if sky == "clear":
        return sky, rng.uniform(0.96, 1.0), ()
    if sky == "overcast":
        return sky, rng.uniform(0.2, 0.45), ()
    passages: list[tuple[float, ...]] = []
    t = rng.uniform(0.0, 1800.0)
    while t < 86400.0:
        duration = rng.uniform(120.0, 1200.0)
        passages.append((t, duration, rng.uniform(0.35, 0.8)))
        t += duration + rng.expovariate(1.0 / 1500.0)
    return sky, rng.uniform(0.9, 1.0), tuple(passages)


def cloud_factor(plant: PlantModel, ts_ms: int) -> float:
    """Fraction of the clear-sky output that gets through the clouds (0 < f ≤ 1)."""
    when = datetime.fromtimestamp(ts_ms / 1000.0, UTC)
    _, clearness, passages = sky_of_day(plant.key, plant.seed, when.date())
    seconds = when.hour * 3600.0 + when.minute * 60.0 + when.second + when.microsecond / 1e6
    factor = clearness
    for start, duration, depth in passages:
        if start - 60.0 <= seconds < start + duration + 60.0:
            # 60 s soft edges: a cloud front dims the plant within a minute, not instantly
            edge = min(1.0, (seconds - start + 60.0) / 60.0,
                       (start + duration + 60.0 - seconds) / 60.0)
            factor *= 1.0 - depth * max(0.0, edge)
    return max(factor, 0.05)


def plant_power_w(plant: PlantModel, ts_ms: int, clouds: bool = True) -> float:
    """The plant's output at ``ts_ms``, W: clear sky times clouds (never negative, 0 at night)."""
    clear = clear_sky_power_w(plant, ts_ms)
    if clear <= 0.0:
        return 0.0
    return clear * (cloud_factor(plant, ts_ms) if clouds else 1.0)


def energy_wh(plant: PlantModel, start_ms: int, end_ms: int, step_s: float = 60.0,
              clouds: bool = True) -> float:
    """Energy between two instants by the midpoint rule."""
    if end_ms <= start_ms:
        return 0.0
    span_s = (end_ms - start_ms) / 1000.0
    steps = max(1, math.ceil(span_s / step_s))
    dt = span_s / steps
    return sum(plant_power_w(plant, start_ms + int((i + 0.5) * dt * 1000.0), clouds) * dt
               for i in range(steps)) / 3600.0
