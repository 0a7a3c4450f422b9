"""Datadis local labels → UTC instants, surviving both clock-change days.

Datadis labels each value with a local date ``YYYY/MM/DD`` and a time ``HH:MM`` that marks the
*end* of the interval (``01:00``…``24:00``; ``24:00`` is midnight of the next day). A label is
not a key: on the October change day ``03:00`` appears twice (first the summer-time hour, then
the winter-time hour) and on the March day there is no ``03:00``. So we never look labels up in
a ``(date, hour)`` table; instead we build the day's real intervals (23, 24 or 25 of them for
hours) from the time-zone rules, give each the label Datadis uses for it, and walk the day's
rows *in order*, matching each row to the next interval carrying its label. Duplicated labels
therefore land on successive instants, exactly as Datadis means them.

The label of an interval is the local wall-clock time of its *start* plus its length: in March
the interval starting 03:00 CEST (= 02:00 CET) is ``04:00`` and the one before it ``02:00``; in
October both intervals starting at 02:00 (CEST, then CET) are ``03:00``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


class TimeLabelError(ValueError):
    """A row whose date/time cannot be placed on the day's intervals."""


@dataclass(frozen=True)
class Slot:
    label_min: int  # minutes after local midnight, as Datadis writes it (60…1440)
    end_ms: int  # UTC epoch ms of the interval end


def parse_date(text: str) -> date:
    """``YYYY/MM/DD`` (API), also ``YYYY-MM-DD`` and ``DD/MM/YYYY`` (CSV downloads)."""
    text = text.strip()
    parts = text.replace("-", "/").split("/")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise TimeLabelError(f"not a date: {text!r}")
    a, b, c = (int(p) for p in parts)
    try:
        return date(a, b, c) if len(parts[0]) == 4 else date(c, b, a)
    except ValueError as exc:
        raise TimeLabelError(f"not a date: {text!r} ({exc})") from None


def parse_label(text: str) -> int:
    """``HH:MM`` → minutes after midnight (``24:00`` → 1440); ``H:MM`` accepted."""
    text = text.strip()
    hh, sep, mm = text.partition(":")
    if not sep or not hh.isdigit() or not mm[:2].isdigit():
        raise TimeLabelError(f"not a time: {text!r}")
    minutes = int(hh) * 60 + int(mm[:2])
    if minutes > 1440 or int(mm[:2]) >= 60:
        raise TimeLabelError(f"not a time: {text!r}")
    return minutes


def local_midnight_ms(day: date, tz: ZoneInfo) -> int:
    return int(datetime.combine(day, time(0), tzinfo=tz).timestamp() * 1000)


def day_slots(day: date, tz: ZoneInfo, step_s: int) -> list[Slot]:
    """The real intervals of a local day (23/24/25 hours, or 92/96/100 quarter-hours)."""
    start = local_midnight_ms(day, tz)
    end = local_midnight_ms(day + timedelta(days=1), tz)
    step_ms = step_s * 1000
    slots = []
    for t in range(start, end, step_ms):
        local = datetime.fromtimestamp(t / 1000, UTC).astimezone(tz)
        slots.append(Slot(local.hour * 60 + local.minute + step_s // 60, t + step_ms))
    return slots


@dataclass(frozen=True)
class Placed:
    """A row placed in time, or the reason it could not be."""

    index: int  # position of the row in the input
    end_ms: int | None
    error: str | None = None


def place_rows(rows: Sequence[tuple[str, str | int]], tz: ZoneInfo, step_s: int) -> list[Placed]:
    """Assign a UTC interval end to each ``(date, time)`` row, walking each day in order.

    ``time`` is a Datadis label (``"HH:MM"``) or, for CNMC-style CSV files, an ``int`` ordinal
    (1 = first interval of the day). A ``00:00`` label (i-DE adds one) is the interval ending at
    the local midnight that starts the date, i.e. the previous day's ``24:00``. The result keeps
    the input order; the caller removes duplicates.
    """
    by_day: dict[str, list[int]] = {}
    for i, (day_text, _) in enumerate(rows):
        by_day.setdefault(day_text.strip(), []).append(i)
    placed: dict[int, Placed] = {}
    for day_text, indexes in by_day.items():
        try:
            day = parse_date(day_text)
        except TimeLabelError as exc:
            placed.update({i: Placed(i, None, str(exc)) for i in indexes})
            continue
        slots = day_slots(day, tz, step_s)
        used = [False] * len(slots)
        cursor = 0
        for i in indexes:
            placed[i] = _place_one(i, rows[i][1], day, tz, slots, used, cursor)
            if placed[i].end_ms is not None and placed[i].error is None:
                hit = next((j for j, s in enumerate(slots)
                            if s.end_ms == placed[i].end_ms), None)
                if hit is not None:
                    cursor = hit + 1
    return [placed[i] for i in range(len(rows))]


def _place_one(i: int, label: str | int, day: date, tz: ZoneInfo, slots: list[Slot],
               used: list[bool], cursor: int) -> Placed:
    if isinstance(label, int):  # CSV ordinal: the n-th interval of the day
        if 1 <= label <= len(slots):
            used[label - 1] = True
            return Placed(i, slots[label - 1].end_ms)
        return Placed(i, None, f"{day}: interval {label} does not exist ({len(slots)} that day)")
    try:
        minutes = parse_label(label)
    except TimeLabelError as exc:
        return Placed(i, None, str(exc))
    if minutes == 0:
        return Placed(i, local_midnight_ms(day, tz))
    # the next unused interval with this label at or after the cursor, else any unused one
    order = list(range(cursor, len(slots))) + list(range(0, cursor))
    for j in order:
        if not used[j] and slots[j].label_min == minutes:
            used[j] = True
            return Placed(i, slots[j].end_ms)
    return Placed(i, None, f"{day} {label}: no such interval that day "
                           f"(or more rows than intervals)")


def month_bounds_ms(year: int, month: int, tz: ZoneInfo) -> tuple[int, int]:
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


def month_of_ms(ts_ms: int, tz: ZoneInfo) -> tuple[int, int]:
    """Local month an interval *ending* at ``ts_ms`` belongs to (ends at midnight → before)."""
    local = datetime.fromtimestamp((ts_ms - 1) / 1000, UTC).astimezone(tz)
    return local.year, local.month


def iter_labels(slots: Iterable[Slot]) -> list[str]:
    """Labels as Datadis writes them (for the fake server and tests)."""
    return [f"{s.label_min // 60:02d}:{s.label_min % 60:02d}" for s in slots]
