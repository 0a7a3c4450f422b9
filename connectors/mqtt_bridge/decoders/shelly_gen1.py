"""Shelly Gen1 (EM, 3EM, Plug S…): one plain number per topic.

``shellies/<id>/emeter/<i>/<quantity>`` (and ``relay/<i>/power`` for plugs). ``total`` and
``total_returned`` are persistent Wh counters; ``energy``/``returned_energy`` are watt-minutes
since the last reboot, so they are never used as counters (a reboot would look like a counter
reset and a unit error at once). Gen1 messages carry no timestamp: the receipt time is used.
"""

from __future__ import annotations

from .base import DecodeContext, Decoded, DecodeError, reading, text_number

SOURCE = "shelly-gen1"
PREFIX = "shellies/"

#: quantity topic -> (contract field, factor to the contract unit); None = deliberately unused
QUANTITIES: dict[str, tuple[str, float] | None] = {
    "power": ("power_w", 1.0),
    "total": ("energy_wh", 1.0),
    "total_returned": ("energy_returned_wh", 1.0),
    "voltage": ("voltage_v", 1.0),
    "current": ("current_a", 1.0),
    "pf": ("power_factor", 1.0),
    "reactive_power": None,
    "energy": None,           # watt-minutes, resets on reboot
    "returned_energy": None,  # watt-minutes, resets on reboot
    "overpower": None,
    "overpower_value": None,
}
CHANNEL_KINDS = ("emeter", "relay")
#: Gen1 topic words that are known and carry no reading (announce, state, inputs, sensors…)
KNOWN_OTHER = frozenset({
    "announce", "info", "online", "command", "status", "temperature", "temperature_f",
    "overtemperature", "overpower", "voltage", "input", "input_event", "longpush", "relay",
    "roller", "light", "color", "white", "sensor", "ext_temperature", "ext_temperature_f",
    "ext_humidity", "ext_switch", "energy", "loaderror", "overload", "settings",
})


def matches(topic: str) -> bool:
    return topic.startswith(PREFIX)


def decode(topic: str, payload: bytes, received_at_ms: int, ctx: DecodeContext) -> Decoded:
    parts = topic.split("/")
    if len(parts) >= 3 and parts[-1] == "online":
        return Decoded.ignore("availability")
    # read from the right: a device id may itself contain "/" (shellies/casa/em/emeter/0/power)
    if len(parts) < 5 or parts[-3] not in CHANNEL_KINDS or not parts[-2].isdigit():
        if len(parts) <= 2 or KNOWN_OTHER.intersection(parts[2:]):
            return Decoded.ignore("not_a_reading")  # announce, info, input events, relay state…
        raise DecodeError(f"no Shelly Gen1 topic is shaped like {topic!r}", "no_decoder")
    shelly_id, channel, quantity = "/".join(parts[1:-3]), parts[-2], parts[-1]
    if not shelly_id or any(not p for p in parts[1:-3]):
        raise DecodeError(f"bad Shelly Gen1 topic {topic!r}")
    if quantity not in QUANTITIES:
        raise DecodeError(f"Shelly Gen1 quantity {quantity!r} is not known", "no_decoder")
    target = QUANTITIES[quantity]
    if target is None:
        return Decoded.ignore("unused_field")
    field_name, factor = target
    value = text_number(payload, quantity) * factor
    return Decoded.of(reading(f"{shelly_id}:{int(channel)}", received_at_ms, SOURCE,
                              {field_name: value}))
