"""Datadis rows (API ``timeCurve`` items or CSV lines) → contract readings.

Kept pure (no I/O) so the conversion is checked hour by hour in tests. What cannot be used
comes back as :class:`Rejected` with a reason, for the dead-letter topic: nothing is dropped
silently. A null/empty consumption means "no data yet" for that interval, never zero, so it
produces no reading (unless the surplus is known).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from ioe.datadis_time import place_rows
from ioe.reading import Reading, ReadingError
from ioe.registry import official_device_id

SOURCE = "datadis"

#: obtainMethod → contract quality. Anything not explicitly "Real" is not billing-grade
#: measured data as far as we can tell, so unknown/empty methods count as estimated.
QUALITY = {"real": "measured", "r": "measured", "estimada": "estimated", "e": "estimated",
           "estimated": "estimated", "measured": "measured"}
DEFAULT_QUALITY = "estimated"

#: measurementType → interval length
INTERVAL_S = {0: 3600, 1: 900}


@dataclass(frozen=True)
class Rejected:
    reason: str  # dead-letter reason: bad_time, invalid_value, invalid_reading, duplicate
    detail: str
    row: Mapping[str, Any]


@dataclass
class Converted:
    readings: list[Reading]
    rejected: list[Rejected]
    empty_rows: int = 0  # rows without any value (no data yet)
    duplicates: int = 0  # rows for an interval already seen (i-DE 00:00 row, repeats)
    outside: int = 0  # rows outside the requested window (kept out of this month)


def parse_kwh(value: Any) -> float | None:
    """A kWh value as Datadis or its CSV files write it (``1.234``, ``1,234``, ``""``, null)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if not text or text.lower() in ("null", "none", "nan", "-"):
        return None
    if "," in text:
        text = text.replace(".", "").replace(",", ".")
    return float(text)  # ValueError → invalid_value


def quality_of(method: Any) -> str:
    return QUALITY.get(str(method or "").strip().lower(), DEFAULT_QUALITY)


def convert_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    device_id: str,
    community_id: str | None,
    tz: ZoneInfo,
    interval_s: int,
    window_ms: tuple[int, int] | None = None,
    now_ms: int | None = None,
) -> Converted:
    """Place rows in time (walking each day in order) and build readings.

    ``window_ms`` = (exclusive start, inclusive end) of interval ends to keep: a month query
    keeps only its month, so the previous day's hour repeated by i-DE as ``00:00`` is not
    published twice from two different queries.
    """
    if not device_id or device_id == official_device_id(""):
        # a reading without a supply id is never published: every row is refused instead
        return Converted([], [Rejected("invalid_reading", "no CUPS: the reading would have no "
                                       "supply point", row) for row in rows])
    labels = [(str(r.get("date", "")), _time_of(r)) for r in rows]
    placed = place_rows(labels, tz, interval_s)
    out = Converted([], [])
    seen: set[int] = set()
    for row, where in zip(rows, placed, strict=True):
        if where.end_ms is None:
            out.rejected.append(Rejected("bad_time", where.error or "unplaceable", row))
            continue
        if window_ms is not None and not window_ms[0] < where.end_ms <= window_ms[1]:
            out.outside += 1
            continue
        try:
            consumption = parse_kwh(row.get("consumptionKWh"))
            surplus = parse_kwh(row.get("surplusEnergyKWh"))
        except ValueError as exc:
            out.rejected.append(Rejected("invalid_value", f"not a number: {exc}", row))
            continue
        if consumption is None and surplus is None:
            out.empty_rows += 1
            continue
        if where.end_ms in seen:
            out.duplicates += 1
            continue
        seen.add(where.end_ms)
        try:
            reading = Reading(
                device_id=device_id, ts_ms=where.end_ms, source=SOURCE,
                community_id=community_id, interval_s=interval_s,
                interval_energy_wh=None if consumption is None else round(consumption * 1000, 3),
                interval_energy_returned_wh=None if surplus is None else round(surplus * 1000, 3),
                quality=quality_of(row.get("obtainMethod")),
            ).validated(now_ms=now_ms)
        except ReadingError as exc:
            out.rejected.append(Rejected("invalid_reading", str(exc), row))
            continue
        out.readings.append(reading)
    return out


def _time_of(row: Mapping[str, Any]) -> str | int:
    ordinal = row.get("ordinal")
    if isinstance(ordinal, int):
        return ordinal
    return str(row.get("time", ""))
