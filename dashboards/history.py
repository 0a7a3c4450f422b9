"""History aggregation: hourly balance rows → day / week / month / year buckets, and savings.

Pure functions (no I/O) so the totals can be checked by hand in tests. Calendar periods are in
the community's timezone (a Spanish day has 23 or 25 hours at the clock changes); rows and
bounds are UTC epoch seconds.

Savings (€), from the community prices of the registry:
- ``self_consumption_eur = self_consumed_kWh × prices.energy_eur_kwh`` — energy not bought;
- ``surplus_compensation_eur`` — simplified compensation per local billing month, capped at
  the energy term of that month (DESIGN.md §1; no carry-over), computed by the settlement's
  own function (``streams.energy.monthly``) so the API and the settlement cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from streams.energy.monthly import HourBalance, Prices, monthly_summaries

PERIODS = ("day", "week", "month", "year")
QUANTITIES = ("consumption", "assigned", "self_consumed", "surplus", "import", "generation")


@dataclass(frozen=True)
class HourRow:
    """One member-hour of ``balances`` (energies in Wh)."""

    ts: int  # interval start, UTC epoch seconds
    coefficient: float
    generation_wh: float
    consumption_wh: float
    assigned_wh: float
    self_consumed_wh: float
    surplus_wh: float
    import_wh: float
    source: str = "meter"
    complete: bool = True

    def wh(self, quantity: str) -> float:
        return float(getattr(self, f"{quantity}_wh"))


@dataclass(frozen=True)
class Period:
    kind: str
    first: date  # first local day
    end: date  # first local day after the period
    bucket: str  # "hour" | "day" | "month"

    def utc_bounds(self, tz: str) -> tuple[int, int]:
        return local_midnight(self.first, tz), local_midnight(self.end, tz)


def local_midnight(day: date, tz: str) -> int:
    return int(datetime.combine(day, time(0), ZoneInfo(tz)).timestamp())


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_of(kind: str, day: date) -> Period:
    """The calendar period of ``kind`` containing ``day`` (weeks start on Monday)."""
    if kind == "day":
        return Period(kind, day, day + timedelta(days=1), "hour")
    if kind == "week":
        monday = day - timedelta(days=day.weekday())
        return Period(kind, monday, monday + timedelta(days=7), "day")
    if kind == "month":
        first = day.replace(day=1)
        return Period(kind, first, _add_months(first, 1), "day")
    if kind == "year":
        first = date(day.year, 1, 1)
        return Period(kind, first, date(day.year + 1, 1, 1), "month")
    raise ValueError(f"period must be one of {', '.join(PERIODS)}")


def bucket_labels(period: Period, tz: str) -> list[str]:
    """Every bucket of the period, in order (empty buckets included, so charts have gaps)."""
    zone = ZoneInfo(tz)
    if period.bucket == "hour":
        start, end = period.utc_bounds(tz)
        return [datetime.fromtimestamp(t, zone).isoformat() for t in range(start, end, 3600)]
    if period.bucket == "day":
        days = (period.end - period.first).days
        return [(period.first + timedelta(days=i)).isoformat() for i in range(days)]
    return [f"{period.first.year}-{m:02d}" for m in range(1, 13)]


def bucket_of(ts: int, bucket: str, tz: str) -> str:
    local = datetime.fromtimestamp(ts, ZoneInfo(tz))
    if bucket == "hour":
        return local.replace(minute=0, second=0).isoformat()
    if bucket == "day":
        return local.date().isoformat()
    return f"{local.year}-{local.month:02d}"


def _empty() -> dict[str, float]:
    return {q: 0.0 for q in QUANTITIES}


def _kwh(sums: Mapping[str, float]) -> dict[str, float]:
    return {f"{q}_kwh": round(sums[q] / 1000.0, 4) for q in QUANTITIES}


def hour_balance(row: HourRow, member: str = "") -> HourBalance:
    """A balance row (Wh) as the settlement's member-hour (kWh)."""
    return HourBalance(member=member, start_ms=row.ts * 1000,
                       consumption_kwh=row.consumption_wh / 1000.0,
                       assigned_kwh=row.assigned_wh / 1000.0,
                       self_consumed_kwh=row.self_consumed_wh / 1000.0,
                       surplus_kwh=row.surplus_wh / 1000.0,
                       grid_import_kwh=row.import_wh / 1000.0)


def savings(rows: Iterable[HourRow], prices: Mapping[str, float], tz: str) -> dict[str, float]:
    """Savings in € of one member's hours: the billing months of
    :func:`streams.energy.monthly.monthly_summaries` (the one compensation rule)."""
    months = monthly_summaries((hour_balance(r) for r in rows), Prices.from_mapping(prices), tz)
    energy = Prices.from_mapping(prices).energy_eur_kwh
    own = sum(m.self_consumed_kwh for m in months) * energy
    compensation = sum(m.compensation_eur for m in months)
    return {"self_consumption_eur": round(own, 2),
            "surplus_compensation_eur": round(compensation, 2),
            "total_eur": round(own + compensation, 2)}


def aggregate(rows: Sequence[HourRow], period: Period, tz: str,
              prices: Mapping[str, float]) -> dict[str, object]:
    """Buckets and totals of one member's hours in ``period``."""
    labels = bucket_labels(period, tz)
    sums = {label: _empty() for label in labels}
    hours = dict.fromkeys(labels, 0)
    total = _empty()
    for row in rows:
        label = bucket_of(row.ts, period.bucket, tz)
        if label not in sums:  # outside the period: the caller's query was wider
            continue
        hours[label] += 1
        for q in QUANTITIES:
            sums[label][q] += row.wh(q)
            total[q] += row.wh(q)
    inside = [r for r in rows if bucket_of(r.ts, period.bucket, tz) in sums]
    return {
        "period": period.kind, "from": period.first.isoformat(), "to": period.end.isoformat(),
        "bucket": period.bucket, "timezone": tz, "unit": "kWh",
        "buckets": [{"label": label, "hours": hours[label], **_kwh(sums[label])}
                    for label in labels],
        "totals": {"hours": len(inside), **_kwh(total)},
        "savings": savings(inside, prices, tz),
        "prices": {k: float(v) for k, v in prices.items()},
    }


def community_totals(hours: Sequence[tuple[int, float, float, float, float, float, float]]
                     ) -> dict[str, float | None]:
    """Community totals from per-hour sums ``(ts, G, C, A, SC, S, I)`` in Wh.

    ``self_consumption_ratio`` = SC / G (share of the local generation used inside the
    community); ``coverage_ratio`` = SC / C (share of the consumption covered by it).
    """
    g = sum(h[1] for h in hours)
    c = sum(h[2] for h in hours)
    sums = {"generation": g, "consumption": c, "assigned": sum(h[3] for h in hours),
            "self_consumed": sum(h[4] for h in hours), "surplus": sum(h[5] for h in hours),
            "import": sum(h[6] for h in hours)}
    result: dict[str, float | None] = {"hours": float(len(hours)), **_kwh(sums)}
    result["self_consumption_ratio"] = round(sums["self_consumed"] / g, 4) if g > 0 else None
    result["coverage_ratio"] = round(sums["self_consumed"] / c, 4) if c > 0 else None
    return result


def today_local(tz: str, now: float | None = None) -> date:
    moment = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    return moment.astimezone(ZoneInfo(tz)).date()
