"""Zigbee2MQTT metering plugs: ``zigbee2mqtt/<friendly_name>`` JSON state.

``power`` W, ``energy`` kWh (→ Wh), ``voltage`` V, ``current`` A; every other key (state,
linkquality, …) and every null is ignored. Friendly names may contain ``/``. ``last_seen``
(when the bridge is configured to send it, as epoch ms or ISO 8601) is the measurement time.
``…/availability`` is availability; ``zigbee2mqtt/bridge/…`` and ``…/set|get`` are not readings.

With ``output: attribute`` or ``attribute_and_json`` Zigbee2MQTT also publishes every attribute
on its own topic, ``zigbee2mqtt/<name>/<attribute>`` with a bare value (``12.05``, ``ON``).
Such a value is never a decode error: a metering attribute of a device that does not publish
its JSON state (``output: attribute``) becomes a reading with that one field; beside a JSON
state (``attribute_and_json``) it is an explicit ``attribute_copy`` (the state carries it); any
other attribute is an ``unused_field``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .base import (
    DecodeContext,
    Decoded,
    DecodeError,
    has_measurement,
    load_object,
    number,
    reading,
    scaled,
)

SOURCE = "zigbee2mqtt"
PREFIX = "zigbee2mqtt/"
#: JSON key -> (contract field, factor)
FIELDS: dict[str, tuple[str, float]] = {
    "power": ("power_w", 1.0),
    "energy": ("energy_wh", 1000.0),
    "voltage": ("voltage_v", 1.0),
    "current": ("current_a", 1.0),
    "power_factor": ("power_factor", 1.0),
    "ac_frequency": ("frequency_hz", 1.0),
}
NOT_READINGS = ("set", "get")
NAME = "zigbee2mqtt"


def matches(topic: str) -> bool:
    return topic.startswith(PREFIX)


def decode(topic: str, payload: bytes, received_at_ms: int, ctx: DecodeContext) -> Decoded:
    name = topic[len(PREFIX):]
    if not name:
        raise DecodeError("empty Zigbee2MQTT friendly name")
    if name == "bridge" or name.startswith("bridge/"):
        return Decoded.ignore("not_a_reading")
    last = name.rsplit("/", 1)[-1]
    if last == "availability":
        return Decoded.ignore("availability")
    if last in NOT_READINGS:
        return Decoded.ignore("not_a_reading")
    if not payload.lstrip()[:1] == b"{" and "/" in name:
        return _attribute(name.rsplit("/", 1)[0], last, payload, received_at_ms, ctx)
    state = load_object(payload)
    ctx.state_of(NAME).setdefault("json", set()).add(name)
    values = {target: scaled(number(state.get(key), key), factor)
              for key, (target, factor) in FIELDS.items()}
    if not has_measurement(values):
        return Decoded.ignore("no_measurement")
    ts_ms = _last_seen(state.get("last_seen"), received_at_ms)
    return Decoded.of(reading(name, ts_ms, SOURCE, values))


def _attribute(name: str, attribute: str, payload: bytes, received_at_ms: int,
               ctx: DecodeContext) -> Decoded:
    """``zigbee2mqtt/<name>/<attribute>`` with a bare value (per-attribute output)."""
    target = FIELDS.get(attribute)
    if target is None:
        return Decoded.ignore("unused_field")  # state ON/OFF, linkquality, temperature…
    if name in ctx.state_of(NAME).get("json", ()):
        return Decoded.ignore("attribute_copy")
    try:
        value = float(payload.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise DecodeError(f"{attribute}: expected a number, got {payload[:40]!r}") from None
    values = {target[0]: scaled(number(value, attribute), target[1])}
    if not has_measurement(values):
        return Decoded.ignore("no_measurement")
    return Decoded.of(reading(name, received_at_ms, SOURCE, values))


def _last_seen(value: Any, received_at_ms: int) -> int:
    if value is None:
        return received_at_ms
    if isinstance(value, bool):
        raise DecodeError(f"last_seen: unexpected {value!r}")
    if isinstance(value, int | float):
        return int(number(value, "last_seen") or 0)  # 'epoch' format: milliseconds
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise DecodeError(f"last_seen {value!r} is not ISO 8601") from None
        if parsed.tzinfo is None:
            raise DecodeError(f"last_seen {value!r} has no UTC offset")
        return int(parsed.timestamp() * 1000)
    raise DecodeError(f"last_seen: unexpected {value!r}")
