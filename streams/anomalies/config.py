"""Detector parameters: one dataclass per detector, overridable from a dict or a YAML file.

Defaults are chosen for household meters and small PV inverters reporting every 10–60 s; an
operator tunes them per deployment without touching code (``AnomalyConfig.from_yaml``).
Every detector also has a :class:`Hysteresis`: how long its condition must hold before an alarm
opens and how long it must be clear before it closes, which is what prevents flapping.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Hysteresis:
    """Open after ``open_n`` consecutive positive evaluations spanning ``open_s`` seconds;
    close after ``close_n`` consecutive clear evaluations spanning ``close_s`` seconds."""

    open_n: int = 1
    open_s: float = 0.0
    close_n: int = 1
    close_s: float = 0.0


@dataclass(frozen=True)
class OfflineConfig:
    #: a device is offline after k × its registry ``expected_interval_s`` without a reading
    k: float = 3.0
    #: never declare offline faster than this (a 1 s device with a 2 s hiccup is not offline)
    min_silence_s: float = 60.0
    #: protocols whose devices deliver in batches (Datadis: D+1…D+30) and cannot be "offline"
    batch_protocols: tuple[str, ...] = ("datadis",)
    hysteresis: Hysteresis = Hysteresis(open_n=1, close_n=1)

    def window_s(self, interval_s: float) -> float:
        return max(self.k * interval_s, self.min_silence_s)


@dataclass(frozen=True)
class FrozenConfig:
    #: longest plausible run of identical readings per role (seconds); a household meter with
    #: 0.1 W resolution never repeats the same power for hours, an inverter follows the sun
    max_unchanged_s: dict[str, float] = field(default_factory=lambda: {
        "consumption": 7200.0, "grid": 7200.0, "generation": 3600.0, "storage": 7200.0})
    #: readings at |P| ≤ this are "idle" (PV asleep at night drawing a constant few W, a
    #: switched-off house): never frozen
    idle_w: float = 10.0
    hysteresis: Hysteresis = Hysteresis(open_n=1, close_n=2)

    def window_s(self, role: str) -> float:
        return self.max_unchanged_s.get(role, 7200.0)


@dataclass(frozen=True)
class OutOfRangeConfig:
    #: consumption above contracted power × margin (the ICP trips a little above contracted)
    contracted_margin: float = 1.3
    #: generation above rated (or plant peak) power × margin
    rated_margin: float = 1.15
    #: an import-only (consumption) meter may read slightly negative from CT noise
    negative_tolerance_w: float = 30.0
    #: an inverter draws a little at night; below −max(this, 2 % of rated) is impossible
    generation_negative_tolerance_w: float = 50.0
    #: values devices use for "no data" (Modbus 0x8000, 0xFFFF, 0x7FFF…, sentinel -999)
    sentinels: tuple[float, ...] = (
        -32768.0, 32767.0, 65535.0, -2147483648.0, 2147483647.0, 4294967295.0, -999.0,
        -9999.0, 9999.0)
    #: plausible ranges of the electrical quantities (min, max)
    ranges: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "voltage_v": (150.0, 280.0), "frequency_hz": (45.0, 55.0),
        "power_factor": (-1.0001, 1.0001), "current_a": (-200.0, 200.0)})
    #: above limit × this factor the alarm is critical rather than warning
    critical_factor: float = 2.0
    hysteresis: Hysteresis = Hysteresis(open_n=2, close_n=3)


@dataclass(frozen=True)
class CounterConfig:
    #: a counter may step back this much (rounding, float re-encoding) without alarm
    backwards_tolerance_wh: float = 1.0
    #: new value below this fraction of the old one (or below reset_floor_wh) = a reset to zero
    reset_fraction: float = 0.01
    reset_floor_wh: float = 1000.0
    #: counter moduli of common registers (Wh): an old value within wrap_margin of one = a wrap
    wrap_moduli_wh: tuple[float, ...] = (65535.0, 4294967295.0, 99999999.0, 999999999.0)
    wrap_margin: float = 0.02
    #: a jump implies impossible power when delta/dt > limit × jump_margin and delta > min
    jump_margin: float = 1.5
    min_jump_wh: float = 100.0
    #: fallback power limit (W) when neither contracted nor rated power is known
    default_limit_w: float = 15000.0
    hysteresis: Hysteresis = Hysteresis(open_n=1, close_n=1, close_s=900.0)


@dataclass(frozen=True)
class NightConfig:
    #: the sun is down below this elevation (degrees); civil twilight gives no usable PV
    max_elevation_deg: float = -2.0
    #: standby noise tolerated at night: max(this, standby_fraction × rated)
    standby_w: float = 50.0
    standby_fraction: float = 0.005
    hysteresis: Hysteresis = Hysteresis(open_n=3, open_s=300.0, close_n=3, close_s=600.0)


@dataclass(frozen=True)
class UnderperformanceConfig:
    #: only compare when the sun is high enough for orientations not to dominate
    min_elevation_deg: float = 15.0
    #: and the peers produce at least this fraction of their rating (enough light to judge)
    min_peer_ratio: float = 0.08
    #: underperforming: own ratio below this fraction of the peers' median ratio
    peer_fraction: float = 0.6
    #: ratios are smoothed (EWMA, this time constant) before comparing: readings of different
    #: inverters are not simultaneous, and a cloud edge between two of them is not a fault
    smoothing_s: float = 300.0
    #: judge only when at least this share of the other generators is a usable reference
    min_peer_share: float = 0.5
    #: peers' readings older than this are not used
    peer_max_age_s: float = 300.0
    #: a lone inverter is "dead" below this fraction of the clear-sky bound at high sun
    lone_clear_sky_fraction: float = 0.02
    lone_min_elevation_deg: float = 30.0
    #: below this fraction of the peers' median the alarm is critical
    critical_fraction: float = 0.1
    hysteresis: Hysteresis = Hysteresis(open_n=5, open_s=1800.0, close_n=5, close_s=900.0)


@dataclass(frozen=True)
class InverterStatusConfig:
    #: status categories that raise an alarm, with their severity; "off" only counts by day
    severity_by_category: dict[str, str] = field(default_factory=lambda: {
        "fault": "critical", "shutdown": "warning", "off": "warning"})
    off_min_elevation_deg: float = 5.0
    hysteresis: Hysteresis = Hysteresis(open_n=2, close_n=3)


@dataclass(frozen=True)
class DivergenceConfig:
    #: |meter − official| above max(abs_tolerance_wh, rel_tolerance × official) diverges
    abs_tolerance_wh: float = 50.0
    rel_tolerance: float = 0.10
    #: hours are also judged summed over the trailing window: a 45 % error on a household
    #: drawing 90 Wh/h hides inside the per-hour absolute tolerance, not inside six hours
    aggregate_hours: int = 6
    #: meter hour counted only when readings cover this fraction of it
    min_coverage: float = 0.9
    #: compare the engine's own meter-derived hours with Datadis readings as they arrive
    from_readings: bool = True
    #: hours of meter energy kept per member (Datadis arrives D+1…D+30)
    keep_hours: int = 24 * 35
    hysteresis: Hysteresis = Hysteresis(open_n=3, close_n=6)


@dataclass(frozen=True)
class RegistryCheckConfig:
    sum_tolerance: float = 1e-6
    #: a member with no reading from any of its devices for this long has "no data"
    member_silence_s: float = 6 * 3600.0
    hysteresis: Hysteresis = Hysteresis(open_n=1, close_n=1)


@dataclass(frozen=True)
class AnomalyConfig:
    offline: OfflineConfig = OfflineConfig()
    frozen: FrozenConfig = FrozenConfig()
    out_of_range: OutOfRangeConfig = OutOfRangeConfig()
    counter: CounterConfig = CounterConfig()
    night: NightConfig = NightConfig()
    underperformance: UnderperformanceConfig = UnderperformanceConfig()
    inverter_status: InverterStatusConfig = InverterStatusConfig()
    divergence: DivergenceConfig = DivergenceConfig()
    registry: RegistryCheckConfig = RegistryCheckConfig()

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AnomalyConfig:
        """Overlay ``data`` (possibly partial, e.g. ``{"offline": {"k": 5}}``) on the defaults."""
        return _overlay(cls(), data or {})

    @classmethod
    def from_yaml(cls, path: str | Path) -> AnomalyConfig:
        return cls.from_dict(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _overlay(obj: Any, data: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"expected a mapping for {type(obj).__name__}, got {data!r}")
    known = {f.name: f for f in dataclasses.fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"{type(obj).__name__}: unknown setting {key!r}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _overlay(current, value)
        elif isinstance(current, dict):
            changes[key] = {**current, **{k: (tuple(v) if isinstance(v, list) else v)
                                          for k, v in value.items()}}
        elif isinstance(current, tuple):
            changes[key] = tuple(value)
        else:
            changes[key] = type(current)(value) if current is not None else value
    return dataclasses.replace(obj, **changes)
