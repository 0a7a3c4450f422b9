"""Sun position and a clear-sky-ish output bound, for the solar detectors.

astral gives the elevation from date, time and the plant's location (~6 µs a call); results are
cached per minute because many readings of one plant share the same minute.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache

from astral import Observer
from astral.sun import elevation as _elevation


@lru_cache(maxsize=65536)
def _elevation_at_minute(latitude: float, longitude: float, minute: int) -> float:
    when = datetime.fromtimestamp(minute * 60, UTC)
    return float(_elevation(Observer(latitude, longitude), when))


def sun_elevation(latitude: float, longitude: float, ts_ms: int) -> float:
    """Solar elevation in degrees (negative below the horizon) at ``ts_ms``."""
    return _elevation_at_minute(round(latitude, 4), round(longitude, 4), ts_ms // 60_000)


def clear_sky_ratio(elevation_deg: float) -> float:
    """Rough AC output / rated power of a south-facing array under a clear sky.

    Deliberately crude (air-mass-like ``sin(h)^1.2`` scaled to 0.9 at zenith): it only gates
    comparisons to times when production is meaningful and bounds a lone inverter's output.
    """
    if elevation_deg <= 0:
        return 0.0
    return 0.9 * math.sin(math.radians(elevation_deg)) ** 1.2
