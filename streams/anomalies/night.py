"""Generation at night: a generator producing while the sun is below the horizon.

Usually a wrong clock or time zone on the device, a mislabelled channel (a consumption CT wired
as "generation") or a battery inverter registered as PV. Standby noise (a few watts either
way) is tolerated: max(``standby_w``, ``standby_fraction`` × rated).
"""

from __future__ import annotations

from ioe.reading import Reading
from ioe.registry import Device
from streams.anomalies.config import NightConfig
from streams.anomalies.lifecycle import CLEAR, Condition

KIND = "night_generation"


def check(cfg: NightConfig, device: Device, reading: Reading, elevation_deg: float,
          rated_w: float | None) -> Condition | None:
    if device.role != "generation" or reading.power_w is None:
        return None
    tolerance = max(cfg.standby_w, cfg.standby_fraction * (rated_w or 0.0))
    if elevation_deg >= cfg.max_elevation_deg or reading.power_w <= tolerance:
        return CLEAR
    return Condition(True, "warning", {"power_w": reading.power_w, "elevation_deg":
                                       round(elevation_deg, 2), "tolerance_w": tolerance})
