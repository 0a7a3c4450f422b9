"""The reading contract (DESIGN.md §3): the one message every connector produces.

Connectors normalise units *before* building a :class:`Reading`, so the streams never guess.
Validation is strict on purpose: a reading that is wrong here would silently corrupt a
settlement later, so it is refused with an error that names the field and goes to the
dead-letter topic instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import orjson

CONTRACT_VERSION = 1

#: 2000-01-01T00:00:00Z: anything earlier is a device with an unset clock.
MIN_TS_MS = 946_684_800_000
#: How far in the future a timestamp may be before it is a clock error.
MAX_FUTURE_MS = 24 * 3600 * 1000

QUALITIES = ("measured", "estimated", "interpolated")

#: below this a voltage is not a connected line (a floating input reads a few volts of noise;
#: Tasmota reports 0.00 V when its voltage sensor is absent or not calibrated, an inverter
#: asleep at night reports 0 V on its AC side)
MIN_CONNECTED_V = 20.0
FREQ_RANGE_HZ = (40.0, 70.0)
PF_RANGE = (-1.0, 1.0)


def plausible_voltage(voltage: float | None) -> bool:
    return voltage is not None and voltage >= MIN_CONNECTED_V


def auxiliary_checked(values: Mapping[str, Any]) -> dict[str, Any]:
    """The one rule for implausible auxiliary values, applied by every connector (the MQTT
    decoders, the Modbus edge) before it builds a reading, so a 0 V beside 47 W means the
    same whichever protocol it came by.

    Voltage, frequency and power factor describe the line, they are not what is settled: a
    value that cannot be a connected line (under 20 V, a frequency outside 40–70 Hz, a power
    factor outside ±1) is noise of an unconnected or uncalibrated input, so it is dropped —
    the power and energy of the same reading are kept. An unconnected line has no frequency
    either. Power, energy and current are never touched here: 0 W is a real measurement. It
    is not part of :meth:`Reading.from_dict` because that refuses, it never edits: a reading
    on the wire is taken as its producer sent it.
    """
    checked = dict(values)
    voltage = checked.get("voltage_v")
    if voltage is not None and not plausible_voltage(voltage):
        checked["voltage_v"] = None
        checked["frequency_hz"] = None
    freq = checked.get("frequency_hz")
    if freq is not None and not FREQ_RANGE_HZ[0] <= freq <= FREQ_RANGE_HZ[1]:
        checked["frequency_hz"] = None
    pf = checked.get("power_factor")
    if pf is not None and not PF_RANGE[0] <= pf <= PF_RANGE[1]:
        checked["power_factor"] = None
    return checked


class ReadingError(ValueError):
    """A reading that breaks the contract; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Reading:
    device_id: str
    ts_ms: int
    source: str
    community_id: str | None = None
    power_w: float | None = None
    energy_wh: float | None = None
    energy_returned_wh: float | None = None
    interval_s: int | None = None
    interval_energy_wh: float | None = None
    interval_energy_returned_wh: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    frequency_hz: float | None = None
    power_factor: float | None = None
    status: str | None = None
    quality: str = "measured"
    v: int = CONTRACT_VERSION

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, *, now_ms: int | None = None) -> Reading:
        """Build a reading from decoded JSON, refusing anything outside the contract."""
        if not isinstance(data, dict):
            raise ReadingError("$", f"expected a JSON object, got {type(data).__name__}")
        unknown = set(data) - _FIELD_NAMES
        if unknown:
            raise ReadingError(sorted(unknown)[0], "unknown field")
        values: dict[str, Any] = {}
        for name, check in _CHECKS.items():
            if name in data:
                values[name] = check(name, data[name])
        for name in ("device_id", "ts_ms", "source"):
            if values.get(name) is None:
                raise ReadingError(name, "required field is missing")
        if values.get("v", CONTRACT_VERSION) != CONTRACT_VERSION:
            raise ReadingError("v", f"unsupported contract version {values['v']}")
        reading = cls(**values)
        reading.check_time(now_ms)
        reading.check_interval()
        return reading

    def check_time(self, now_ms: int | None = None) -> None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if self.ts_ms < MIN_TS_MS:
            raise ReadingError("ts_ms", f"{self.ts_ms} is before 2000-01-01 (device clock unset?)")
        if self.ts_ms > now + MAX_FUTURE_MS:
            raise ReadingError("ts_ms", f"{self.ts_ms} is more than one day in the future")

    def check_interval(self) -> None:
        has_interval_energy = (
            self.interval_energy_wh is not None or self.interval_energy_returned_wh is not None
        )
        if has_interval_energy and not self.interval_s:
            raise ReadingError("interval_s", "interval energy given without interval_s")
        if self.interval_s is not None and self.interval_s <= 0:
            raise ReadingError("interval_s", "must be positive")

    def check(self, *, now_ms: int | None = None) -> None:
        """The contract checks on a reading built directly by a connector, in place: the
        same field table as :meth:`from_dict`, without a round trip through a dict (the MQTT
        bridge validates every reading it produces)."""
        for name, check in _CHECKS.items():
            value = getattr(self, name)
            if value is not None:
                check(name, value)
        for name in ("device_id", "ts_ms", "source"):
            if getattr(self, name) is None:
                raise ReadingError(name, "required field is missing")
        if self.v != CONTRACT_VERSION:
            raise ReadingError("v", f"unsupported contract version {self.v}")
        self.check_time(now_ms)
        self.check_interval()

    def validated(self, *, now_ms: int | None = None) -> Reading:
        """The reading itself once :meth:`check` passed (numbers as floats, like
        :meth:`from_dict` gives them)."""
        self.check(now_ms=now_ms)
        return Reading.from_dict(self.to_dict(), now_ms=now_ms) if _has_int_floats(self) else self

    # -- (de)serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Only the fields that carry a value: readings are small and frequent."""
        # getattr over the fields, not dataclasses.asdict: asdict deep-copies and was the
        # largest cost in the MQTT bridge's profile
        return {name: value for name in _FIELD_ORDER
                if (value := getattr(self, name)) is not None}

    def to_json(self) -> bytes:
        return encode(self)

    @classmethod
    def from_json(cls, raw: bytes | str, *, now_ms: int | None = None) -> Reading:
        return decode(raw, now_ms=now_ms)

    def with_community(self, community_id: str | None) -> Reading:
        return _replace(self, community_id=community_id)


def encode(reading: Reading) -> bytes:
    return orjson.dumps(reading.to_dict())


def decode(raw: bytes | str, *, now_ms: int | None = None) -> Reading:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ReadingError("$", f"not valid JSON: {exc}") from None
    return Reading.from_dict(data, now_ms=now_ms)


def _replace(reading: Reading, **changes: Any) -> Reading:
    data = {name: getattr(reading, name) for name in _FIELD_ORDER}
    data.update(changes)
    return Reading(**data)


def _has_int_floats(reading: Reading) -> bool:
    """A float field holding an int (a decoder passed ``5`` for 5.0 W): :meth:`from_dict`
    would normalise it, so the validated reading must be rebuilt to encode the same bytes."""
    return any(type(getattr(reading, name)) is int for name in _FLOAT_FIELDS)


# -- field checks (a table, not a chain of ifs) ----------------------------------------------
def _str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ReadingError(name, f"expected a non-empty string, got {value!r}")
    if len(value) > 200:
        raise ReadingError(name, "longer than 200 characters")
    return value


def _opt_str(name: str, value: Any) -> str | None:
    return None if value is None else _str(name, value)


def _int(name: str, value: Any) -> int:
    # bool is an int in Python; a JSON true is never a valid timestamp or count
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReadingError(name, f"expected an integer, got {value!r}")
    return value


def _opt_int(name: str, value: Any) -> int | None:
    return None if value is None else _int(name, value)


def _opt_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReadingError(name, f"expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ReadingError(name, f"must be finite, got {value!r}")
    return number


def _quality(name: str, value: Any) -> str:
    if value not in QUALITIES:
        raise ReadingError(name, f"must be one of {', '.join(QUALITIES)}, got {value!r}")
    return str(value)


_CHECKS = {
    "v": _int,
    "device_id": _str,
    "community_id": _opt_str,
    "ts_ms": _int,
    "source": _str,
    "power_w": _opt_float,
    "energy_wh": _opt_float,
    "energy_returned_wh": _opt_float,
    "interval_s": _opt_int,
    "interval_energy_wh": _opt_float,
    "interval_energy_returned_wh": _opt_float,
    "voltage_v": _opt_float,
    "current_a": _opt_float,
    "frequency_hz": _opt_float,
    "power_factor": _opt_float,
    "status": _opt_str,
    "quality": _quality,
}
_FIELD_ORDER = tuple(f.name for f in fields(Reading))
_FIELD_NAMES = frozenset(_FIELD_ORDER)
_FLOAT_FIELDS = tuple(name for name, check in _CHECKS.items() if check is _opt_float)
assert set(_CHECKS) == _FIELD_NAMES, "every contract field needs a check"
