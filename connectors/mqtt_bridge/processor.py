"""From one MQTT message to the Kafka records it must become: pure, no I/O, never raises.

Every message ends in exactly one of three ways, which is what makes "nothing lost" checkable:
readings on ``ioe.readings`` (key = community), dead letters on ``ioe.deadletter`` (reason, topic,
raw payload, decoder), or an explicit *ignored* reason for well-formed messages that carry no
measurement (availability, retained replays, fields we deliberately do not use). One message may
yield several readings, some of them dead letters (e.g. an emonhub node with an unregistered
channel).
"""

from __future__ import annotations

import hashlib
import logging
import math
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ioe.deadletter import dead_letter, encode_dead_letter
from ioe.reading import Reading, ReadingError
from ioe.registry import Registry
from ioe.topics import DEADLETTER, READINGS

from .decoders import DecodeContext, DecodeError, find_decoder
from .decoders.json_map import maps_from_devices
from .decoders.routes import routes_from_devices

log = logging.getLogger(__name__)

SOURCE = "mqtt-bridge"
#: no meter sends more; a bigger payload is kept (truncated) as a dead letter, never decoded,
#: so one oversized message can neither stall the decoders nor exceed Kafka's record limit
MAX_PAYLOAD_BYTES = 1 << 20
KEPT_BYTES = 64 << 10
#: the dead letter that repeats with every message of a misconfigured device (a topic inside a
#: subscribed family that no decoder understands): one sample per origin (topic) and window,
#: the others only counted (``suppressed`` on the next sample). A decode error is not limited:
#: each bad payload of a known topic is kept for replay.
RATE_LIMITED_REASONS = frozenset({"no_decoder"})
RATE_WINDOW_MS = 60_000
MAX_TRACKED_ORIGINS = 10_000


@dataclass(frozen=True)
class Record:
    """One Kafka record; ``topic`` is the logical name (the bridge adds the prefix)."""

    topic: str
    key: str
    value: bytes


@dataclass
class Outcome:
    records: list[Record] = field(default_factory=list)
    readings: int = 0
    dead_letter_reasons: list[str] = field(default_factory=list)
    ignored: str | None = None
    decoder: str | None = None
    #: the dead-letter reason of a message only counted (``ignored`` = "rate_limited")
    suppressed_reason: str | None = None


class Processor:
    """Decodes with the decoder table and resolves devices in the (live) registry."""

    def __init__(self, registry: Registry, ctx: DecodeContext | None = None,
                 topic_root: str = "") -> None:
        #: read on every message; the registry follower replaces its dicts (copy-on-write)
        self.registry = registry
        self.ctx = ctx or DecodeContext()
        self.topic_root = topic_root.strip("/")
        self._maps_for: object = None
        #: origin -> [window start, dead letters suppressed since the last sample]
        self._sampled: OrderedDict[tuple[str, str], list[int]] = OrderedDict()
        self.suppressed = 0

    def refresh_json_maps(self, registry: Registry) -> bool:
        """JSON mappings and decoder routes live in the registry: rebuild them when a new
        registry arrives.

        Returns True when they were rebuilt (the bridge may need new subscriptions).
        """
        # the communities dict is replaced on every change (copy-on-write); holding it keeps
        # its identity from being reused by a later one
        if self._maps_for is registry.communities:
            return False
        maps, errors = maps_from_devices(registry.devices())
        routes, route_errors = routes_from_devices(registry.devices())
        for error in errors + route_errors:
            log.error("registry: %s", error)
        self.ctx.json_maps = tuple(maps)
        self.ctx.routes = tuple(routes)
        self._maps_for = registry.communities
        return True

    def local_topic(self, topic: str) -> str | None:
        if not self.topic_root:
            return topic
        root = self.topic_root + "/"
        return topic[len(root):] if topic.startswith(root) else None

    def process(self, topic: str, payload: bytes, received_at_ms: int,
                retain: bool = False) -> Outcome:
        try:
            return self._process(topic, payload, received_at_ms, retain)
        except Exception as exc:  # a bug must not stop the bridge: keep the message instead
            log.exception("unexpected error decoding %s", topic)
            outcome = Outcome()
            self._dead(outcome, "internal_error", f"{type(exc).__name__}: {exc}", topic, payload,
                       None, received_at_ms, {"traceback": traceback.format_exc(limit=5)})
            return outcome

    def _process(self, topic: str, payload: bytes, received_at_ms: int, retain: bool) -> Outcome:
        outcome = Outcome()
        if retain:  # replayed by the broker on subscribe: an old value, not a fresh reading
            outcome.ignored = "retained"
            return outcome
        if len(payload) > MAX_PAYLOAD_BYTES:
            self._dead(outcome, "payload_too_large",
                       f"{len(payload)} bytes (limit {MAX_PAYLOAD_BYTES}); first {KEPT_BYTES} kept",
                       topic, payload[:KEPT_BYTES], None, received_at_ms,
                       {"payload_bytes": len(payload),
                        "payload_sha256": hashlib.sha256(payload).hexdigest()})
            return outcome
        registry = self.registry
        self.refresh_json_maps(registry)
        local = self.local_topic(topic)
        found = find_decoder(local, self.ctx, payload) if local is not None else None
        if found is None:
            self._dead(outcome, "no_decoder", "no decoder recognises this topic", topic, payload,
                       None, received_at_ms)
            return outcome
        decoder, decoder_topic = found
        outcome.decoder = decoder.name
        try:
            decoded = decoder.decode(decoder_topic, payload, received_at_ms, self.ctx)
        except DecodeError as exc:
            self._dead(outcome, exc.reason, exc.detail, topic, payload, decoder.name,
                       received_at_ms)
            return outcome
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            self._dead(outcome, "decode_error", f"{type(exc).__name__}: {exc}", topic, payload,
                       decoder.name, received_at_ms)
            return outcome
        if not decoded.readings:
            outcome.ignored = decoded.ignored or "no_measurement"
            return outcome
        for reading in decoded.readings:
            self._route(outcome, reading, registry, topic, payload, decoder.name, received_at_ms)
        return outcome

    def _route(self, outcome: Outcome, reading: Reading, registry: Registry, topic: str,
               payload: bytes, decoder: str, received_at_ms: int) -> None:
        """Community from the registry, the contract checks on the reading itself, one encode."""
        device = registry.device(reading.device_id)
        if device is not None:
            reading = reading.with_community(device.community_id)
        try:
            valid = reading.validated()  # the contract checks, community included
        except ReadingError as exc:
            self._dead(outcome, "invalid_reading", str(exc), topic, payload, decoder,
                       received_at_ms, {"device_id": reading.device_id,
                                        "reading": _safe_dict(reading.to_dict())})
            return
        if device is None:
            self._dead(outcome, "unknown_device",
                       f"device {reading.device_id!r} is not in the registry", topic, payload,
                       decoder, received_at_ms,
                       {"device_id": reading.device_id, "reading": valid.to_dict()})
            return
        outcome.records.append(Record(READINGS, device.community_id, valid.to_json()))
        outcome.readings += 1

    def _sample(self, reason: str, origin: str, now_ms: int) -> int | None:
        """Rate limit of the repetitive dead letters: the count of suppressed ones to report
        with this sample, or None when this one is suppressed (counted, not sent)."""
        if reason not in RATE_LIMITED_REASONS:
            return 0
        key = (reason, origin)
        state = self._sampled.get(key)
        if state is not None and 0 <= now_ms - state[0] < RATE_WINDOW_MS:
            state[1] += 1
            self.suppressed += 1
            return None
        suppressed = state[1] if state is not None else 0
        self._sampled[key] = [now_ms, 0]
        self._sampled.move_to_end(key)
        while len(self._sampled) > MAX_TRACKED_ORIGINS:
            self._sampled.popitem(last=False)
        return suppressed

    def _dead(self, outcome: Outcome, reason: str, detail: str, topic: str, payload: bytes,
              decoder: str | None, received_at_ms: int,
              extra: dict[str, Any] | None = None) -> None:
        suppressed = self._sample(reason, topic, received_at_ms)
        if suppressed is None:
            outcome.ignored = "rate_limited"
            outcome.suppressed_reason = reason
            return
        if suppressed:
            extra = {**(extra or {}), "suppressed": suppressed}
        log.error("dead letter %s from %s (%s): %s", reason, topic, decoder, detail)
        record = dead_letter(source=SOURCE, reason=reason, detail=detail, payload=payload,
                             origin=topic, decoder=decoder, received_at_ms=received_at_ms,
                             extra={"topic": topic, **(extra or {})})
        outcome.records.append(Record(DEADLETTER, SOURCE, encode_dead_letter(record)))
        outcome.dead_letter_reasons.append(reason)



def _safe_dict(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of an invalid reading, JSON-safe: NaN/inf and integers JSON encoders refuse
    (beyond 64 bits, e.g. a timestamp of 10^33 ms from a garbled counter) become strings."""
    result: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = repr(value)
        elif isinstance(value, int) and not -(2**63) <= value < 2**64:
            value = str(value)
        result[key] = value
    return result
