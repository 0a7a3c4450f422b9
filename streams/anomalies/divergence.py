"""Monitoring vs official divergence: meter-derived hourly energy against Datadis.

The distributor's meter (Datadis) is the settlement truth; the community's own meter should
agree within a tolerance for the same member-hour. Systematic disagreement means a
miscalibrated meter, a wrong CT ratio or a meter assigned to the wrong member.

``MeterHours`` accumulates, per device, the energy of each hour from the cumulative counter
(falling back to power integration when there is no counter) and how much of the hour the
readings cover. The energy of each reading pair inside an hour is the one meter-hour function
of the code base, :mod:`streams.energy.intervals` (the balances use it too); hours that are not well covered, or during which the device had a data-quality
problem (offline, frozen, counter trouble), are not compared: that problem has its own alarm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ioe.reading import Reading
from streams.anomalies.config import DivergenceConfig
from streams.anomalies.lifecycle import CLEAR, Condition
from streams.energy.intervals import counter_energy, power_energy

KIND = "divergence"
HOUR_MS = 3_600_000


@dataclass
class MeterHours:
    #: hour start (UTC ms, as str for JSON) -> [energy_wh, covered_s]
    hours: dict[str, list[float]] = field(default_factory=dict)
    last_ts_ms: int | None = None
    last_energy_wh: float | None = None
    last_power_w: float | None = None
    #: hour starts during which the device's data was suspect
    tainted: list[int] = field(default_factory=list)

    def add(self, reading: Reading, max_gap_s: float, keep_hours: int) -> None:
        ts = reading.ts_ms
        if self.last_ts_ms is not None and ts <= self.last_ts_ms:
            return
        if self.last_ts_ms is not None:
            gap_ok = (ts - self.last_ts_ms) / 1000 <= max_gap_s
            if reading.energy_wh is not None and self.last_energy_wh is not None:
                # the counter's increase is measured energy even across a long gap (the
                # coverage says the hour is not comparable); a reset contributes nothing
                pair = [(self.last_ts_ms, self.last_energy_wh), (ts, reading.energy_wh)]
                self._spread(self.last_ts_ms, ts, gap_ok,
                             lambda lo, hi: counter_energy(pair, lo, hi).wh)
            elif self.last_power_w is not None and reading.power_w is not None:
                power = [(self.last_ts_ms, self.last_power_w), (ts, reading.power_w)]
                self._spread(self.last_ts_ms, ts, gap_ok, lambda lo, hi: power_energy(
                    power, lo, hi, max_gap_ms=int(max_gap_s * 1000), part="positive").wh)
        self.last_ts_ms = ts
        if reading.energy_wh is not None:
            self.last_energy_wh = reading.energy_wh
        self.last_power_w = reading.power_w
        if len(self.hours) > keep_hours:
            for key in sorted(self.hours, key=int)[: len(self.hours) - keep_hours]:
                del self.hours[key]
            horizon = int(min(self.hours, key=int))
            self.tainted = [h for h in self.tainted if h >= horizon]

    def _spread(self, start: int, end: int, covered: bool,
                energy: Callable[[int, int], float]) -> None:
        """Add the energy of the reading pair [start, end) to each hour it spans
        (``energy(lo, hi)``: the pair's energy inside [lo, hi))."""
        cursor = start
        while cursor < end:
            hour = cursor - cursor % HOUR_MS
            stop = min(end, hour + HOUR_MS)
            slot = self.hours.setdefault(str(hour), [0.0, 0.0])
            slot[0] += energy(hour, hour + HOUR_MS)
            if covered:
                slot[1] += (stop - cursor) / 1000
            cursor = stop

    def taint(self, start_ms: int, end_ms: int) -> None:
        hour = start_ms - start_ms % HOUR_MS
        while hour <= end_ms:
            if hour not in self.tainted:
                self.tainted.append(hour)
            hour += HOUR_MS
        if len(self.tainted) > 2000:
            del self.tainted[: len(self.tainted) - 2000]

    def hour(self, hour_start_ms: int) -> tuple[float, float, bool]:
        """(energy_wh, coverage 0…1, tainted) of one hour."""
        energy, covered = self.hours.get(str(hour_start_ms), [0.0, 0.0])
        return energy, min(covered / 3600, 1.0), hour_start_ms in self.tainted


def _diverges(cfg: DivergenceConfig, meter_wh: float, official_wh: float) -> bool:
    tolerance = max(cfg.abs_tolerance_wh, cfg.rel_tolerance * abs(official_wh))
    return abs(meter_wh - official_wh) > tolerance


def check(cfg: DivergenceConfig, meter_wh: float, official_wh: float,
          evidence: dict[str, Any] | None = None,
          recent: list[list[float]] | None = None) -> Condition:
    """Judge one member-hour, and the trailing window ``recent`` ([[hour, meter, official]…],
    this hour included) as a whole."""
    hour_bad = _diverges(cfg, meter_wh, official_wh)
    window_meter = sum(r[1] for r in recent or [])
    window_official = sum(r[2] for r in recent or [])
    window_bad = bool(recent) and len(recent) > 1 and _diverges(cfg, window_meter,
                                                                 window_official)
    if not hour_bad and not window_bad:
        return CLEAR
    ratio = meter_wh / official_wh if official_wh > 0 else None
    return Condition(True, "warning", {
        **(evidence or {}), "meter_wh": round(meter_wh, 3), "official_wh": official_wh,
        "difference_wh": round(meter_wh - official_wh, 3),
        "tolerance_wh": max(cfg.abs_tolerance_wh, cfg.rel_tolerance * abs(official_wh)),
        "ratio": round(ratio, 4) if ratio is not None else None,
        "window_hours": len(recent or []), "window_meter_wh": round(window_meter, 3),
        "window_official_wh": window_official})
