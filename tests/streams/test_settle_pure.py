"""The pure settlement functions (no CLI): invariants over random days, several plant CUPS."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioe.coefficients import parse_text
from streams.settle import SettleError, parse_kwh, read_series, settle, summarize

A, B, C = "ES0021000000000001RK", "ES0021000000000002RE", "ES0021000000000003WT"
P1, P2 = "ES0021000000000009WY", "ES0031405512345678EV"
OCTOBER = ["01:00", "02:00", "03:00", "03:00"] + [f"{h:02d}:00" for h in range(4, 25)]
SCHEDULE = parse_text(f"{A};0,500000\n{B};0,300000\n{C};0,200000\n", source="c.txt")


def csv(kind: str, rows: list[tuple[str, str, float]]) -> str:
    return f"cups;date;time;{kind}_kwh\n" + "".join(
        f"{cups};2025/10/26;{time};{value:.3f}\n" for cups, time, value in rows)


kwh = st.floats(0, 5).map(lambda v: round(v, 3))


@settings(max_examples=60, deadline=None)
@given(st.lists(kwh, min_size=75, max_size=75),
       st.lists(st.floats(-0.05, 10).map(lambda v: round(v, 3)), min_size=25, max_size=25))
def test_invariants_over_a_random_october_day(consumption, generation) -> None:
    rows = [(cups, time, consumption[i * 25 + k])
            for i, cups in enumerate((A, B, C)) for k, time in enumerate(OCTOBER)]
    settled = settle([SCHEDULE], read_series(csv("consumption", rows), "c.csv", "consumption"),
                     read_series(csv("generation", [(P1, t, g) for t, g in
                                                    zip(OCTOBER, generation, strict=True)]),
                                 "g.csv", "generation"))
    assert len(settled) == 75
    by_hour: dict[int, list] = {}
    for row in settled:
        assert row.assigned_kwh == pytest.approx(row.self_consumed_kwh + row.surplus_kwh)
        assert row.consumption_kwh == pytest.approx(row.self_consumed_kwh + row.grid_import_kwh)
        assert min(row.assigned_kwh, row.self_consumed_kwh, row.surplus_kwh,
                   row.grid_import_kwh) >= 0
        by_hour.setdefault(row.end_ms, []).append(row)
    assert len(by_hour) == 25  # the two 03:00 hours are distinct
    for end_ms, rows_of_hour in by_hour.items():
        g = rows_of_hour[0].generation_kwh
        assert math.fsum(r.assigned_kwh for r in rows_of_hour) == pytest.approx(
            max(g, 0.0), abs=1e-9)
        assert end_ms % 3_600_000 == 0
    summary = summarize(settled)
    assert summary.generation_kwh == pytest.approx(sum(max(g, 0.0) for g in generation))
    if summary.ratio is not None:
        assert 0 <= summary.ratio <= 1 + 1e-9


def test_two_plant_cups_are_added_hour_by_hour() -> None:
    consumption = read_series(csv("consumption", [(A, "13:00", 1.0), (B, "13:00", 1.0),
                                                  (C, "13:00", 0.0)]), "c.csv", "consumption")
    generation = read_series(csv("generation", [(P1, "13:00", 1.5), (P2, "13:00", 0.5)]),
                             "g.csv", "generation")
    a, b, c = settle([SCHEDULE], consumption, generation)
    assert (a.assigned_kwh, b.assigned_kwh, c.assigned_kwh) == pytest.approx((1.0, 0.6, 0.4))
    assert a.generation_kwh == 2.0


@pytest.mark.parametrize(("text", "value"), [("1.5", 1.5), ("1,5", 1.5), ("0", 0.0),
                                             (" 2,250 ", 2.25), (",5", 0.5), ("-0,010", -0.01)])
def test_parse_kwh(text: str, value: float) -> None:
    assert parse_kwh(text, "f:1") == value


@pytest.mark.parametrize("text", ["", "1.234,5", "1,2,3", "nan", "inf", "1e3", "x"])
def test_parse_kwh_refuses(text: str) -> None:
    with pytest.raises(SettleError, match="^f:1: "):
        parse_kwh(text, "f:1")
