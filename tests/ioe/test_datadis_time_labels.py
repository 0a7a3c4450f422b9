"""Datadis (date, time) labels → UTC instants, both clock-change days hour by hour."""

from __future__ import annotations

from datetime import date

import pytest

from ioe.datadis_time import (
    DatadisTimeError,
    DayWalker,
    end_label,
    iso_utc,
    parse_day,
    parse_time,
    walk,
)

# 26 Oct 2025 (25 rows): (label, UTC end of the hour), written out by hand.
OCTOBER = [
    ("01:00", "2025-10-25T23:00:00Z"), ("02:00", "2025-10-26T00:00:00Z"),
    ("03:00", "2025-10-26T01:00:00Z"),  # 02:00-03:00 CEST
    ("03:00", "2025-10-26T02:00:00Z"),  # 02:00-03:00 CET
    ("04:00", "2025-10-26T03:00:00Z"), ("05:00", "2025-10-26T04:00:00Z"),
    ("06:00", "2025-10-26T05:00:00Z"), ("07:00", "2025-10-26T06:00:00Z"),
    ("08:00", "2025-10-26T07:00:00Z"), ("09:00", "2025-10-26T08:00:00Z"),
    ("10:00", "2025-10-26T09:00:00Z"), ("11:00", "2025-10-26T10:00:00Z"),
    ("12:00", "2025-10-26T11:00:00Z"), ("13:00", "2025-10-26T12:00:00Z"),
    ("14:00", "2025-10-26T13:00:00Z"), ("15:00", "2025-10-26T14:00:00Z"),
    ("16:00", "2025-10-26T15:00:00Z"), ("17:00", "2025-10-26T16:00:00Z"),
    ("18:00", "2025-10-26T17:00:00Z"), ("19:00", "2025-10-26T18:00:00Z"),
    ("20:00", "2025-10-26T19:00:00Z"), ("21:00", "2025-10-26T20:00:00Z"),
    ("22:00", "2025-10-26T21:00:00Z"), ("23:00", "2025-10-26T22:00:00Z"),
    ("24:00", "2025-10-26T23:00:00Z"),
]
# 30 Mar 2025 (23 rows): 02:00 CET is the instant the clock jumps to 03:00 CEST.
MARCH = [
    ("01:00", "2025-03-30T00:00:00Z"), ("02:00", "2025-03-30T01:00:00Z"),
    ("04:00", "2025-03-30T02:00:00Z"), ("05:00", "2025-03-30T03:00:00Z"),
    ("06:00", "2025-03-30T04:00:00Z"), ("07:00", "2025-03-30T05:00:00Z"),
    ("08:00", "2025-03-30T06:00:00Z"), ("09:00", "2025-03-30T07:00:00Z"),
    ("10:00", "2025-03-30T08:00:00Z"), ("11:00", "2025-03-30T09:00:00Z"),
    ("12:00", "2025-03-30T10:00:00Z"), ("13:00", "2025-03-30T11:00:00Z"),
    ("14:00", "2025-03-30T12:00:00Z"), ("15:00", "2025-03-30T13:00:00Z"),
    ("16:00", "2025-03-30T14:00:00Z"), ("17:00", "2025-03-30T15:00:00Z"),
    ("18:00", "2025-03-30T16:00:00Z"), ("19:00", "2025-03-30T17:00:00Z"),
    ("20:00", "2025-03-30T18:00:00Z"), ("21:00", "2025-03-30T19:00:00Z"),
    ("22:00", "2025-03-30T20:00:00Z"), ("23:00", "2025-03-30T21:00:00Z"),
    ("24:00", "2025-03-30T22:00:00Z"),
]


def test_october_day_hour_by_hour() -> None:
    assert len(OCTOBER) == 25
    got = [iso_utc(t) for t in walk([("2025/10/26", label) for label, _ in OCTOBER])]
    assert got == [utc for _, utc in OCTOBER]


def test_march_day_hour_by_hour() -> None:
    assert len(MARCH) == 23
    got = [iso_utc(t) for t in walk([("2025/03/30", label) for label, _ in MARCH])]
    assert got == [utc for _, utc in MARCH]


def test_ordinary_winter_and_summer_days() -> None:
    assert [iso_utc(t) for t in walk([("2025/01/15", "01:00"), ("2025/01/15", "24:00")])] == [
        "2025-01-15T00:00:00Z", "2025-01-15T23:00:00Z"]
    assert [iso_utc(t) for t in walk([("2025/07/15", "01:00"), ("2025/07/15", "24:00")])] == [
        "2025-07-14T23:00:00Z", "2025-07-15T22:00:00Z"]


def test_end_label_is_the_inverse() -> None:
    for day, rows in (("2025/10/26", OCTOBER), ("2025/03/30", MARCH)):
        for instant, (label, _) in zip(walk([(day, lb) for lb, _ in rows]), rows, strict=True):
            assert end_label(instant) == (parse_day(day), label)


def test_march_three_oclock_is_another_name_of_two_oclock() -> None:
    assert iso_utc(walk([("2025/03/30", "03:00")])[0]) == "2025-03-30T01:00:00Z"
    # a 24-row March day (01:00 … 24:00) names that instant twice: refused
    with pytest.raises(DatadisTimeError, match="already given"):
        walk([("2025/03/30", f"{h:02d}:00") for h in range(1, 25)])


def test_repeated_labels_are_errors_except_the_october_one() -> None:
    with pytest.raises(DatadisTimeError, match="more than 2"):
        walk([("2025/10/26", "03:00")] * 3)
    with pytest.raises(DatadisTimeError, match="more than 1"):
        walk([("2025/10/25", "03:00")] * 2)


def test_each_series_walks_its_own_days() -> None:
    walker = DayWalker()
    a1 = walker.instant("2025/10/26", "03:00", key="A")
    b1 = walker.instant("2025/10/26", "03:00", key="B")
    a2 = walker.instant("2025/10/26", "03:00", key="A")
    assert a1 == b1 and a2 - a1 == 3_600_000


def test_parsing() -> None:
    assert parse_day("2025/10/26") == date(2025, 10, 26)
    assert parse_day("2025-10-26") == date(2025, 10, 26)
    assert parse_time("1:00") == "01:00"
    assert parse_time("24:00:00") == "24:00"
    for bad in ("26/10/2025", "2025/13/01", "2025/02/30"):
        with pytest.raises(DatadisTimeError):
            parse_day(bad)
    for bad in ("00:00", "25:00", "12:10", "noon"):
        with pytest.raises(DatadisTimeError):
            parse_time(bad)


def test_quarter_hours_on_the_october_day() -> None:
    labels = ["02:15", "02:30", "02:45", "03:00"] * 2  # first CEST, then CET
    assert [iso_utc(t) for t in walk([("2025/10/26", t) for t in labels])] == [
        "2025-10-26T00:15:00Z", "2025-10-26T00:30:00Z", "2025-10-26T00:45:00Z",
        "2025-10-26T01:00:00Z", "2025-10-26T01:15:00Z", "2025-10-26T01:30:00Z",
        "2025-10-26T01:45:00Z", "2025-10-26T02:00:00Z"]
