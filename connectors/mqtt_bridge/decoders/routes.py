"""Decoder choice from the registry: a device says which decoder reads it and on which topic.

Topic conventions (``shellies/…`` is Gen1, ``tele/<topic>/SENSOR`` is Tasmota…) are only the
default. Real installations break them: a Shelly Plus whose MQTT prefix the user set to
``shellies/plus1pm`` looks like a Gen1, a Tasmota with a custom FullTopic (``%topic%/%prefix%/``
gives ``compteur/tele/SENSOR``) matches no convention at all. So a registry device may say::

    protocol: {type: mqtt, decoder: shelly-gen2, topic: shellies/plus1pm}
    protocol: {type: mqtt, decoder: tasmota, topic: compteur, full_topic: "%topic%/%prefix%/"}
    protocol: {type: mqtt, decoder: zigbee2mqtt, topic: z2m/Enchufe cocina}

and messages under that topic are decoded by that decoder whatever they look like. A route
rewrites the topic into the decoder's own convention with the registry device's id as the
device part, so the decoder is unchanged and the reading carries the registered id (Gen2
``<id base>:<N>``, Tasmota ``<id>``…). The bridge subscribes each route's filter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: registry decoder names -> the decoder table's names
DECODER_ALIASES = {
    "shelly-gen1": "shelly_gen1", "shelly_gen1": "shelly_gen1",
    "shelly-gen2": "shelly_gen2", "shelly_gen2": "shelly_gen2",
    "shelly-gen3": "shelly_gen2", "tasmota": "tasmota", "emonhub": "emonhub",
    "zigbee2mqtt": "zigbee2mqtt",
}
#: decoder -> how the rewritten topic starts (``{base}`` = the device id without ``:<N>``)
CANONICAL = {
    "shelly_gen1": "shellies/{base}",
    "shelly_gen2": "{base}",
    "emonhub": "emon/{base}",
    "zigbee2mqtt": "zigbee2mqtt/{id}",
}
TASMOTA_DEFAULT_FULL_TOPIC = "%prefix%/%topic%/"
TASMOTA_PREFIXES = "tele|stat|cmnd"
_CHANNEL_SUFFIX = re.compile(r"^(.*):\d+$")


class RouteConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Route:
    decoder: str
    device_id: str
    #: the MQTT subscription filter covering the device's topics
    filter: str
    prefix: str | None = None          # prefix routes: topic == prefix or prefix/…
    canonical: str | None = None       # what the prefix is replaced with
    pattern: re.Pattern[str] | None = None  # Tasmota FullTopic routes

    def rewrite(self, topic: str) -> str | None:
        """The topic in the decoder's own convention, or None when it is not this route's."""
        if self.pattern is not None:
            found = self.pattern.match(topic)
            if not found:
                return None
            return f"{found.group('prefix')}/{self.device_id}/{found.group('kind')}"
        assert self.prefix is not None and self.canonical is not None
        if topic == self.prefix:
            return self.canonical
        if topic.startswith(self.prefix + "/"):
            return self.canonical + topic[len(self.prefix):]
        return None

    @property
    def specificity(self) -> int:
        return len(self.prefix or (self.pattern.pattern if self.pattern else ""))


def _base(device_id: str) -> str:
    found = _CHANNEL_SUFFIX.match(device_id)
    return found.group(1) if found else device_id


def tasmota_route(device_id: str, topic: str, full_topic: str) -> Route:
    template = full_topic if full_topic.endswith("/") else full_topic + "/"
    if "%prefix%" not in template:
        raise RouteConfigError(f"device {device_id}: full_topic {full_topic!r} has no %prefix%")
    pattern, mqtt_filter = "", ""
    for piece in re.split(r"(%[a-z]+%)", template):
        if piece == "%prefix%":
            pattern, mqtt_filter = pattern + f"(?P<prefix>{TASMOTA_PREFIXES})", mqtt_filter + "+"
        elif piece == "%topic%":
            pattern, mqtt_filter = pattern + re.escape(topic), mqtt_filter + topic
        elif piece.startswith("%") and piece.endswith("%") and len(piece) > 2:
            pattern, mqtt_filter = pattern + "[^/]+", mqtt_filter + "+"  # %hostname%, %id%
        else:
            pattern, mqtt_filter = pattern + re.escape(piece), mqtt_filter + piece
    return Route("tasmota", device_id, mqtt_filter + "+",
                 pattern=re.compile("^" + pattern + r"(?P<kind>[^/]+)$"))


def route_of(device_id: str, protocol: Any) -> Route | None:
    """The route a registry device configures, or None when it relies on the conventions."""
    if not isinstance(protocol, dict) or protocol.get("type", "mqtt") != "mqtt":
        return None
    decoder = DECODER_ALIASES.get(str(protocol.get("decoder", "")))
    topic = protocol.get("topic")
    if decoder is None or topic is None:
        return None
    if not isinstance(topic, str) or not topic.strip("/") or any(c in topic for c in "+#"):
        raise RouteConfigError(f"device {device_id}: topic must be a topic prefix without "
                               f"wildcards, got {topic!r}")
    topic = topic.strip("/")
    if decoder == "tasmota":
        full_topic = protocol.get("full_topic", TASMOTA_DEFAULT_FULL_TOPIC)
        if not isinstance(full_topic, str):
            raise RouteConfigError(f"device {device_id}: full_topic must be a string")
        return tasmota_route(device_id, topic, full_topic)
    canonical = CANONICAL[decoder].format(base=_base(device_id), id=device_id)
    return Route(decoder, device_id, f"{topic}/#", prefix=topic, canonical=canonical)


def routes_from_devices(devices: Iterable[Any]) -> tuple[list[Route], list[str]]:
    """The routes of registry devices (one per topic), plus one error message per bad one."""
    routes: dict[str, Route] = {}
    errors = []
    for device in devices:
        try:
            route = route_of(device.id, getattr(device, "protocol", None) or {})
        except RouteConfigError as exc:
            errors.append(str(exc))
            continue
        if route is None:
            continue
        key = route.filter
        known = routes.get(key)
        if known is not None and (known.decoder, known.canonical) != (route.decoder,
                                                                       route.canonical):
            errors.append(f"device {device.id}: topic {key} is already routed to "
                          f"{known.device_id} ({known.decoder})")
            continue
        routes.setdefault(key, route)
    return sorted(routes.values(), key=lambda r: -r.specificity), errors


def match(routes: Iterable[Route], topic: str) -> tuple[Route, str] | None:
    """The most specific route of ``topic`` and the rewritten topic."""
    for route in routes:
        rewritten = route.rewrite(topic)
        if rewritten is not None:
            return route, rewritten
    return None
