"""Unknown and undecodable sources, from ``ioe.deadletter``, for the operators to onboard.

Why: a meter that publishes on a topic no decoder knows, or whose device id is not in the
registry, is dead-lettered by the MQTT bridge (reasons ``no_decoder``, ``unknown_device``,
``decode_error``; ``origin`` = the MQTT topic) — nothing is lost, but nobody would look at the
topic. The web follows it (every partition, the last records of each at start, like
``ioe.live``) and keeps, per (origin, reason), how often and when it was last seen and one
sample payload, so the control centre can list what is waiting to be onboarded.

Memory is bounded: at most ``max_sources`` entries (the least recently seen go first) and
samples truncated to ``sample_chars``. Dead letters carry no community when the device is
unknown, so unattributed sources are listed to every operator; a record that names a
``community_id`` is listed only to that community's operators.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from dashboards.live import Batch

log = logging.getLogger(__name__)

#: the reasons that mean "a source the registry or the decoders do not know yet"
ONBOARDING_REASONS = ("no_decoder", "unknown_device", "decode_error")


@dataclass
class Source:
    origin: str
    reason: str
    source: str
    community_id: str | None
    count: int
    first_seen_ms: int
    last_seen_ms: int
    detail: str
    sample: str
    device_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"origin": self.origin, "reason": self.reason, "source": self.source,
                "community_id": self.community_id, "device_id": self.device_id,
                "count": self.count, "first_seen_ms": self.first_seen_ms,
                "last_seen_ms": self.last_seen_ms, "detail": self.detail,
                "sample": self.sample}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class DeadLetterBook:
    """Per (origin, reason): count, first/last seen, the latest detail and a sample payload."""

    def __init__(self, *, max_sources: int = 500, sample_chars: int = 200) -> None:
        self.max_sources = max_sources
        self.sample_chars = sample_chars
        self.sources: dict[tuple[str, str], Source] = {}
        self.unreadable = 0

    def deliver(self, batch: Batch) -> None:
        for key, value in batch:
            try:
                record = orjson.loads(value or b"null")
            except orjson.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                self.unreadable += 1
                log.warning("unreadable ioe.deadletter record (key %r)", key)
                continue
            self.add(record)

    def add(self, record: dict[str, Any]) -> None:
        reason = _text(record.get("reason"))
        if reason not in ONBOARDING_REASONS:
            return
        origin = _text(record.get("origin")) or _text(record.get("device_id")) or "?"
        seen = record.get("received_at_ms")
        seen_ms = int(seen) if isinstance(seen, int | float) and not isinstance(seen, bool) \
            else 0
        entry = self.sources.pop((origin, reason), None)
        sample = self._sample(record)
        if entry is None:
            entry = Source(origin=origin, reason=reason,
                           source=_text(record.get("source")) or "?",
                           community_id=_text(record.get("community_id")), count=0,
                           first_seen_ms=seen_ms, last_seen_ms=seen_ms, detail="",
                           sample=sample, device_id=_text(record.get("device_id")))
        entry.count += 1
        entry.first_seen_ms = min(entry.first_seen_ms, seen_ms) if entry.count > 1 else seen_ms
        if seen_ms >= entry.last_seen_ms:
            entry.last_seen_ms = seen_ms
            entry.sample = sample
            entry.detail = (_text(record.get("detail")) or "")[:self.sample_chars]
        self.sources[(origin, reason)] = entry  # most recently touched last
        while len(self.sources) > self.max_sources:
            oldest = min(self.sources, key=lambda k: self.sources[k].last_seen_ms)
            del self.sources[oldest]

    def _sample(self, record: dict[str, Any]) -> str:
        payload = record.get("payload")
        if payload is None and record.get("payload_b64"):
            text = "base64:" + str(record["payload_b64"])
        elif isinstance(payload, str):
            text = payload
        elif payload is None:
            text = ""
        else:
            text = orjson.dumps(payload).decode()
        if len(text) > self.sample_chars:
            return text[:self.sample_chars] + "…"
        return text

    def for_community(self, community_id: str) -> list[Source]:
        """What an operator of ``community_id`` sees: its own and unattributed sources,
        most recently seen first."""
        return sorted((s for s in self.sources.values()
                       if s.community_id in (None, community_id)),
                      key=lambda s: s.last_seen_ms, reverse=True)
