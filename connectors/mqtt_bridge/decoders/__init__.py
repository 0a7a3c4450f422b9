"""The decoder table: which device family a topic belongs to, and the function that decodes it.

Order matters only where topic shapes could overlap: configured JSON mappings come first (an
operator's explicit choice wins), the Shelly Gen2 entry is last because it recognises topics by
shape (``…/events/rpc``, ``…/status/<component>``) rather than by a fixed prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import emonhub, json_map, shelly_gen1, shelly_gen2, tasmota, zigbee2mqtt
from .base import IGNORE_REASONS, DecodeContext, Decoded, DecodeError, DecodeFn

__all__ = ["DECODERS", "IGNORE_REASONS", "DecodeContext", "DecodeError", "Decoded",
           "DecoderSpec", "find_decoder"]


@dataclass(frozen=True)
class DecoderSpec:
    name: str
    source: str
    matches: Callable[[str, DecodeContext], bool]
    decode: DecodeFn


DECODERS: tuple[DecoderSpec, ...] = (
    DecoderSpec("json_map", json_map.SOURCE,
                lambda topic, ctx: bool(ctx.json_maps) and bool(json_map.matching(ctx, topic)),
                json_map.decode),
    DecoderSpec("shelly_gen1", shelly_gen1.SOURCE, lambda t, _: shelly_gen1.matches(t),
                shelly_gen1.decode),
    DecoderSpec("tasmota", tasmota.SOURCE, lambda t, _: tasmota.matches(t), tasmota.decode),
    DecoderSpec("emonhub", emonhub.SOURCE, lambda t, _: emonhub.matches(t), emonhub.decode),
    DecoderSpec("zigbee2mqtt", zigbee2mqtt.SOURCE, lambda t, _: zigbee2mqtt.matches(t),
                zigbee2mqtt.decode),
    DecoderSpec("shelly_gen2", shelly_gen2.SOURCE, lambda t, _: shelly_gen2.matches(t),
                shelly_gen2.decode),
)
BY_NAME = {d.name: d for d in DECODERS}

#: MQTT subscriptions covering the built-in families (JSON mappings add their own topics)
DEFAULT_SUBSCRIPTIONS: tuple[str, ...] = (
    "shellies/#", "+/events/rpc", "+/status/+", "+/online", "tele/+/+", "stat/+/+",
    "emon/#", "zigbee2mqtt/#",
)


def find_decoder(topic: str, ctx: DecodeContext) -> DecoderSpec | None:
    return next((d for d in DECODERS if d.matches(topic, ctx)), None)
