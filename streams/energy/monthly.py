"""Per member and billing month: energy totals, simplified compensation and savings.

Simplified compensation (RD 244/2019 art. 14, plants ≤ 100 kW; DESIGN.md §1): in each billing
period the member's surplus is valued at ``p_surplus`` and discounted from the *energy term* of
the bill, never below zero and with no carry-over to the next month:

    compensation = min(Σ S · p_surplus, Σ I · p_energy)

Savings are measured against the same member with no community (all consumption bought at
``p_energy``): ``Σ SC · p_energy + compensation``. Prices are flat per kWh (the registry's
``energy_eur_kwh`` and ``surplus_eur_kwh``); the billing month is the local calendar month of the
hour's start.

This is the one implementation of the rule: the dashboards' history API computes its savings
with :func:`monthly_summaries` (``dashboards/history.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Prices:
    energy_eur_kwh: float
    surplus_eur_kwh: float

    @classmethod
    def from_mapping(cls, prices: Mapping[str, float]) -> Prices:
        """From the registry's ``Community.prices`` (``energy_eur_kwh``, ``surplus_eur_kwh``)."""
        return cls(float(prices.get("energy_eur_kwh", 0.0)),
                   float(prices.get("surplus_eur_kwh", 0.0)))


@dataclass(frozen=True)
class HourBalance:
    """One member-hour as settled (kWh); ``start_ms`` is the hour's UTC start."""

    member: str
    start_ms: int
    consumption_kwh: float
    assigned_kwh: float
    self_consumed_kwh: float
    surplus_kwh: float
    grid_import_kwh: float


@dataclass(frozen=True)
class MonthlySummary:
    member: str
    month: str  # YYYY-MM, local
    hours: int
    consumption_kwh: float
    assigned_kwh: float
    self_consumed_kwh: float
    surplus_kwh: float
    grid_import_kwh: float
    import_cost_eur: float  # Σ I · p_energy (energy term before compensation)
    surplus_value_eur: float  # Σ S · p_surplus
    compensation_eur: float  # min(surplus value, import cost)
    energy_term_eur: float  # import cost − compensation (≥ 0)
    cost_without_community_eur: float  # Σ C · p_energy
    savings_eur: float  # cost without community − energy term


def billing_month(ts_ms: int, tz: str = "Europe/Madrid") -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(ZoneInfo(tz)).strftime("%Y-%m")


def compensation(surplus_kwh: float, import_kwh: float, prices: Prices) -> float:
    """Simplified compensation of one billing period: capped at the energy term."""
    return min(surplus_kwh * prices.surplus_eur_kwh, import_kwh * prices.energy_eur_kwh)


def summarize_month(member: str, month: str, hours: Iterable[HourBalance],
                    prices: Prices) -> MonthlySummary:
    rows = list(hours)
    total = {name: math.fsum(getattr(r, name) for r in rows)
             for name in ("consumption_kwh", "assigned_kwh", "self_consumed_kwh", "surplus_kwh",
                          "grid_import_kwh")}
    import_cost = total["grid_import_kwh"] * prices.energy_eur_kwh
    surplus_value = total["surplus_kwh"] * prices.surplus_eur_kwh
    compensated = compensation(total["surplus_kwh"], total["grid_import_kwh"], prices)
    without = total["consumption_kwh"] * prices.energy_eur_kwh
    energy_term = import_cost - compensated
    return MonthlySummary(
        member=member, month=month, hours=len(rows), **total,
        import_cost_eur=import_cost, surplus_value_eur=surplus_value,
        compensation_eur=compensated, energy_term_eur=energy_term,
        cost_without_community_eur=without, savings_eur=without - energy_term)


def monthly_summaries(balances: Iterable[HourBalance], prices: Prices,
                      tz: str = "Europe/Madrid") -> list[MonthlySummary]:
    """One summary per (member, billing month), sorted by member then month. Each month stands
    alone: an uncompensated surplus is lost, never carried over."""
    groups: dict[tuple[str, str], list[HourBalance]] = {}
    for row in balances:
        groups.setdefault((row.member, billing_month(row.start_ms, tz)), []).append(row)
    return [summarize_month(member, month, rows, prices)
            for (member, month), rows in sorted(groups.items())]
