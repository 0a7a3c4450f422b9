"""OpenEnergyMonitor emonhub (emonTx, emonPi): ``emon/<node>/<key>`` plain numbers and the JSON
variant ``emon/<node>`` (``{"time": <unix s>, "P1": …, "E1": …}``).

Keys name a channel: ``powerN``/``PN`` is the power of channel N (W), ``EN`` its Wh counter.
``vrms``/``Vrms`` is the node's voltage, shared by all its channels: it is attached to every
channel reading of the same message, or — for the one-key-per-topic variant — reported for the
channels of that node seen so far. Device id: ``<node>:<N>``.
"""

from __future__ import annotations

import re
from typing import Any

from .base import (
    DecodeContext,
    Decoded,
    DecodeError,
    epoch_seconds_to_ms,
    load_object,
    number,
    reading,
    text_number,
)

SOURCE = "emonhub"
NAME = "emonhub"
PREFIX = "emon/"

#: key pattern -> contract field of channel N (group 1)
CHANNEL_KEYS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^power(\d+)$"), "power_w"),
    (re.compile(r"^P(\d+)$"), "power_w"),
    (re.compile(r"^E(\d+)$"), "energy_wh"),
)
VOLTAGE_KEYS = frozenset({"vrms", "Vrms"})


def matches(topic: str) -> bool:
    return topic.startswith(PREFIX)


def _channel_key(key: str) -> tuple[int, str] | None:
    for pattern, field_name in CHANNEL_KEYS:
        found = pattern.match(key)
        if found:
            return int(found.group(1)), field_name
    return None


def decode(topic: str, payload: bytes, received_at_ms: int, ctx: DecodeContext) -> Decoded:
    parts = topic.split("/")
    if len(parts) == 2:
        return _decode_json(parts[1], payload, received_at_ms, ctx)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise DecodeError(f"bad emonhub topic {topic!r}")
    node, key = parts[1], parts[2]
    return _build(node, {key: text_number(payload, key)}, received_at_ms, ctx)


def _decode_json(node: str, payload: bytes, received_at_ms: int, ctx: DecodeContext) -> Decoded:
    if not node:
        raise DecodeError("empty emonhub node name")
    data = load_object(payload)
    ts_ms = epoch_seconds_to_ms(data["time"], "time") if "time" in data else received_at_ms
    values = {k: number(v, k) for k, v in data.items() if k != "time"}
    return _build(node, values, ts_ms, ctx)


def _build(node: str, values: dict[str, float | None], ts_ms: int,
           ctx: DecodeContext) -> Decoded:
    channels: dict[int, dict[str, Any]] = {}
    voltage: float | None = None
    for key, value in values.items():
        if key in VOLTAGE_KEYS:
            voltage = value
            continue
        channel = _channel_key(key)
        if channel is None or value is None:
            continue
        index, field_name = channel
        channels.setdefault(index, {})[field_name] = value
    seen: set[int] = ctx.state_of(NAME).setdefault(node, set())
    seen.update(channels)
    if voltage is not None:
        for index in channels or seen:
            channels.setdefault(index, {})["voltage_v"] = voltage
    if not channels:
        known = any(k in VOLTAGE_KEYS or _channel_key(k) for k in values)
        return Decoded.ignore("no_measurement" if known else "unused_field")
    return Decoded.of(*(reading(f"{node}:{index}", ts_ms, SOURCE, fields)
                        for index, fields in sorted(channels.items())))
