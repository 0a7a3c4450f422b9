"""Datadis (date, time) labels ↔ UTC instants, clock changes included — the one reader.

Used by the Datadis connector (a month of API rows or a CSV download at once: :func:`place_rows`)
and by ``ioe settle`` (a file streamed row by row: :class:`DayWalker`); both walk rows with the
same :class:`DayWalker`, so they cannot disagree.

Datadis labels an interval by its local *end*: ``date`` ``YYYY/MM/DD`` and ``time`` ``01:00`` …
``24:00`` (``24:00`` is the next midnight; quarter-hours ``00:15`` … ``24:00``). A label is the
wall clock *during* the interval, i.e. the end instant read with the UTC offset in force just
before it. In Europe/Madrid this gives:

* last Sunday of October (25 hours): ``01:00, 02:00, 03:00, 03:00, 04:00 … 24:00`` — the first
  ``03:00`` ends at 03:00 CEST (01:00 UTC), the second at 03:00 CET (02:00 UTC);
* last Sunday of March (23 hours): ``01:00, 02:00, 04:00 … 24:00`` — ``02:00`` ends at 02:00 CET,
  the very instant the clock jumps to 03:00 CEST (01:00 UTC). ``03:00`` is accepted as another
  name of that same instant (some exports label it so); a day using both names it twice.

A label alone cannot tell the two October ``03:00`` apart, so rows are walked in file order:
the first occurrence of a repeated label is the earlier instant (summer time), the second the
later one (winter time). Two more shapes seen in real files: i-DE adds a ``00:00`` row, which is
the previous day's ``24:00`` (the interval ending at the midnight that opens the date), and
CNMC-style CSV files number the intervals of a day (1 = the first) instead of labelling them.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

STEP_MS = 15 * 60_000  # the finest Datadis resolution; hourly labels are a subset
DEFAULT_TZ = "Europe/Madrid"
_DATE = re.compile(r"^(\d{4})[/-](\d{2})[/-](\d{2})$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::00)?$")
#: the i-DE extra row: the interval ending at the midnight that starts the date
MIDNIGHT_LABEL = "00:00"

Zone = str | ZoneInfo


class DatadisTimeError(ValueError):
    """A date or time label that does not name an interval end of that day."""


def _key(tz: Zone) -> str:
    return tz.key if isinstance(tz, ZoneInfo) else tz


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


def local_midnight_ms(day: date, tz: Zone) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(_key(tz))).timestamp()
               * 1000)


def _label(local: datetime, day: date) -> str:
    """``HH:MM`` of a local wall time, ``24:00`` when it is the midnight after ``day``."""
    if local.date() != day:
        return "24:00"
    return f"{local.hour:02d}:{local.minute:02d}"


def end_label(end_ms: int, tz: Zone = DEFAULT_TZ) -> tuple[date, str]:
    """The Datadis ``(date, time)`` of an interval ending at ``end_ms`` (15-minute grid)."""
    zone = ZoneInfo(_key(tz))
    before = datetime.fromtimestamp((end_ms - 1) / 1000, UTC).astimezone(zone)
    day = before.date()
    # the wall time during the interval, one millisecond later: offset of the interval itself
    wall = (before.replace(tzinfo=None) + timedelta(milliseconds=1))
    return day, ("24:00" if wall.date() != day else f"{wall.hour:02d}:{wall.minute:02d}")


@lru_cache(maxsize=1024)
def _day_labels(day: date, tz: str) -> tuple[dict[str, tuple[int, ...]],
                                             dict[str, tuple[int, ...]]]:
    zone = ZoneInfo(tz)
    start, stop = local_midnight_ms(day, tz), local_midnight_ms(day + timedelta(days=1), tz)
    primary: dict[str, list[int]] = {}
    alias: dict[str, list[int]] = {}
    for end in range(start + STEP_MS, stop + 1, STEP_MS):
        primary.setdefault(end_label(end, tz)[1], []).append(end)
        at_end = datetime.fromtimestamp(end / 1000, UTC).astimezone(zone)
        alias.setdefault(_label(at_end, day), []).append(end)
    return ({k: tuple(v) for k, v in primary.items()}, {k: tuple(v) for k, v in alias.items()})


def day_labels(day: date, tz: Zone = DEFAULT_TZ) -> tuple[dict[str, tuple[int, ...]],
                                                          dict[str, tuple[int, ...]]]:
    """For one local day: label → end instants (UTC ms, ascending) under the primary rule
    (offset *during* the interval), and the alias rule (offset *at* the end instant)."""
    return _day_labels(day, _key(tz))


def label_instants(day: date, label: str, tz: Zone = DEFAULT_TZ) -> tuple[int, ...]:
    """End instants a label can name on ``day`` (two for the repeated October labels)."""
    primary, alias = day_labels(day, tz)
    return primary.get(label) or alias.get(label, ())


class DayWalker:
    """Turns rows, in file order, into end instants; keeps apart repeated October labels.

    ``key`` separates independent series inside one file (one per CUPS): each series walks its
    own days. A label seen more times than the day has instants for it is an error. ``step_s``
    is the series' resolution (3600: only ``HH:00`` labels; ordinals count hours). With
    ``repeats_ok`` an instant named twice (the i-DE ``00:00`` row after the previous ``24:00``,
    a March day naming 02:00 and 03:00) is returned again for the caller to count as a
    duplicate; otherwise it is an error.
    """

    def __init__(self, tz: Zone = DEFAULT_TZ, *, step_s: int = 900,
                 repeats_ok: bool = False) -> None:
        if step_s * 1000 % STEP_MS:
            raise ValueError(f"step_s {step_s} is not a multiple of 15 minutes")
        self.tz = _key(tz)
        self.step_ms = step_s * 1000
        self.repeats_ok = repeats_ok
        self._seen: dict[tuple[Hashable, date, str], int] = {}
        self._used: set[tuple[Hashable, int]] = set()

    def instant(self, day_text: str, time_text: str | int, key: Hashable = None) -> int:
        """UTC epoch ms at which the interval labelled ``(day_text, time_text)`` ends;
        ``time_text`` may be an ``int`` ordinal (1 = the day's first interval)."""
        day = parse_day(day_text)
        if isinstance(time_text, int):
            return self._use(key, self._ordinal(day, time_text), f"{day_text} #{time_text}")
        if time_text.strip() == MIDNIGHT_LABEL:
            return self._use(key, local_midnight_ms(day, self.tz), f"{day_text} 00:00")
        label = parse_time(time_text)
        candidates = tuple(t for t in label_instants(day, label, self.tz)
                           if (t - local_midnight_ms(day, self.tz)) % self.step_ms == 0)
        if not candidates:
            raise DatadisTimeError(f"{day_text} {time_text} does not exist in {self.tz} "
                                   f"(clock change, or not a {self.step_ms // 60_000}-minute "
                                   "interval end)")
        occurrence = self._seen.get((key, day, label), 0)
        if occurrence >= len(candidates):
            raise DatadisTimeError(f"{day_text} {time_text} appears more than "
                                   f"{len(candidates)} time(s)")
        self._seen[(key, day, label)] = occurrence + 1
        return self._use(key, candidates[occurrence], f"{day_text} {time_text}")

    def _ordinal(self, day: date, n: int) -> int:
        start = local_midnight_ms(day, self.tz)
        count = (local_midnight_ms(day + timedelta(days=1), self.tz) - start) // self.step_ms
        if not 1 <= n <= count:
            raise DatadisTimeError(f"{day}: interval {n} does not exist ({count} that day)")
        return start + n * self.step_ms

    def _use(self, key: Hashable, instant: int, what: str) -> int:
        if (key, instant) in self._used and not self.repeats_ok:
            raise DatadisTimeError(f"{what} names an interval already given")
        self._used.add((key, instant))
        return instant


def walk(rows: Iterable[tuple[str, str]], tz: Zone = DEFAULT_TZ) -> list[int]:
    """End instants of one series' ``(date, time)`` rows, in order."""
    walker = DayWalker(tz)
    return [walker.instant(day, time) for day, time in rows]


@dataclass(frozen=True)
class Placed:
    """A row placed in time, or the reason it could not be."""

    index: int  # position of the row in the input
    end_ms: int | None
    error: str | None = None


def place_rows(rows: Sequence[tuple[str, str | int]], tz: Zone, step_s: int) -> list[Placed]:
    """The batch form (one series, e.g. a month of one CUPS): every row placed or refused with
    its reason, in input order; an instant named twice comes back twice (the caller removes
    duplicates)."""
    walker = DayWalker(tz, step_s=step_s, repeats_ok=True)
    out = []
    for i, (day_text, label) in enumerate(rows):
        try:
            out.append(Placed(i, walker.instant(day_text, label)))
        except DatadisTimeError as exc:
            out.append(Placed(i, None, str(exc)))
    return out


def iso_utc(ts_ms: int) -> str:
    """``2025-10-26T01:00:00Z``."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- months (the connector queries Datadis one month at a time) --------------------------------
def month_bounds_ms(year: int, month: int, tz: Zone) -> tuple[int, int]:
    """UTC ms of the local midnights that open and close a month (interval ends in (a, b])."""
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return local_midnight_ms(date(year, month, 1), tz), local_midnight_ms(nxt, tz)


def months_between(first: tuple[int, int], last: tuple[int, int]) -> list[tuple[int, int]]:
    """Inclusive list of (year, month) from ``first`` to ``last``."""
    out = []
    y, m = first
    while (y, m) <= last:
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def add_months(ym: tuple[int, int], n: int) -> tuple[int, int]:
    index = ym[0] * 12 + (ym[1] - 1) + n
    return index // 12, index % 12 + 1


def month_of_ms(ts_ms: int, tz: Zone) -> tuple[int, int]:
    """Local month an interval *ending* at ``ts_ms`` belongs to (ends at midnight → before)."""
    local = datetime.fromtimestamp((ts_ms - 1) / 1000, UTC).astimezone(ZoneInfo(_key(tz)))
    return local.year, local.month
