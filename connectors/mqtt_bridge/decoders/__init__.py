"""The decoder table: which device family a message belongs to, and the function that decodes it.

The choice, in order (the first that applies wins):

1. a configured JSON mapping whose topic filter matches (json_map.py): an operator's explicit
   choice;
2. a registry route (routes.py): the device's registry entry names its decoder and topic, so a
   Shelly Plus with the prefix ``shellies/plus1pm`` or a Tasmota with a custom FullTopic is read
   by the right decoder, under its registered id;
3. the families' topic conventions, with the payload's shape where a topic is ambiguous: under
   ``shellies/`` a ``…/events/rpc`` or ``…/status/<component>`` topic with a JSON object is a
   Gen2/Gen3 device whose prefix was set to ``shellies/<name>``, anything else is Gen1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import emonhub, json_map, routes, shelly_gen1, shelly_gen2, tasmota, zigbee2mqtt
from .base import IGNORE_REASONS, DecodeContext, Decoded, DecodeError, DecodeFn

__all__ = ["DECODERS", "IGNORE_REASONS", "DecodeContext", "DecodeError", "Decoded",
           "DecoderSpec", "find_decoder"]


@dataclass(frozen=True)
class DecoderSpec:
    name: str
    source: str
    matches: Callable[[str, bytes, DecodeContext], bool]
    decode: DecodeFn


def _is_json_object(payload: bytes) -> bool:
    return payload.lstrip()[:1] == b"{"


def _gen2_shape(topic: str, payload: bytes) -> bool:
    """A Gen2/Gen3 topic shape; under ``shellies/`` (Gen1's prefix) only with a JSON object,
    which no Gen1 measurement topic carries."""
    if not shelly_gen2.matches(topic):
        return False
    return not topic.startswith(shelly_gen1.PREFIX) or (
        _is_json_object(payload) and topic.rsplit("/", 1)[-1] != "online")


DECODERS: tuple[DecoderSpec, ...] = (
    DecoderSpec("json_map", json_map.SOURCE,
                lambda t, _, ctx: bool(ctx.json_maps) and bool(json_map.matching(ctx, t)),
                json_map.decode),
    DecoderSpec("shelly_gen2", shelly_gen2.SOURCE,
                lambda t, p, _: t.startswith(shelly_gen1.PREFIX) and _gen2_shape(t, p),
                shelly_gen2.decode),
    DecoderSpec("shelly_gen1", shelly_gen1.SOURCE, lambda t, _, __: shelly_gen1.matches(t),
                shelly_gen1.decode),
    DecoderSpec("tasmota", tasmota.SOURCE, lambda t, _, __: tasmota.matches(t), tasmota.decode),
    DecoderSpec("emonhub", emonhub.SOURCE, lambda t, _, __: emonhub.matches(t), emonhub.decode),
    DecoderSpec("zigbee2mqtt", zigbee2mqtt.SOURCE, lambda t, _, __: zigbee2mqtt.matches(t),
                zigbee2mqtt.decode),
    DecoderSpec("shelly_gen2", shelly_gen2.SOURCE, lambda t, p, _: _gen2_shape(t, p),
                shelly_gen2.decode),
)
BY_NAME = {d.name: d for d in DECODERS}

#: MQTT subscriptions covering the built-in families (JSON mappings and registry routes add
#: their own topics)
DEFAULT_SUBSCRIPTIONS: tuple[str, ...] = (
    "shellies/#", "+/events/rpc", "+/status/+", "+/online", "tele/+/+", "stat/+/+",
    "emon/#", "zigbee2mqtt/#",
)


def find_decoder(topic: str, ctx: DecodeContext,
                 payload: bytes = b"") -> tuple[DecoderSpec, str] | None:
    """The decoder of a message and the topic to give it (rewritten by a registry route)."""
    if ctx.json_maps and json_map.matching(ctx, topic):
        return BY_NAME["json_map"], topic
    if ctx.routes:
        routed = routes.match(ctx.routes, topic)
        if routed is not None:
            return BY_NAME[routed[0].decoder], routed[1]
    spec = next((d for d in DECODERS[1:] if d.matches(topic, payload, ctx)), None)
    return (spec, topic) if spec is not None else None
