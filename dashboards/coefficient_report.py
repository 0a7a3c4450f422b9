"""The coefficient comparison of the control centre: the optimiser's own report, read back.

Why a report file and not an endpoint that optimises: ``ioe coefficients optimise --report``
already settles the coefficients in force and the optimised ones on the same history with
``ioe settle``'s code and writes the result as CSV (``<OUT>/<CAU>_<YYYY>.txt.report.csv``
beside the official file). Showing that file is showing exactly what the operator got from the
optimiser — no second computation that could disagree with it, no solver in the web server,
and the web server needs neither numpy nor scipy. The operator runs the optimiser with
``--out <reports dir>/`` (default ``.local/coefficient-reports/``, ``ioe web
--coefficient-reports DIR``); the newest target year of the community's CAU is shown.

The CSV's format, writer and reader are one module, :mod:`streams.energy.report`: one row per
CUPS and scenario (``current``, ``optimised``) and a ``community`` row per scenario.

Per hour of the day, the report has no energy figures; what the optimiser does per hour is in
the official file it wrote beside the report (``<CAU>_<YYYY>.txt``, one β per member and hour
of the year). :func:`hour_profile` averages each member's β over the year by local hour of the
day, next to the member's annual share under the file in force (its assigned energy over the
community's, from the report: for a static file in force, that *is* its β every hour).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ioe.coefficients import (
    HOUR_MS,
    CoefficientError,
    cups_base,
    hours_in_year,
    parse_file,
    year_start_ms,
)
from ioe.registry import Community
from streams.energy.report import (
    COMMUNITY_ROW,
    FIGURES,
    ReportError,
    ReportRow,
    parse_report,
)

__all__ = ["Report", "ReportError", "community_report", "find_report", "parse_report"]

#: ``<CAU>_<YYYY>.txt.report.csv``: the name the optimiser gives its report by default
REPORT_NAME = re.compile(r"^(?P<cau>[A-Z0-9]+)_(?P<year>\d{4})\.txt\.report\.csv$")
CAVEAT_ES = ("Calculado con los datos del año pasado sobre el calendario del año objetivo: "
             "la ganancia del año que viene es una estimación (el tiempo y los hábitos cambian).")


def settled_dict(row: ReportRow) -> dict[str, Any]:
    """The figures of one report row for the page (scenario and CUPS are the keys around it)."""
    return {**{name: getattr(row, name) for name in FIGURES},
            "self_consumption_ratio": _round(row.self_consumption_ratio),
            "coverage_ratio": _round(row.coverage_ratio)}


@dataclass(frozen=True)
class Comparison:
    """Current vs optimised for one CUPS (``member_id`` None when the registry lacks it) or
    the community."""

    cups: str
    member_id: str | None
    name: str
    current: ReportRow
    optimised: ReportRow

    def to_dict(self) -> dict[str, Any]:
        return {"cups": self.cups, "member_id": self.member_id, "name": self.name,
                "current": settled_dict(self.current),
                "optimised": settled_dict(self.optimised),
                "gain_self_consumed_kwh": round(self.optimised.self_consumed_kwh
                                                - self.current.self_consumed_kwh, 6),
                "gain_savings_eur": round(self.optimised.savings_eur
                                          - self.current.savings_eur, 6)}


@dataclass(frozen=True)
class HourProfile:
    """One member's β by local hour of the day (0…23), averaged over the target year."""

    cups: str
    member_id: str | None
    current_share: float  # assigned energy under the file in force / the community's
    optimised: tuple[float, ...]  # 24 means

    def to_dict(self) -> dict[str, Any]:
        return {"cups": self.cups, "member_id": self.member_id,
                "current_share": round(self.current_share, 6),
                "optimised": [round(b, 6) for b in self.optimised]}


@dataclass(frozen=True)
class Report:
    path: Path
    cau: str
    year: int
    modified_ms: int
    members: tuple[Comparison, ...]
    community: Comparison
    hours: tuple[HourProfile, ...] = ()
    coefficients_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"available": True, "file": self.path.name, "cau": self.cau, "year": self.year,
                "modified_ms": self.modified_ms,
                "members": [m.to_dict() for m in self.members],
                "community": self.community.to_dict(), "caveat": CAVEAT_ES,
                "coefficients_file": self.coefficients_file,
                "hour_profiles": [h.to_dict() for h in self.hours]}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def find_report(directory: Path, cau: str | None) -> Path | None:
    """The report of the newest target year for ``cau`` in ``directory`` (None if none)."""
    if not cau or not directory.is_dir():
        return None
    found = [(int(m["year"]), p) for p in directory.iterdir()
             if (m := REPORT_NAME.match(p.name)) and m["cau"] == cau and p.is_file()]
    return max(found)[1] if found else None


def load(path: Path, cau: str, year: int, community: Community) -> Report:
    """The report at ``path`` laid on the community's members (matched by CUPS)."""
    rows = parse_report(path.read_text(encoding="utf-8"), path.name)
    by_cups = {cups_base(m.cups): m for m in community.members}
    cups_seen = list(dict.fromkeys(cups for _, cups in rows))
    comparisons = []
    for cups in cups_seen:
        current, optimised = rows.get(("current", cups)), rows.get(("optimised", cups))
        if current is None or optimised is None:
            raise ReportError(f"{path.name}: {cups} lacks the current or the optimised row")
        if cups == COMMUNITY_ROW:
            continue
        member = by_cups.get(cups_base(cups))
        comparisons.append(Comparison(cups, member.id if member else None,
                                      member.name if member else cups, current, optimised))
    if ("current", COMMUNITY_ROW) not in rows:
        raise ReportError(f"{path.name}: no community row")
    total = Comparison(COMMUNITY_ROW, None, community.name, rows[("current", COMMUNITY_ROW)],
                       rows[("optimised", COMMUNITY_ROW)])
    return Report(path, cau, year, int(path.stat().st_mtime * 1000), tuple(comparisons), total)


def hour_profile(path: Path, year: int, report: Report, tz: str) -> tuple[HourProfile, ...]:
    """Mean β by local hour of the day of every member of the optimised file at ``path``."""
    schedule = parse_file(path, year=year)
    if schedule.kind != "hourly":
        raise ReportError(f"{path.name}: not an hourly file")
    zone, start = ZoneInfo(tz), year_start_ms(year, tz)
    hour_of_day = [datetime.fromtimestamp((start + k * HOUR_MS) / 1000, UTC).astimezone(zone).hour
                   for k in range(hours_in_year(year))]
    counts = [hour_of_day.count(h) for h in range(24)]
    total = report.community.current.assigned_kwh
    by_cups = {cups_base(c.cups): c for c in report.members}
    out = []
    for cups, betas in schedule.by_cups.items():
        sums = [0.0] * 24
        for hour, beta in zip(hour_of_day, betas, strict=True):  # type: ignore[arg-type]
            sums[hour] += beta
        row = by_cups.get(cups_base(cups))
        share = row.current.assigned_kwh / total if row is not None and total > 0 else 0.0
        out.append(HourProfile(cups, row.member_id if row else None, share,
                               tuple(s / n if n else 0.0 for s, n in zip(sums, counts,
                                                                       strict=True))))
    return tuple(out)


def community_report(directory: Path, community: Community) -> Report | None:
    """The community's newest report, or None when the optimiser has not written one; with the
    hour-of-day profiles when the optimised file is beside it."""
    path = find_report(directory, community.cau)
    if path is None:
        return None
    match = REPORT_NAME.match(path.name)
    assert match is not None  # find_report only returns names that match
    report = load(path, match["cau"], int(match["year"]), community)
    coefficients = path.with_name(path.name.removesuffix(".report.csv"))
    if not coefficients.is_file():
        return report
    try:
        hours = hour_profile(coefficients, report.year, report, community.timezone)
    except CoefficientError as exc:  # its message names the file by its path: name it only
        raise ReportError(str(exc).replace(str(coefficients), coefficients.name)) from None
    return Report(report.path, report.cau, report.year, report.modified_ms, report.members,
                  report.community, hours, coefficients.name)
