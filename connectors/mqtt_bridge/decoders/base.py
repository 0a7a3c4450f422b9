"""What every decoder shares: the outcome types, the decode error and small value helpers.

A decoder is a pure function ``(topic, payload, received_at_ms, context) -> Decoded``. It either
returns readings, or says explicitly why a well-formed message carries none (availability, a
field we deliberately do not use…), or raises :class:`DecodeError`. There is no fourth way out,
which is what lets the bridge account for every message it receives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson

# the one rule for implausible auxiliary values lives with the contract: the Modbus edge
# applies the same one
from ioe.reading import Reading, auxiliary_checked, plausible_voltage

#: Reasons a well-formed message yields no reading (the label of the "ignored" counter).
IGNORE_REASONS = (
    "availability",    # online/offline, LWT: device state, not a measurement
    "retained",        # replayed by the broker on (re)subscribe: not fresh
    "unused_field",    # a value we deliberately do not use (watt-minutes, temperatures…)
    "no_measurement",  # a valid message without any energy quantity (switch state…)
    "not_a_reading",   # protocol chatter (RPC replies, events, bridge logs…)
    "attribute_copy",  # Zigbee2MQTT per-attribute copy of a value its JSON state carries
    "rate_limited",    # a dead letter of an origin already sampled in this window (counted)
)

class DecodeError(ValueError):
    """The payload does not match the format its topic promises (``reason`` decode_error), or
    the topic is inside a family but no decoder knows it (``reason`` no_decoder)."""

    def __init__(self, detail: str, reason: str = "decode_error") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Decoded:
    readings: tuple[Reading, ...] = ()
    #: set (one of IGNORE_REASONS) when there are deliberately no readings
    ignored: str | None = None

    @staticmethod
    def of(*readings: Reading) -> Decoded:
        return Decoded(readings=tuple(readings)) if readings else Decoded(ignored="no_measurement")

    @staticmethod
    def ignore(reason: str) -> Decoded:
        assert reason in IGNORE_REASONS, reason
        return Decoded(ignored=reason)


@dataclass
class DecodeContext:
    """Configuration and per-device state shared by the decoders of one bridge."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Madrid"))
    #: decoder name -> its private state (e.g. the last known Shelly Gen2 component values)
    state: dict[str, dict[Any, Any]] = field(default_factory=dict)
    #: generic JSON mappings (see json_map.py), normally built from the registry
    json_maps: tuple[Any, ...] = ()
    #: decoder routes of registry devices (see routes.py), most specific first
    routes: tuple[Any, ...] = ()

    def state_of(self, decoder: str) -> dict[Any, Any]:
        return self.state.setdefault(decoder, {})


DecodeFn = Callable[[str, bytes, int, DecodeContext], Decoded]


# -- value helpers ---------------------------------------------------------------------------
def load_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"payload is not valid JSON: {exc}") from None


def load_object(payload: bytes) -> dict[str, Any]:
    data = load_json(payload)
    if not isinstance(data, dict):
        raise DecodeError(f"expected a JSON object, got {type(data).__name__}")
    return data


def number(value: Any, what: str) -> float | None:
    """A JSON number as float; ``None`` stays ``None`` (devices send nulls for unknown values)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(f"{what}: expected a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise DecodeError(f"{what}: not a finite number ({value!r})")
    return result


def text_number(payload: bytes, what: str) -> float:
    """A plain-text number payload such as ``b"123.45"`` (Shelly Gen1, emonhub)."""
    try:
        text = payload.decode("ascii").strip()
        result = float(text)
    except (UnicodeDecodeError, ValueError):
        raise DecodeError(f"{what}: expected a plain number, got {payload[:40]!r}") from None
    if not math.isfinite(result) or text.lower() in ("nan", "inf", "-inf", "infinity"):
        raise DecodeError(f"{what}: not a finite number ({text!r})")
    return result


def scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def epoch_seconds_to_ms(value: Any, what: str) -> int:
    seconds = number(value, what)
    if seconds is None:
        raise DecodeError(f"{what}: timestamp is null")
    return int(round(seconds * 1000))


def reading(device_id: str, ts_ms: int, source: str, values: Mapping[str, Any]) -> Reading:
    """Build a reading, dropping the fields that carry no value (and, by the one rule of
    :func:`auxiliary_checked`, the auxiliary values that cannot be real)."""
    return Reading(device_id=device_id, ts_ms=ts_ms, source=source,
                   **{k: v for k, v in auxiliary_checked(values).items() if v is not None})


def has_measurement(values: Mapping[str, Any]) -> bool:
    return any(v is not None for v in auxiliary_checked(values).values())


def phase_sum(value: Any, what: str) -> float | None:
    """A scalar, or a per-phase/per-channel array that adds up (power, energy, current)."""
    if isinstance(value, list):
        parts = [number(v, f"{what}[{i}]") for i, v in enumerate(value)]
        known = [p for p in parts if p is not None]
        return sum(known) if known else None
    return number(value, what)


def phase_mean(value: Any, what: str) -> float | None:
    """A scalar, or a per-phase array averaged over the connected phases (voltage)."""
    if isinstance(value, list):
        parts = [number(v, f"{what}[{i}]") for i, v in enumerate(value)]
        connected = [p for p in parts if p is not None and plausible_voltage(p)]
        return sum(connected) / len(connected) if connected else None
    return number(value, what)
