"""Generic JSON meters, configured instead of coded: a new brand needs registry lines, not code.

A registry device with ``protocol: {type: mqtt, decoder: json-map, topic: <MQTT filter>, …}``
describes where its values are in the JSON payload of matching topics::

    protocol:
      type: mqtt
      decoder: json-map
      topic: acme/+/meter42          # MQTT topic filter (+ and # allowed)
      ts: {path: data.t, format: s}  # s | ms | iso (optional: receipt time otherwise)
      fields:
        power_w: {path: data.p, unit: kW}
        energy_wh: {path: data.import, unit: kWh}
        voltage_v: data.u            # a bare path: already in the contract unit
        current_a: {path: data.i, scale: 0.001}

Paths are dot-separated keys; a number selects a list element (``phases.0.p``). Units are
checked against the field (a kWh cannot land in ``power_w``), ``scale`` multiplies after that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from paho.mqtt.client import topic_matches_sub

from .base import (
    DecodeContext,
    Decoded,
    DecodeError,
    has_measurement,
    load_json,
    number,
    reading,
)
from .local_time import local_to_utc_ms

SOURCE = "json-map"
DECODER_NAMES = ("json-map", "json_map")

#: contract field -> {unit: factor to the contract unit}
UNITS: dict[str, dict[str, float]] = {
    "power_w": {"W": 1.0, "kW": 1e3, "MW": 1e6},
    "energy_wh": {"Wh": 1.0, "kWh": 1e3, "MWh": 1e6},
    "energy_returned_wh": {"Wh": 1.0, "kWh": 1e3, "MWh": 1e6},
    "voltage_v": {"V": 1.0, "kV": 1e3},
    "current_a": {"A": 1.0, "mA": 1e-3},
    "frequency_hz": {"Hz": 1.0},
    "power_factor": {"": 1.0, "%": 0.01},
}
DEFAULT_UNIT = {"power_w": "W", "energy_wh": "Wh", "energy_returned_wh": "Wh", "voltage_v": "V",
                "current_a": "A", "frequency_hz": "Hz", "power_factor": ""}
TS_FORMATS = ("s", "ms", "iso")


class JsonMapConfigError(ValueError):
    pass


@dataclass(frozen=True)
class FieldSpec:
    path: tuple[str, ...]
    factor: float


@dataclass(frozen=True)
class JsonMap:
    device_id: str
    topic: str
    fields: Mapping[str, FieldSpec]
    ts_path: tuple[str, ...] | None = None
    ts_format: str = "s"


def parse_map(device_id: str, protocol: Mapping[str, Any]) -> JsonMap:
    """Validate one device's mapping; errors name the device and the key."""
    topic = protocol.get("topic")
    if not isinstance(topic, str) or not topic:
        raise JsonMapConfigError(f"device {device_id}: json-map needs a 'topic'")
    raw_fields = protocol.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        raise JsonMapConfigError(f"device {device_id}: json-map needs 'fields'")
    fields: dict[str, FieldSpec] = {}
    for target, spec in raw_fields.items():
        if target not in UNITS:
            raise JsonMapConfigError(f"device {device_id}: unknown field {target!r} "
                                     f"(one of {', '.join(UNITS)})")
        if isinstance(spec, str):
            spec = {"path": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
            raise JsonMapConfigError(f"device {device_id}: {target} needs a 'path'")
        unit = spec.get("unit", DEFAULT_UNIT[target])
        if unit not in UNITS[target]:
            raise JsonMapConfigError(f"device {device_id}: unit {unit!r} not valid for "
                                     f"{target} (one of {', '.join(UNITS[target])})")
        scale = spec.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise JsonMapConfigError(f"device {device_id}: {target}.scale must be a number")
        fields[target] = FieldSpec(tuple(spec["path"].split(".")),
                                   UNITS[target][unit] * float(scale))
    ts = protocol.get("ts")
    ts_path, ts_format = None, "s"
    if ts is not None:
        if isinstance(ts, str):
            ts = {"path": ts}
        if not isinstance(ts, dict) or not isinstance(ts.get("path"), str):
            raise JsonMapConfigError(f"device {device_id}: ts needs a 'path'")
        ts_format = ts.get("format", "s")
        if ts_format not in TS_FORMATS:
            raise JsonMapConfigError(f"device {device_id}: ts.format must be one of "
                                     f"{', '.join(TS_FORMATS)}")
        ts_path = tuple(ts["path"].split("."))
    return JsonMap(device_id, topic, fields, ts_path, ts_format)


def maps_from_devices(devices: Iterable[Any]) -> tuple[list[JsonMap], list[str]]:
    """The mappings of registry devices, plus one error message per invalid one."""
    maps, errors = [], []
    for device in devices:
        protocol = getattr(device, "protocol", None) or {}
        if protocol.get("type", "mqtt") != "mqtt" or protocol.get("decoder") not in DECODER_NAMES:
            continue
        try:
            maps.append(parse_map(device.id, protocol))
        except JsonMapConfigError as exc:
            errors.append(str(exc))
    return maps, errors


def matching(ctx: DecodeContext, topic: str) -> list[JsonMap]:
    return [m for m in ctx.json_maps if topic_matches_sub(m.topic, topic)]


def _get(document: Any, path: tuple[str, ...]) -> Any:
    value = document
    for key in path:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def decode(topic: str, payload: bytes, received_at_ms: int, ctx: DecodeContext) -> Decoded:
    document = load_json(payload)
    readings = []
    for spec in matching(ctx, topic):
        values = {}
        for target, field_spec in spec.fields.items():
            value = number(_get(document, field_spec.path), ".".join(field_spec.path))
            values[target] = None if value is None else value * field_spec.factor
        if not has_measurement(values):
            continue
        readings.append(reading(spec.device_id, _timestamp(spec, document, received_at_ms, ctx),
                                SOURCE, values))
    return Decoded.of(*readings)


def _timestamp(spec: JsonMap, document: Any, received_at_ms: int, ctx: DecodeContext) -> int:
    if spec.ts_path is None:
        return received_at_ms
    raw = _get(document, spec.ts_path)
    what = ".".join(spec.ts_path)
    if raw is None:
        raise DecodeError(f"timestamp {what} missing")
    if spec.ts_format == "iso":
        if not isinstance(raw, str):
            raise DecodeError(f"timestamp {what}: expected an ISO 8601 string, got {raw!r}")
        return local_to_utc_ms(raw.replace("Z", "+00:00"), ctx.timezone, received_at_ms)
    value = number(raw, what)
    assert value is not None
    return int(round(value * (1000 if spec.ts_format == "s" else 1)))
