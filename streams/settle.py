"""Offline hourly settlement from Datadis-style CSV files (``ioe settle``), no servers.

The same pure functions as the stream worker (:func:`streams.energy.balance.split`, the
coefficient schedule) applied to official hourly data, so the two paths can check each other.

Inputs (``;`` separated, header first, decimal point or comma):

* consumption ``cups;date;time;consumption_kwh`` — one row per member and hour;
* generation ``cups;date;time;generation_kwh`` — the plant's net hourly generation (several
  plant CUPS in one file are added hour by hour: the community shares their total);

``date`` is ``YYYY/MM/DD`` and ``time`` the local end of the hour ``01:00`` … ``24:00`` with both
clock-change days (see :mod:`ioe.datadis_time`). Extra columns (Datadis exports carry
``obtainMethod``…) are ignored. Any bad input raises :class:`SettleError` naming ``file:line``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ioe.coefficients import (
    HOUR_MS,
    CoefficientError,
    CoefficientSchedule,
    hour_of_year,
    in_force,
    normalize_cups,
)
from ioe.datadis_time import DatadisTimeError, DayWalker, iso_utc
from streams.energy.balance import split

KINDS = {"consumption": "consumption_kwh", "generation": "generation_kwh"}
OUTPUT_HEADER = ("cups", "date", "time", "hour_end_utc", "coefficient", "consumption_kwh",
                 "assigned_kwh", "self_consumed_kwh", "surplus_kwh", "grid_import_kwh")
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")


class SettleError(ValueError):
    """Input that cannot be settled; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class HourValue:
    """One CSV row: ``kwh`` of ``cups`` in the hour ending at ``end_ms`` (UTC)."""

    source: str
    line: int
    cups: str
    date: str
    time: str
    end_ms: int
    kwh: float

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class SettledHour:
    cups: str
    date: str
    time: str
    end_ms: int
    coefficient: float
    consumption_kwh: float
    assigned_kwh: float
    self_consumed_kwh: float
    surplus_kwh: float
    grid_import_kwh: float
    generation_kwh: float  # the community's net generation that hour (not in the CSV)

    @property
    def start_ms(self) -> int:
        return self.end_ms - HOUR_MS


@dataclass(frozen=True)
class MemberTotals:
    cups: str
    hours: int
    consumption_kwh: float
    assigned_kwh: float
    self_consumed_kwh: float
    surplus_kwh: float
    grid_import_kwh: float


@dataclass(frozen=True)
class Summary:
    members: tuple[MemberTotals, ...]
    generation_kwh: float  # Σ positive net generation over the settled hours
    self_consumed_kwh: float
    ratio: float | None  # community self-consumption: Σ SC / Σ G (None without generation)


# -- reading -----------------------------------------------------------------------------------
def parse_kwh(text: str, where: str) -> float:
    """``1.234`` or ``1,234`` (no thousands separators: ``1.234,5`` is refused, not guessed)."""
    text = text.strip()
    if not _NUMBER.match(text):
        raise SettleError(f"{where}: {text!r} is not a number (decimal point or comma)")
    value = float(text.replace(",", "."))
    if not math.isfinite(value):
        raise SettleError(f"{where}: {text!r} is not a finite number")
    return value


def read_series(text: str, source: str, kind: str,
                tz: str = "Europe/Madrid") -> list[HourValue]:
    """Rows of a consumption or generation CSV, in file order, with their UTC end instants."""
    value_column = KINDS[kind]
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or not lines[0].strip():
        raise SettleError(f"{source}:1: empty file, expected header 'cups;date;time;"
                          f"{value_column}'")
    header = [h.strip().lower() for h in lines[0].split(";")]
    required = ("cups", "date", "time", value_column)
    missing = [name for name in required if name not in header]
    if missing:
        raise SettleError(f"{source}:1: header must be 'cups;date;time;{value_column}' "
                          f"(missing {', '.join(missing)}), got {lines[0]!r}")
    index = {name: header.index(name) for name in required}
    walker = DayWalker(tz)
    rows: list[HourValue] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        parts = line.split(";")
        if len(parts) < len(header):
            raise SettleError(f"{where}: expected {len(header)} fields, got {len(parts)}")
        try:
            cups = normalize_cups(parts[index["cups"]].strip())
        except CoefficientError as exc:
            raise SettleError(f"{where}: {exc}") from None
        day, time = parts[index["date"]].strip(), parts[index["time"]].strip()
        if not time.endswith(":00"):
            raise SettleError(f"{where}: time {time!r} is not an hour end (hourly data only)")
        try:
            end_ms = walker.instant(day, time, key=cups)
        except DatadisTimeError as exc:
            raise SettleError(f"{where}: {exc} for CUPS {cups}") from None
        kwh = parse_kwh(parts[index[value_column]], where)
        if kind == "consumption" and kwh < 0:
            raise SettleError(f"{where}: negative consumption {kwh}")
        rows.append(HourValue(source, number, cups, day, time, end_ms, kwh))
    return rows


def read_series_file(path: str | Path, kind: str, tz: str = "Europe/Madrid") -> list[HourValue]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SettleError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # Spanish exports in Windows code pages; only digits matter
    return read_series(text, str(path), kind, tz)


# -- settling ----------------------------------------------------------------------------------
def generation_by_hour(rows: Iterable[HourValue]) -> dict[int, float]:
    """Net generation per hour end, summed over the plant CUPS of the file."""
    total: dict[int, float] = {}
    for row in rows:
        total[row.end_ms] = total.get(row.end_ms, 0.0) + row.kwh
    return total


def settle(schedules: Sequence[CoefficientSchedule], consumption: Iterable[HourValue],
           generation: Iterable[HourValue], *, generation_source: str = "generation",
           tz: str = "Europe/Madrid") -> list[SettledHour]:
    """One settled row per consumption row, in input order (DESIGN.md §1 per member-hour)."""
    generated = generation_by_hour(generation)
    out: list[SettledHour] = []
    for row in consumption:
        start_ms = row.end_ms - HOUR_MS
        schedule = in_force(schedules, start_ms, tz)
        if schedule is None:
            year, hour = hour_of_year(start_ms, tz)
            raise SettleError(f"{row.where}: no coefficient file covers {row.date} {row.time} "
                              f"(hour {hour:04d} of {year})")
        if not schedule.has(row.cups):
            raise SettleError(f"{row.where}: unknown CUPS {row.cups} (not in coefficient file "
                              f"{schedule.source})")
        if row.end_ms not in generated:
            raise SettleError(f"{row.where}: hour {row.date} {row.time} "
                              f"({iso_utc(row.end_ms)}) missing from {generation_source}")
        beta = schedule.beta(row.cups, start_ms, tz)
        g = generated[row.end_ms]
        part = split(beta, g, row.kwh)
        out.append(SettledHour(row.cups, row.date, row.time, row.end_ms, beta, row.kwh,
                               part.assigned, part.self_consumed, part.surplus,
                               part.grid_import, g))
    return out


def summarize(rows: Sequence[SettledHour]) -> Summary:
    """Per-member totals (first-seen order) and the community self-consumption ratio
    Σ SC / Σ max(G, 0) over the hours settled."""
    per_member: dict[str, list[SettledHour]] = {}
    for row in rows:
        per_member.setdefault(row.cups, []).append(row)
    members = tuple(
        MemberTotals(cups, len(hours), *(math.fsum(getattr(h, name) for h in hours)
                                         for name in OUTPUT_HEADER[5:]))
        for cups, hours in per_member.items())
    generation = math.fsum(max(g, 0.0) for g in {r.end_ms: r.generation_kwh for r in rows}
                           .values())
    self_consumed = math.fsum(m.self_consumed_kwh for m in members)
    ratio = self_consumed / generation if generation > 0 else None
    return Summary(members, generation, self_consumed, ratio)


# -- writing -----------------------------------------------------------------------------------
def _kwh(value: float) -> str:
    text = f"{value:.6f}"
    return "0.000000" if text == "-0.000000" else text


def csv_lines(rows: Iterable[SettledHour]) -> Iterable[str]:
    yield ";".join(OUTPUT_HEADER)
    for r in rows:
        yield ";".join((r.cups, r.date, r.time, iso_utc(r.end_ms), f"{r.coefficient:.6f}",
                        _kwh(r.consumption_kwh), _kwh(r.assigned_kwh),
                        _kwh(r.self_consumed_kwh), _kwh(r.surplus_kwh),
                        _kwh(r.grid_import_kwh)))


def summary_lines(summary: Summary) -> Iterable[str]:
    yield (f"{'cups':<22} {'hours':>5} {'consumption':>12} {'assigned':>12} "
           f"{'self_cons.':>12} {'surplus':>12} {'import':>12}  kWh")
    for m in summary.members:
        yield (f"{m.cups:<22} {m.hours:>5} {m.consumption_kwh:>12.3f} {m.assigned_kwh:>12.3f} "
               f"{m.self_consumed_kwh:>12.3f} {m.surplus_kwh:>12.3f} {m.grid_import_kwh:>12.3f}")
    ratio = "n/a (no generation)" if summary.ratio is None else f"{summary.ratio * 100:.2f} %"
    yield (f"community: generation {summary.generation_kwh:.3f} kWh, self-consumed "
           f"{summary.self_consumed_kwh:.3f} kWh, self-consumption ratio {ratio}")
