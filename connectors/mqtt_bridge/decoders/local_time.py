"""Turning a device's local wall-clock time (no UTC offset) into UTC epoch milliseconds.

Tasmota stamps its telemetry in local time. Twice a year that is not a function of UTC: in the
autumn the hour 02:00–03:00 happens twice (ambiguous), in the spring it never happens
(non-existent). An ambiguous time is resolved to the occurrence closest to the moment the message
was received (a device reports within seconds, not an hour late); a non-existent time can only
come from a misconfigured clock and is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from .base import DecodeError


def local_to_utc_ms(text: str, zone: ZoneInfo, received_at_ms: int) -> int:
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise DecodeError(f"time {text!r} is not ISO 8601") from None
    if parsed.tzinfo is not None:  # the device sent its offset (Tasmota SetOption52)
        return int(parsed.timestamp() * 1000)
    candidates = []
    for fold in (0, 1):
        aware = parsed.replace(tzinfo=zone, fold=fold)
        utc = aware.astimezone(UTC)
        # round-trip check: a non-existent local time does not come back unchanged
        if utc.astimezone(zone).replace(tzinfo=None) == parsed:
            candidates.append(int(utc.timestamp() * 1000))
    if not candidates:
        raise DecodeError(f"local time {text} does not exist in {zone.key} "
                          "(clock change); device clock misconfigured?")
    return min(candidates, key=lambda ms: abs(ms - received_at_ms))
