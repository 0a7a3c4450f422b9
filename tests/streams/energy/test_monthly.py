"""Monthly totals and simplified compensation (capped at the energy term, no carry-over)."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.energy.balance import split
from streams.energy.monthly import (
    HourBalance,
    Prices,
    billing_month,
    compensation,
    monthly_summaries,
)

PRICES = Prices(energy_eur_kwh=0.145, surplus_eur_kwh=0.06)


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def hour(member: str, start: str, c: float, a: float) -> HourBalance:
    s = split(1.0, a, c)  # β = 1 of "a": assigned a
    return HourBalance(member, utc_ms(start), c, s.assigned, s.self_consumed, s.surplus,
                       s.grid_import)


def test_billing_month_is_local() -> None:
    assert billing_month(utc_ms("2025-10-31T22:00:00Z")) == "2025-10"  # 23:00 CET, 31 Oct
    assert billing_month(utc_ms("2025-10-31T23:00:00Z")) == "2025-11"  # 00:00 CET, 1 Nov


def test_compensation_is_capped_and_not_carried_over() -> None:
    rows = [
        # m1, October: C 120, A 50 in two hours → SC 20, S 30, I 100
        hour("m1", "2025-10-10T11:00:00Z", c=10.0, a=40.0),  # SC 10, S 30, I 0
        hour("m1", "2025-10-10T20:00:00Z", c=110.0, a=10.0),  # SC 10, I 100
        # m2, October: huge surplus, little import
        hour("m2", "2025-10-10T11:00:00Z", c=0.0, a=40.0),  # S 40
        hour("m2", "2025-10-31T22:00:00Z", c=5.0, a=0.0),  # I 5 (still October locally)
        # m2, November: import only; October's surplus is not carried over
        hour("m2", "2025-10-31T23:00:00Z", c=10.0, a=0.0),
    ]
    m1, m2_oct, m2_nov = monthly_summaries(rows, PRICES)
    assert (m1.member, m1.month, m1.hours) == ("m1", "2025-10", 2)
    assert (m1.consumption_kwh, m1.assigned_kwh, m1.self_consumed_kwh, m1.surplus_kwh,
            m1.grid_import_kwh) == pytest.approx((120.0, 50.0, 20.0, 30.0, 100.0))
    assert m1.import_cost_eur == pytest.approx(14.5)  # 100 × 0.145
    assert m1.surplus_value_eur == pytest.approx(1.8)  # 30 × 0.06
    assert m1.compensation_eur == pytest.approx(1.8)  # below the cap
    assert m1.energy_term_eur == pytest.approx(12.7)
    assert m1.cost_without_community_eur == pytest.approx(17.4)  # 120 × 0.145
    assert m1.savings_eur == pytest.approx(4.7)  # 20 × 0.145 + 1.8

    assert (m2_oct.month, m2_oct.surplus_kwh, m2_oct.grid_import_kwh) == ("2025-10", 40.0, 5.0)
    assert m2_oct.surplus_value_eur == pytest.approx(2.4)
    assert m2_oct.compensation_eur == pytest.approx(0.725)  # capped at 5 × 0.145
    assert m2_oct.energy_term_eur == pytest.approx(0.0)
    assert m2_oct.savings_eur == pytest.approx(0.725)

    assert (m2_nov.month, m2_nov.surplus_kwh) == ("2025-11", 0.0)
    assert m2_nov.compensation_eur == 0.0
    assert m2_nov.energy_term_eur == pytest.approx(1.45)
    assert m2_nov.savings_eur == pytest.approx(0.0)


def test_prices_from_registry_mapping() -> None:
    assert Prices.from_mapping({"energy_eur_kwh": 0.145, "surplus_eur_kwh": 0.06}) == PRICES


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0, 50)), min_size=1, max_size=30))
def test_compensation_never_makes_the_energy_term_negative(hours) -> None:
    rows = [HourBalance("m", utc_ms("2025-06-01T10:00:00Z") + i * 3_600_000, c,
                        *(lambda s: (s.assigned, s.self_consumed, s.surplus, s.grid_import))(
                            split(1.0, a, c)))
            for i, (c, a) in enumerate(hours)]
    (summary,) = monthly_summaries(rows, PRICES)
    assert summary.energy_term_eur >= -1e-9
    assert summary.compensation_eur == pytest.approx(
        compensation(summary.surplus_kwh, summary.grid_import_kwh, PRICES))
    assert summary.savings_eur >= -1e-9
    assert summary.savings_eur == pytest.approx(
        summary.self_consumed_kwh * 0.145 + summary.compensation_eur, abs=1e-9)
