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
}
CHANNEL_KINDS = ("emeter", "relay")


def matches(topic: str) -> bool:
    return topic.startswith(PREFIX)


def decode(topic: str, payload: bytes, received_at_ms: int, ctx: DecodeContext) -> Decoded:
    parts = topic.split("/")
    if len(parts) == 3 and parts[2] == "online":
        return Decoded.ignore("availability")
    if len(parts) != 5 or parts[2] not in CHANNEL_KINDS:
        return Decoded.ignore("not_a_reading")  # announce, info, input events, relay state…
    _, shelly_id, _kind, channel, quantity = parts
    if not shelly_id or not channel.isdigit():
        raise DecodeError(f"bad Shelly Gen1 topic {topic!r}")
    if quantity not in QUANTITIES:
        return Decoded.ignore("not_a_reading")
    target = QUANTITIES[quantity]
    if target is None:
        return Decoded.ignore("unused_field")
    field_name, factor = target
    value = text_number(payload, quantity) * factor
    return Decoded.of(reading(f"{shelly_id}:{int(channel)}", received_at_ms, SOURCE,
                              {field_name: value}))
