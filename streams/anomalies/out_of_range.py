"""Out of range / impossible values: each reading judged on its own against the registry.

* consumption above the contracted power × margin (the ICP would have tripped);
* generation above the inverter rating (or plant peak) × margin;
* negative power on an import-only (consumption) meter beyond CT noise (reversed clamp);
* Modbus "not implemented" sentinels and NaN-like markers (0x8000, 0xFFFF, -999…);
* voltage, frequency, power factor and current outside what a low-voltage grid allows.
"""

from __future__ import annotations

from typing import Any

from ioe.reading import Reading
from ioe.registry import Community, Device
from streams.anomalies.config import OutOfRangeConfig
from streams.anomalies.lifecycle import CLEAR, Condition
from streams.anomalies.limits import CONTRACT_ROLES, power_limit_w

KIND = "out_of_range"
SENTINEL_FIELDS = ("power_w", "voltage_v", "current_a", "frequency_hz", "power_factor",
                   "energy_wh", "energy_returned_wh")


def check(cfg: OutOfRangeConfig, device: Device, community: Community,
          reading: Reading) -> Condition:
    problems: list[dict[str, Any]] = []
    critical = False
    sentinel_fields = set()
    for name in SENTINEL_FIELDS:
        value = getattr(reading, name)
        if value is not None and value in cfg.sentinels:
            problems.append({"problem": "sentinel", "field": name, "value": value})
            sentinel_fields.add(name)
    for name, (low, high) in cfg.ranges.items():
        value = getattr(reading, name, None)
        if value is not None and name not in sentinel_fields and not low <= value <= high:
            problems.append({"problem": "range", "field": name, "value": value,
                             "min": low, "max": high})
    power = reading.power_w
    if power is not None and "power_w" not in sentinel_fields:
        limit = power_limit_w(device, community)
        margin = cfg.contracted_margin if device.role in CONTRACT_ROLES else cfg.rated_margin
        if limit is not None and power > limit * margin:
            problems.append({"problem": "above_limit", "field": "power_w", "value": power,
                             "limit_w": limit, "margin": margin})
            critical = critical or power > limit * margin * cfg.critical_factor
        if device.role == "consumption" and power < -cfg.negative_tolerance_w:
            problems.append({"problem": "negative_consumption", "field": "power_w",
                             "value": power, "tolerance_w": cfg.negative_tolerance_w})
        if device.role == "generation":
            tolerance = max(cfg.generation_negative_tolerance_w, 0.02 * (limit or 0.0))
            if power < -tolerance:
                problems.append({"problem": "negative_generation", "field": "power_w",
                                 "value": power, "tolerance_w": tolerance})
    if not problems:
        return CLEAR
    return Condition(True, "critical" if critical else "warning", {"problems": problems})
