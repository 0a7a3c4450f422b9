"""Datadis (date, time) labels ↔ UTC instants, clock changes included.

Datadis labels an interval by its local *end*: ``date`` ``YYYY/MM/DD`` and ``time`` ``01:00`` …
``24:00`` (``24:00`` is the next midnight; quarter-hours ``00:15`` … ``24:00``). A label is the
wall clock *during* the interval, i.e. the end instant read with the UTC offset in force just
before it. In Europe/Madrid this gives:

* last Sunday of October (25 hours): ``01:00, 02:00, 03:00, 03:00, 04:00 … 24:00`` — the first
  ``03:00`` ends at 03:00 CEST (01:00 UTC), the second at 03:00 CET (02:00 UTC);
* last Sunday of March (23 hours): ``01:00, 02:00, 04:00 … 24:00`` — ``02:00`` ends at 02:00 CET,
  the very instant the clock jumps to 03:00 CEST (01:00 UTC). ``03:00`` is accepted as another
  name of that same instant (some exports label it so); a day using both is a duplicate.

A label alone cannot tell the two October ``03:00`` apart, so :class:`DayWalker` walks the rows
in file order: the first occurrence of a repeated label is the earlier instant (summer time),
the second the later one (winter time).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

STEP_MS = 15 * 60_000  # the finest Datadis resolution; hourly labels are a subset
_DATE = re.compile(r"^(\d{4})[/-](\d{2})[/-](\d{2})$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::00)?$")


class DatadisTimeError(ValueError):
    """A date or time label that does not name an interval end of that day."""


def parse_day(text: str) -> date:
    """``YYYY/MM/DD`` (``YYYY-MM-DD`` tolerated)."""
    match = _DATE.match(text.strip())
    if not match:
        raise DatadisTimeError(f"date {text!r} is not YYYY/MM/DD")
    try:
        return date(*(int(g) for g in match.groups()))
    except ValueError as exc:
        raise DatadisTimeError(f"date {text!r}: {exc}") from None


def parse_time(text: str) -> str:
    """Normalised ``HH:MM`` end label in ``00:15`` … ``24:00`` on a 15-minute grid."""
    match = _TIME.match(text.strip())
    if not match:
        raise DatadisTimeError(f"time {text!r} is not HH:MM")
    hours, minutes = int(match.group(1)), int(match.group(2))
    total = hours * 60 + minutes
    if minutes % 15 or not 15 <= total <= 24 * 60:
        raise DatadisTimeError(f"time {text!r} is not an interval end between 00:15 and 24:00")
    return f"{hours:02d}:{minutes:02d}"


def _midnight_ms(day: date, tz: str) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def _label(local: datetime, day: date) -> str:
    """``HH:MM`` of a local wall time, ``24:00`` when it is the midnight after ``day``."""
    if local.date() != day:
        return "24:00"
    return f"{local.hour:02d}:{local.minute:02d}"


def end_label(end_ms: int, tz: str = "Europe/Madrid") -> tuple[date, str]:
    """The Datadis ``(date, time)`` of an interval ending at ``end_ms`` (15-minute grid)."""
    zone = ZoneInfo(tz)
    before = datetime.fromtimestamp((end_ms - 1) / 1000, UTC).astimezone(zone)
    day = before.date()
    # the wall time during the interval, one millisecond later: offset of the interval itself
    wall = (before.replace(tzinfo=None) + timedelta(milliseconds=1))
    return day, ("24:00" if wall.date() != day else f"{wall.hour:02d}:{wall.minute:02d}")


@lru_cache(maxsize=1024)
def day_labels(day: date, tz: str = "Europe/Madrid") -> tuple[dict[str, tuple[int, ...]],
                                                               dict[str, tuple[int, ...]]]:
    """For one local day: label → end instants (UTC ms, ascending) under the primary rule
    (offset *during* the interval), and the alias rule (offset *at* the end instant)."""
    zone = ZoneInfo(tz)
    start, stop = _midnight_ms(day, tz), _midnight_ms(day + timedelta(days=1), tz)
    primary: dict[str, list[int]] = {}
    alias: dict[str, list[int]] = {}
    for end in range(start + STEP_MS, stop + 1, STEP_MS):
        primary.setdefault(end_label(end, tz)[1], []).append(end)
        at_end = datetime.fromtimestamp(end / 1000, UTC).astimezone(zone)
        alias.setdefault(_label(at_end, day), []).append(end)
    return ({k: tuple(v) for k, v in primary.items()}, {k: tuple(v) for k, v in alias.items()})


def label_instants(day: date, label: str, tz: str = "Europe/Madrid") -> tuple[int, ...]:
    """End instants a label can name on ``day`` (two for the repeated October labels)."""
    primary, alias = day_labels(day, tz)
    return primary.get(label) or alias.get(label, ())


class DayWalker:
    """Turns rows, in file order, into end instants; keeps apart repeated October labels.

    ``key`` separates independent series inside one file (one per CUPS): each series walks its
    own days. A label seen more times than the day has instants for it is an error.
    """

    def __init__(self, tz: str = "Europe/Madrid") -> None:
        self.tz = tz
        self._seen: dict[tuple[Hashable, date, str], int] = {}
        self._used: set[tuple[Hashable, int]] = set()

    def instant(self, day_text: str, time_text: str, key: Hashable = None) -> int:
        """UTC epoch ms at which the interval labelled ``(day_text, time_text)`` ends."""
        day, label = parse_day(day_text), parse_time(time_text)
        candidates = label_instants(day, label, self.tz)
        if not candidates:
            raise DatadisTimeError(f"{day_text} {time_text} does not exist in {self.tz} "
                                   "(clock change)")
        occurrence = self._seen.get((key, day, label), 0)
        if occurrence >= len(candidates):
            raise DatadisTimeError(f"{day_text} {time_text} appears more than "
                                   f"{len(candidates)} time(s)")
        instant = candidates[occurrence]
        if (key, instant) in self._used:
            raise DatadisTimeError(f"{day_text} {time_text} names an interval already given")
        self._seen[(key, day, label)] = occurrence + 1
        self._used.add((key, instant))
        return instant


def walk(rows: Iterable[tuple[str, str]], tz: str = "Europe/Madrid") -> list[int]:
    """End instants of one series' ``(date, time)`` rows, in order."""
    walker = DayWalker(tz)
    return [walker.instant(day, time) for day, time in rows]


def iso_utc(ts_ms: int) -> str:
    """``2025-10-26T01:00:00Z``."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
