"""``ioe.datadis_time`` is the one reader of Datadis time labels: its batch form (the connector's
``place_rows``) and its row-by-row form (``ioe settle``'s ``walk``) must agree instant by instant
on both clock-change days and on ordinary ones, with every hour exactly one hour after the last."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from ioe.datadis_time import place_rows, walk

MADRID = "Europe/Madrid"


def hourly_labels(day: date) -> list[tuple[str, str]]:
    """Labels as Datadis writes them, worked out from the local clock alone."""
    text = day.strftime("%Y/%m/%d")
    hours = {date(2025, 3, 30): [1, 2, *range(4, 25)],        # no 03:00 in March
             date(2025, 10, 26): [1, 2, 3, 3, *range(4, 25)]}  # 03:00 twice in October
    return [(text, f"{h:02d}:00") for h in hours.get(day, range(1, 25))]


@pytest.mark.parametrize("day", [date(2025, 3, 30), date(2025, 10, 26), date(2025, 6, 15),
                                 date(2025, 12, 31)])
def test_both_readers_place_every_hour_at_the_same_instant(day):
    rows = hourly_labels(day)
    batch = [p.end_ms for p in place_rows(rows, ZoneInfo(MADRID), 3600)]
    streamed = walk(rows, MADRID)
    assert batch == streamed
    assert len(set(batch)) == len(rows)  # the two 03:00 rows of October stay apart
    # consecutive hours are exactly one hour apart, across the clock change too
    assert all(b - a == 3_600_000 for a, b in zip(batch, batch[1:], strict=False))


def test_a_week_across_the_october_change():
    rows = [r for n in range(7) for r in hourly_labels(date(2025, 10, 23) + timedelta(days=n))]
    assert [p.end_ms for p in place_rows(rows, ZoneInfo(MADRID), 3600)] == walk(rows, MADRID)
