"""A charger's bounds, the charging profile a limit becomes, and its read-back — pure.

Why a minimum as well as a maximum: IEC 61851-1 signals the allowed current on the control
pilot's PWM, and a duty cycle below 6 A is not a charging current (most cars stop or fault).
So the valid limits are ``0`` (pause: the charger suspends, ``SuspendedEVSE``) or a value in
``[min_current_a, max_current_a]``; anything else is refused before anything is sent. The bounds
come from the registry device's ``protocol`` and, where it says nothing, from :data:`DEFAULTS`.

Why every profile has a duration: a limit must not outlive the link that set it. The profile is
``TxDefaultProfile`` (it applies to the running and to the next transactions), ``Absolute``
from *now*, with ``duration`` and ``validTo`` both at now + the command's ``revert_s`` (or
``profile_s``): if the central system or the rule that renews it goes away, the charger drops
the profile by itself and falls back to its own default. The same ``chargingProfileId`` every
time, so a new limit replaces the previous one instead of piling up (OCPP 1.6 §3.13.3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ioe.registry import Device


class OutOfBounds(ValueError):
    """A limit this charger cannot take; the message says why (it becomes the refusal)."""


class RateUnit(StrEnum):
    """OCPP 1.6 ``ChargingRateUnitType``."""

    AMPS = "A"
    WATTS = "W"


#: control key → the unit its profile is written in
LIMIT_KEYS: Mapping[str, RateUnit] = {"ev_current_a": RateUnit.AMPS, "ev_power_w": RateUnit.WATTS}

#: what a registry charger that says nothing gets: the IEC 61851 minimum, the most common
#: wallbox rating (a lower default never overloads a circuit), single phase, 15 min profiles
DEFAULTS: Mapping[str, float] = {
    "connector": 1,
    "min_current_a": 6.0,
    "max_current_a": 16.0,
    "phases": 1,
    "voltage_v": 230.0,
    "profile_id": 17,
    "stack_level": 1,
    "profile_s": 900,
}
#: the longest a profile may last, whatever revert_s asks (a limit never outlives a day)
MAX_PROFILE_S = 24 * 3600
#: read-back tolerance: a charger may round to 0.1 A, W↔A conversions are not exact
TOLERANCE = 0.01


@dataclass(frozen=True)
class ChargerSpec:
    """One registry charger as the central system needs it."""

    device_id: str
    community_id: str
    charge_point: str
    connector: int
    min_current_a: float
    max_current_a: float
    phases: int
    voltage_v: float
    profile_id: int
    stack_level: int
    profile_s: int
    #: OCPP security profile 1: the *name* of the environment variable holding this charger's
    #: AuthorizationKey (HTTP Basic, user = charge point id); the key itself never sits in the
    #: registry, which is published on Kafka
    auth_key_env: str | None = None

    @classmethod
    def of(cls, device: Device) -> ChargerSpec:
        protocol = device.protocol

        def get(name: str) -> float:
            value = protocol.get(name, DEFAULTS[name])
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise OutOfBounds(f"{device.id}: protocol.{name} must be a number, got "
                                  f"{value!r}")
            return float(value)

        spec = cls(device.id, device.community_id, str(protocol.get("charge_point") or device.id),
                   int(get("connector")), get("min_current_a"), get("max_current_a"),
                   int(get("phases")), get("voltage_v"), int(get("profile_id")),
                   int(get("stack_level")), int(get("profile_s")),
                   str(protocol["auth_key_env"]) if protocol.get("auth_key_env") else None)
        if not 0 < spec.min_current_a <= spec.max_current_a or spec.phases not in (1, 2, 3):
            raise OutOfBounds(f"{device.id}: need 0 < min_current_a <= max_current_a and "
                              f"phases 1-3, got {spec.min_current_a:g}/{spec.max_current_a:g} A, "
                              f"{spec.phases} phases")
        return spec

    def watts_per_amp(self) -> float:
        return self.voltage_v * self.phases

    def bounds(self, unit: RateUnit) -> tuple[float, float]:
        scale = 1.0 if unit is RateUnit.AMPS else self.watts_per_amp()
        return self.min_current_a * scale, self.max_current_a * scale

    def check(self, key: str, value: float | str | None) -> float | None:
        """The limit in its key's unit (None: remove the limit), or :class:`OutOfBounds`."""
        unit = LIMIT_KEYS.get(key)
        if unit is None:
            raise OutOfBounds(f"{key} is not a charger setting (chargers take "
                              f"{', '.join(LIMIT_KEYS)})")
        if value is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise OutOfBounds(f"{key}: {value!r} is not a number") from None
        low, high = self.bounds(unit)
        if not math.isfinite(number) or number < 0:
            raise OutOfBounds(f"{key}: {value!r} is not a limit")
        if number == 0:
            return 0.0
        if number < low:
            raise OutOfBounds(f"{key}: {number:g} {unit} is below {self.device_id}'s minimum "
                              f"{low:g} {unit} (IEC 61851: 0 pauses, nothing in between)")
        if number > high:
            raise OutOfBounds(f"{key}: {number:g} {unit} is above {self.device_id}'s maximum "
                              f"{high:g} {unit}")
        return number

    def to_unit(self, value: float, source: RateUnit, target: RateUnit) -> float:
        if source is target:
            return value
        return value * self.watts_per_amp() if target is RateUnit.WATTS else (
            value / self.watts_per_amp())


def iso(ts_ms: int) -> str:
    """OCPP's dateTime: UTC, ``Z``, milliseconds."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def parse_time(text: str) -> int:
    """An OCPP dateTime as UTC milliseconds; a time without offset is taken as UTC (OCPP 1.6
    requires UTC, and some chargers drop the ``Z``)."""
    moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class ProfilePlan:
    """The ``SetChargingProfile`` of one limit, before it becomes the library's dataclasses."""

    connector: int
    profile_id: int
    stack_level: int
    unit: RateUnit
    limit: float
    phases: int
    start_ms: int
    duration_s: int

    @property
    def valid_to_ms(self) -> int:
        return self.start_ms + self.duration_s * 1000

    def profile(self) -> dict[str, Any]:
        """``csChargingProfiles`` exactly as it goes on the wire (also the ``written`` record)."""
        return {
            "chargingProfileId": self.profile_id,
            "stackLevel": self.stack_level,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "validFrom": iso(self.start_ms),
            "validTo": iso(self.valid_to_ms),
            "chargingSchedule": {
                "duration": self.duration_s,
                "startSchedule": iso(self.start_ms),
                "chargingRateUnit": str(self.unit),
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": self.limit,
                                            "numberPhases": self.phases}],
            },
        }


def plan(spec: ChargerSpec, key: str, limit: float, now_ms: int,
         revert_s: int | None) -> ProfilePlan:
    """The profile of a checked limit; its duration is ``revert_s`` when given (0 or None: the
    charger's ``profile_s``), never more than :data:`MAX_PROFILE_S`."""
    duration = revert_s if revert_s else spec.profile_s
    return ProfilePlan(spec.connector, spec.profile_id, spec.stack_level, LIMIT_KEYS[key],
                       round(limit, 1), spec.phases, now_ms - now_ms % 1000,
                       max(1, min(int(duration), MAX_PROFILE_S)))


@dataclass(frozen=True)
class Period:
    start_s: int
    limit: float


@dataclass(frozen=True)
class Composite:
    """A ``GetCompositeSchedule.conf``: what the charger will actually allow, from when."""

    unit: RateUnit
    start_ms: int
    periods: tuple[Period, ...]
    duration_s: int | None = None

    @classmethod
    def of(cls, schedule_start: str | None, schedule: Mapping[str, Any] | None,
           now_ms: int) -> Composite | None:
        """From the library's snake_case answer; None when the charger has no schedule."""
        if not schedule:
            return None
        raw_periods: Sequence[Mapping[str, Any]] = schedule.get("charging_schedule_period") or ()
        start = schedule.get("start_schedule") or schedule_start
        periods = tuple(sorted((Period(int(p["start_period"]), float(p["limit"]))
                                for p in raw_periods), key=lambda p: p.start_s))
        return cls(RateUnit(schedule.get("charging_rate_unit", "A")),
                   parse_time(start) if start else now_ms, periods, schedule.get("duration"))

    def limit_at(self, ts_ms: int) -> float | None:
        elapsed = (ts_ms - self.start_ms) / 1000
        if self.duration_s is not None and elapsed >= self.duration_s:
            return None
        current = [p.limit for p in self.periods if p.start_s <= max(elapsed, 0)]
        return current[-1] if current else None


def readback(spec: ChargerSpec, composite: Composite | None, unit: RateUnit,
             now_ms: int) -> float | None:
    """The limit the charger reports in force now, in ``unit`` (None: no limit reported)."""
    if composite is None:
        return None
    limit = composite.limit_at(now_ms)
    if limit is None:
        return None
    return round(spec.to_unit(limit, composite.unit, unit), 1)


def holds(requested: float | None, reported: float | None, spec: ChargerSpec,
          unit: RateUnit) -> bool:
    """Whether the read-back shows what was asked. For a removed limit (``requested`` None):
    no limit reported, or none below the charger's maximum."""
    if requested is None:
        return reported is None or reported >= spec.bounds(unit)[1] * (1 - TOLERANCE)
    if reported is None:
        return False
    return abs(reported - requested) <= max(TOLERANCE * requested, 0.05)
