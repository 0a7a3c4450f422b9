"""Frozen meter: a device that keeps publishing the very same values for implausibly long.

Real meters have noise: a household's power changes by tenths of a watt from one reading to the
next, an inverter follows the sun, counters advance. Identical power *and* counters for hours
mean the device repeats a stale value (hung firmware, a gateway replaying its cache).
Idle readings (|P| ≤ ``idle_w``: PV at night, a switched-off house) are never frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ioe.reading import Reading
from ioe.registry import Device
from streams.anomalies.config import FrozenConfig
from streams.anomalies.lifecycle import CLEAR, Condition

KIND = "frozen"
#: a non-idle streak this long already makes the device's energy suspect (see divergence)
SUSPECT_AFTER_S = 600.0


@dataclass
class FrozenState:
    signature: list[Any] | None = None
    since_ms: int | None = None
    idle: bool = True


def _signature(reading: Reading) -> list[Any]:
    return [reading.power_w, reading.energy_wh, reading.energy_returned_wh, reading.voltage_v,
            reading.current_a]


def check(cfg: FrozenConfig, state: FrozenState, device: Device,
          reading: Reading) -> Condition | None:
    if reading.power_w is None and reading.energy_wh is None:
        return None  # nothing to judge (a status-only message)
    signature = _signature(reading)
    state.idle = reading.power_w is None or abs(reading.power_w) <= cfg.idle_w
    if signature != state.signature or state.since_ms is None:
        state.signature, state.since_ms = signature, reading.ts_ms
        return CLEAR
    if state.idle:
        return CLEAR
    unchanged_s = (reading.ts_ms - state.since_ms) / 1000
    window_s = cfg.window_s(device.role)
    if unchanged_s <= window_s:
        return CLEAR
    return Condition(True, "warning", {"unchanged_s": unchanged_s, "window_s": window_s,
                                       "since_ms": state.since_ms, "power_w": reading.power_w,
                                       "energy_wh": reading.energy_wh})


def suspect_since(state: FrozenState) -> int | None:
    """Start of the current non-idle run of identical values (None when values move)."""
    if state.idle or state.since_ms is None:
        return None
    return state.since_ms
