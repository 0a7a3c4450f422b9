"""Distribution coefficients β: the official distributor file and the hour-of-year clock.

File format (DESIGN.md §1, Orden TED/1247/2021): ``<CAU>_<YYYY>.txt``, UTF-8 without BOM, ``;``
separated, decimal comma, exactly 6 decimals, no header. Static line ``CUPS;0,350000``; hourly
line ``CUPS;HHHH;0,350000`` with ``HHHH`` the hour of the year 0001…8760 (8784 in leap years).

The hour of the year counts *elapsed* hours since 1 January 00:00 local time, so the clock
changes neither add nor drop an hour: 8760 hours always fit in a common year.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from stdnum.es import cups as stdnum_cups

#: Every β has exactly 6 decimals, so a true sum is a multiple of 1e-6: half of that tells
#: float noise apart from a real error (0,999999 or 1,000001 must be rejected, both ways).
SUM_TOLERANCE = 5e-7
HOUR_MS = 3_600_000


class CoefficientError(ValueError):
    """A coefficient file or schedule that cannot be used; names the file and line."""


def hours_in_year(year: int) -> int:
    return 8784 if calendar.isleap(year) else 8760


@lru_cache(maxsize=64)
def year_start_ms(year: int, tz: str = "Europe/Madrid") -> int:
    """UTC epoch ms of 1 January 00:00 local time."""
    return int(datetime(year, 1, 1, tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def local_year(ts_ms: int, tz: str = "Europe/Madrid") -> int:
    return datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz)).year


def hour_of_year(ts_ms: int, tz: str = "Europe/Madrid") -> tuple[int, int]:
    """(year, HHHH) of the hour that *contains* the instant ``ts_ms`` (HHHH is 1-based)."""
    year = local_year(ts_ms, tz)
    return year, (ts_ms - year_start_ms(year, tz)) // HOUR_MS + 1


def hour_start_ms(year: int, hour: int, tz: str = "Europe/Madrid") -> int:
    """UTC epoch ms at which hour ``HHHH`` of ``year`` starts."""
    return year_start_ms(year, tz) + (hour - 1) * HOUR_MS


def normalize_cups(value: str) -> str:
    """Upper-case, compact CUPS; raises CoefficientError when the check letters are wrong."""
    result = _normalize_cups(value)
    if isinstance(result, CoefficientError):
        raise CoefficientError(*result.args)
    return result


@lru_cache(maxsize=4096)
def _normalize_cups(value: str) -> str | CoefficientError:
    """Cached: an hourly file repeats each CUPS 8760 times (the error is returned, not raised,
    so a fresh exception is raised at every call site)."""
    try:
        return str(stdnum_cups.validate(value))
    except Exception as exc:  # stdnum raises several ValidationError subclasses
        return CoefficientError(f"invalid CUPS {value!r}: {exc}")


def cups_base(value: str) -> str:
    """The 20-character CUPS without the optional 2-character suffix (``1F``, ``0F``…)."""
    return value[:20]


@dataclass(frozen=True)
class CoefficientSchedule:
    """One coefficient set in force from ``effective_from`` (local date) onwards.

    ``static``: one β per CUPS. ``hourly``: a list of β per CUPS indexed by hour of the year
    (index 0 = hour 0001) for ``year``.
    """

    kind: str
    by_cups: Mapping[str, float | Sequence[float]]
    effective_from: date = date(2000, 1, 1)
    year: int | None = None
    source: str = ""
    _base_index: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("static", "hourly"):
            raise CoefficientError(f"{self.source}: kind must be static or hourly")
        for cups in self.by_cups:
            self._base_index.setdefault(cups_base(cups), cups)

    def has(self, cups: str) -> bool:
        return cups in self.by_cups or cups_base(cups) in self._base_index

    def beta(self, cups: str, ts_ms: int, tz: str = "Europe/Madrid") -> float:
        """β of a member for the hour containing ``ts_ms``; 0 for a CUPS the file omits."""
        key = cups if cups in self.by_cups else self._base_index.get(cups_base(cups))
        if key is None:
            return 0.0
        value = self.by_cups[key]
        if self.kind == "static":
            return float(value)  # type: ignore[arg-type]
        year, hour = hour_of_year(ts_ms, tz)
        if year != self.year:
            raise CoefficientError(f"{self.source}: hourly schedule for {self.year} asked for {year}")
        return float(value[hour - 1])  # type: ignore[index]

    def hour_sums(self) -> list[float]:
        if self.kind == "static":
            return [math.fsum(float(v) for v in self.by_cups.values())]  # type: ignore[arg-type]
        hours = hours_in_year(self.year or 2001)
        return [math.fsum(float(v[h]) for v in self.by_cups.values())  # type: ignore[index]
                for h in range(hours)]

    def check_sums(self) -> None:
        for index, total in enumerate(self.hour_sums()):
            if abs(total - 1.0) > SUM_TOLERANCE:
                where = "" if self.kind == "static" else f" in hour {index + 1:04d}"
                raise CoefficientError(
                    f"{self.source}: coefficients sum to {total:.6f}{where}, not 1")


# -- the official file -------------------------------------------------------------------------
_DECIMAL = re.compile(r"^[0-9]+,[0-9]{6}$")


def _parse_decimal(text: str, where: str) -> float:
    text = text.strip()
    if not _DECIMAL.match(text):
        raise CoefficientError(f"{where}: coefficient {text!r} must have a decimal comma and "
                               "exactly 6 decimals")
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        raise CoefficientError(f"{where}: coefficient {text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise CoefficientError(f"{where}: coefficient {text} outside 0…1")
    return value


def parse_file(path: str | Path, *, effective_from: date | None = None,
               year: int | None = None, check_sums: bool = True) -> CoefficientSchedule:
    path = Path(path)
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise CoefficientError(f"{path}:1: file starts with a BOM (must be UTF-8 without BOM)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CoefficientError(f"{path}: not UTF-8 ({exc})") from None
    if year is None:
        stem_year = path.stem.rsplit("_", 1)[-1]
        year = (int(stem_year) if stem_year.isascii() and stem_year.isdigit()
                and len(stem_year) == 4 else None)
    return parse_text(text, source=str(path), effective_from=effective_from, year=year,
                      check_sums=check_sums)


def parse_text(text: str, *, source: str = "<text>", effective_from: date | None = None,
               year: int | None = None, check_sums: bool = True) -> CoefficientSchedule:
    static: dict[str, float] = {}
    hourly: dict[str, dict[int, float]] = {}
    lines_of_hour: dict[int, list[int]] = {}  # hour (0 for static) -> line numbers, for errors
    kind: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        if not line.strip():
            continue
        parts = line.strip().split(";")
        line_kind = {2: "static", 3: "hourly"}.get(len(parts))
        if line_kind is None:
            raise CoefficientError(f"{where}: expected 'CUPS;β' or 'CUPS;HHHH;β', got {line!r}")
        if kind is None:
            kind = line_kind
        elif kind != line_kind:
            raise CoefficientError(f"{where}: mixes static and hourly lines")
        try:
            cups = normalize_cups(parts[0])
        except CoefficientError as exc:
            raise CoefficientError(f"{where}: {exc}") from None
        beta = _parse_decimal(parts[-1], where)
        if kind == "static":
            if cups in static:
                raise CoefficientError(f"{where}: CUPS {cups} appears twice")
            static[cups] = beta
            lines_of_hour.setdefault(0, []).append(number)
        else:
            hour_text = parts[1].strip()
            # isascii first: str.isdigit() also accepts '²' or '٠١', which int() then refuses
            # (a bare ValueError no caller catches) or reads as another hour
            if not (hour_text.isascii() and hour_text.isdigit() and len(hour_text) == 4):
                raise CoefficientError(f"{where}: hour {hour_text!r} must be 4 ASCII digits")
            hour = int(hour_text)
            limit = hours_in_year(year) if year else 8784
            if not 1 <= hour <= limit:
                raise CoefficientError(f"{where}: hour {hour} outside 0001…{limit}")
            per_hour = hourly.setdefault(cups, {})
            if hour in per_hour:
                raise CoefficientError(f"{where}: CUPS {cups} hour {hour:04d} appears twice")
            per_hour[hour] = beta
            lines_of_hour.setdefault(hour, []).append(number)
    if kind is None:
        raise CoefficientError(f"{source}: no coefficients")
    start = effective_from or (date(year, 1, 1) if year else date(2000, 1, 1))
    if kind == "static":
        schedule = CoefficientSchedule("static", static, start, year, source)
    else:
        if year is None:
            raise CoefficientError(f"{source}: an hourly file needs its year (<CAU>_<YYYY>.txt)")
        hours = hours_in_year(year)
        by_cups: dict[str, list[float]] = {}
        for cups, per_hour in hourly.items():
            missing = [h for h in range(1, hours + 1) if h not in per_hour]
            if missing:
                raise CoefficientError(f"{source}: CUPS {cups} has no line for hour "
                                       f"{missing[0]:04d} ({len(missing)} hours missing)")
            by_cups[cups] = [per_hour[h] for h in range(1, hours + 1)]
        schedule = CoefficientSchedule("hourly", by_cups, start, year, source)
    if check_sums:
        _check_sums(schedule, lines_of_hour, source)
    return schedule


def _check_sums(schedule: CoefficientSchedule, lines_of_hour: Mapping[int, Sequence[int]],
                source: str) -> None:
    """Like :meth:`CoefficientSchedule.check_sums`, but naming the file lines of the bad hour
    (the last of them as *the* line: that is where the sum is complete)."""
    for index, total in enumerate(schedule.hour_sums()):
        if abs(total - 1.0) > SUM_TOLERANCE:
            hour = 0 if schedule.kind == "static" else index + 1
            lines = list(lines_of_hour.get(hour, ()))
            shown = ", ".join(str(n) for n in lines[:12]) + (", …" if len(lines) > 12 else "")
            what = "coefficients" if hour == 0 else f"coefficients of hour {hour:04d}"
            raise CoefficientError(f"{source}:{lines[-1] if lines else 1}: {what} sum to "
                                   f"{total:.6f}, not 1 (lines {shown})")


def format_beta(value: float) -> str:
    return f"{value:.6f}".replace(".", ",")


def write_lines(schedule: CoefficientSchedule) -> Iterable[str]:
    """Lines of the official file (without line endings)."""
    if schedule.kind == "static":
        for cups, beta in schedule.by_cups.items():
            yield f"{cups};{format_beta(float(beta))}"  # type: ignore[arg-type]
        return
    for cups, betas in schedule.by_cups.items():
        for index, beta in enumerate(betas):  # type: ignore[arg-type]
            yield f"{cups};{index + 1:04d};{format_beta(beta)}"


def write_file(schedule: CoefficientSchedule, path: str | Path) -> None:
    Path(path).write_text("".join(f"{line}\n" for line in write_lines(schedule)),
                          encoding="utf-8")


def to_hourly(schedule: CoefficientSchedule, year: int) -> CoefficientSchedule:
    if schedule.kind == "hourly":
        return schedule
    hours = hours_in_year(year)
    return CoefficientSchedule(
        "hourly", {c: [float(b)] * hours for c, b in schedule.by_cups.items()},  # type: ignore[arg-type]
        schedule.effective_from, year, schedule.source)


def to_static(schedule: CoefficientSchedule) -> CoefficientSchedule:
    """Collapse an hourly schedule whose β never changes; refuse one that really varies."""
    if schedule.kind == "static":
        return schedule
    by_cups: dict[str, float] = {}
    for cups, betas in schedule.by_cups.items():
        values = set(betas)  # type: ignore[arg-type]
        if len(values) != 1:
            raise CoefficientError(f"{schedule.source}: CUPS {cups} has {len(values)} different "
                                   "hourly coefficients; a static file cannot express them")
        by_cups[cups] = values.pop()
    return CoefficientSchedule("static", by_cups, schedule.effective_from, None, schedule.source)


def schedule_to_dict(schedule: CoefficientSchedule) -> dict[str, object]:
    return {"kind": schedule.kind, "effective_from": schedule.effective_from.isoformat(),
            "year": schedule.year, "source": schedule.source,
            "by_cups": {k: (list(v) if not isinstance(v, float | int) else v)
                        for k, v in schedule.by_cups.items()}}


def schedule_from_dict(data: Mapping[str, object]) -> CoefficientSchedule:
    return CoefficientSchedule(
        str(data["kind"]), dict(data["by_cups"]),  # type: ignore[call-overload]
        date.fromisoformat(str(data["effective_from"])),
        int(data["year"]) if data.get("year") is not None else None,  # type: ignore[call-overload]
        str(data.get("source", "")))


def in_force(schedules: Sequence[CoefficientSchedule], ts_ms: int,
             tz: str = "Europe/Madrid") -> CoefficientSchedule | None:
    """The schedule in force at an instant: the latest ``effective_from`` not after its local
    date, preferring, for an hourly schedule, the one of the instant's year."""
    day = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(ZoneInfo(tz)).date()
    year = day.year
    candidates = [s for s in schedules if s.effective_from <= day
                  and (s.kind == "static" or s.year == year)]
    if not candidates:
        return None
    return max(candidates, key=lambda s: s.effective_from)
