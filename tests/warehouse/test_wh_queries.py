"""Every ready query of docs/data-engineering.md, on 18.16 and on the current engine, against
values worked out by hand from wh_data's table (see its docstring)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from wh_data import CID, D1, H0, H1, H2, H3, load

from ioe.settings import ROOT
from warehouse import queries

JAN, FEB = date(2026, 1, 1), date(2026, 2, 1)
WINDOW = {"community": CID, "start": "2026-01-31 21:00:00", "end": "2026-02-01 12:00:00"}
MADRID_DAYS = {"community": CID, "start": "2026-01-30 23:00:00", "end": "2026-02-01 23:00:00"}

# name → (params, expected rows); floats compared to 1e-9 relative.
EXPECTED: dict[str, tuple[dict[str, Any], list[tuple[Any, ...]]]] = {
    "monthly_settlement": ({"community": CID}, [
        ("m1", JAN, 0.9, 0.0, 0.0, 0.0, 0.9, 2), ("m2", JAN, 0.2, 0.0, 0.0, 0.0, 0.2, 2),
        ("m1", FEB, 0.5, 0.6, 0.2, 0.4, 0.3, 2), ("m2", FEB, 0.7, 0.4, 0.4, 0.0, 0.3, 2)]),
    "community_ratios": ({"community": CID}, [
        (CID, JAN, 0.0, 1.1, 0.0, 0.0, None), (CID, FEB, 1.0, 1.2, 0.6, 0.5, 0.6)]),
    "surplus_hours": (WINDOW, [(H3, "2026-02-01 12:00:00", 1000.0, 400.0)]),
    "importers_while_exporting": (WINDOW, [("m2", 0.1, 1)]),
    "datadis_reconciliation": (MADRID_DAYS, [
        ("m1", date(2026, 1, 31), 0.9, 0.9, 0.0),
        ("m1", date(2026, 2, 1), 0.5, 0.55, round(100 * (500 - 550) / 550, 2))]),
    "device_uptime": ({"community": CID, "start": "2026-01-31 23:00:00",
                       "end": "2026-02-01 23:00:00"}, [
        (D1, date(2026, 2, 1), 2, round(2 / 24, 4)),
        ("shelly-m1:0", date(2026, 2, 1), 3, 0.125)]),
    "open_alarms": ({"community": CID}, [
        ("a1", "shelly-m1:0", "m1", "device_offline", "critical", H0),
        ("a2", "shelly-m2:0", "m2", "device_offline", "warning", H1),
        ("a4", "shelly-m1:0", "m1", "frozen_counter", "warning", H3)]),
    "alarms_by_kind": ({"community": CID, "start": "2026-01-31 21:00:00",
                        "end": "2026-02-01 12:00:00"}, [
        ("device_offline", 3, 2, 30.0), ("frozen_counter", 1, 1, None)]),
    "hourly_profile": (WINDOW, [(0, 0.0, 500.0, 1), (12, 1000.0, 700.0, 1),
                                (22, 0.0, 600.0, 1), (23, 0.0, 500.0, 1)]),
    "incomplete_hours": ({"community": CID}, [
        ("m1", JAN, 2, 0, 0), ("m2", JAN, 2, 1, 0), ("m1", FEB, 2, 0, 0), ("m2", FEB, 2, 0, 1)]),
    "peak_import_hours": ({**WINDOW, "limit": 2}, [
        (H0, "2026-01-31 22:00:00", 600.0), (H1, "2026-01-31 23:00:00", 500.0)]),
    "last_reading_per_device": ({"community": CID, "at": "2026-02-01 12:00:00"}, [
        (D1, H3 * 1000, None, 3600), ("shelly-m1:0", (H3 + 3540) * 1000, 430.0, 60)]),
}


def _same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> bool:
    if len(got) != len(want):
        return False
    for g_row, w_row in zip(got, want, strict=True):
        if len(g_row) != len(w_row):
            return False
        for g, w in zip(g_row, w_row, strict=True):
            if isinstance(w, float):
                if g is None or g != pytest.approx(w, rel=1e-9, abs=1e-9):
                    return False
            elif g != w:
                return False
    return True


def test_every_shipped_query_has_expected_values() -> None:
    assert sorted(EXPECTED) == queries.names()
    assert len(EXPECTED) >= 12


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_query(warehouse: Any, name: str) -> None:
    load(warehouse)
    params, want = EXPECTED[name]
    got = queries.run(warehouse.engine, warehouse.db, name, params)
    assert _same(got, want), f"{name} on {warehouse.engine.name}: {got} != {want}"


def test_uptime_of_a_23_hour_day(warehouse: Any) -> None:
    """29 March 2026 has 23 Madrid hours: one hour with data is 1/23 of the day, not 1/24."""
    load(warehouse)
    got = queries.run(warehouse.engine, warehouse.db, "device_uptime",
                      {"community": CID, "start": "2026-03-28 23:00:00",
                       "end": "2026-03-29 22:00:00"})
    assert _same(got, [("shelly-m1:0", date(2026, 3, 29), 1, round(1 / 23, 4))])


def test_the_doc_quotes_every_query_file_verbatim() -> None:
    doc = (ROOT / "docs" / "data-engineering.md").read_text()
    blocks = dict(re.findall(r"<!-- query: (\w+) -->\n```sql\n(.*?)```", doc, flags=re.S))
    assert sorted(blocks) == queries.names()
    for name, text in blocks.items():
        assert text == queries.sql(name), f"docs/data-engineering.md differs from {name}.sql"


def test_hand_values_are_consistent() -> None:
    """The expected table itself: A = β·G, SC = min(A, C), C = SC + I per member-month."""
    for member, month, c, a, sc, s, i, _ in EXPECTED["monthly_settlement"][1]:
        assert c == pytest.approx(sc + i), (member, month)
        assert a == pytest.approx(sc + s), (member, month)
    assert H2 - H0 == 7200
