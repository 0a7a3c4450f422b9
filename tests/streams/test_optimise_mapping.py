"""Laying last year's hours on next year's calendar (``streams.energy.optimise.map_to_year``).

Checked against ``zoneinfo`` and a hand-written list of Spain's national holidays, not against
the project's calendar helpers: a Monday in June is modelled by a Monday in June, holidays by
Sundays or holidays, and every target hour by a history hour with the same local wall clock —
through both clock changes (the 25-hour day's two 02:00 hours stay apart; a 23-hour history
day lends its 01:00 to a target day's 02:00).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from fixtures_optimise.datadis_csv import TZ, hours_of, wall

from streams.energy.optimise import OptimiseError, map_to_year

HOLIDAYS = {
    2025: {date(2025, 1, 1), date(2025, 1, 6), date(2025, 4, 18), date(2025, 5, 1),
           date(2025, 8, 15), date(2025, 10, 12), date(2025, 11, 1), date(2025, 12, 6),
           date(2025, 12, 8), date(2025, 12, 25)},
    2026: {date(2026, 1, 1), date(2026, 1, 6), date(2026, 4, 3), date(2026, 5, 1),
           date(2026, 8, 15), date(2026, 10, 12), date(2026, 11, 1), date(2026, 12, 6),
           date(2026, 12, 8), date(2026, 12, 25)},
}


def free(day: date) -> bool:
    return day.weekday() == 6 or day in HOLIDAYS[day.year]


def ms(seconds: list[int]) -> list[int]:
    return [s * 1000 for s in seconds]


def test_weekday_and_season_and_wall_clock() -> None:
    history = hours_of(2025)
    mapping = map_to_year(ms(history), 2026)
    targets = hours_of(2026)
    assert mapping.hours == len(targets) == 8760
    near = 0
    for target_day, source_day in mapping.days:
        if free(target_day):
            assert free(source_day), (target_day, source_day)
        else:
            assert source_day.weekday() == target_day.weekday(), (target_day, source_day)
            assert not free(source_day)
        # distance in the season, around the year's end (5 January 2026 may take 29 December
        # 2025: the Monday 6 January 2025 was a holiday)
        apart = abs((source_day - date(2025, target_day.month, target_day.day)).days)
        apart = min(apart, 365 - apart)
        assert apart <= 7, (target_day, source_day)
        near += apart <= 3
    assert near >= 350
    assert dict(mapping.days)[date(2026, 6, 15)] == date(2025, 6, 16)  # Monday → Monday
    assert dict(mapping.days)[date(2026, 12, 8)] == date(2025, 12, 8)  # holiday → holiday
    assert dict(mapping.days)[date(2026, 1, 6)] == date(2025, 1, 6)  # Tuesday → Monday, both
    for k, target in enumerate(targets):
        t, h = wall(target), wall(history[mapping.history_index[k]])
        assert h.date() == dict(mapping.days)[t.date()]
        assert h.hour == t.hour, (t, h)


def test_clock_change_days() -> None:
    history = hours_of(2025)
    mapping = map_to_year(ms(history), 2026)
    targets = hours_of(2026)
    autumn = [k for k, s in enumerate(targets) if wall(s).date() == date(2026, 10, 25)]
    spring = [k for k, s in enumerate(targets) if wall(s).date() == date(2026, 3, 29)]
    assert len(autumn) == 25 and len(spring) == 23
    assert dict(mapping.days)[date(2026, 10, 25)] == date(2025, 10, 26)
    twice = [k for k in autumn if wall(targets[k]).hour == 2]
    assert len(twice) == 2
    sources = [history[mapping.history_index[k]] for k in twice]
    assert sources[1] - sources[0] == 3600  # CEST 02:00 then CET 02:00, not the same hour
    assert [wall(s).utcoffset() for s in sources] == [timedelta(hours=2), timedelta(hours=1)]
    assert sorted(mapping.history_index[autumn]) == list(mapping.history_index[autumn])


def test_short_day_lends_the_hour_before_and_long_day_its_first_repeat() -> None:
    """A history of one week in March 2025 (its Sunday has no 02:00) and one in October (its
    Sunday has two): a 24-hour target Sunday takes 01:00 for its 02:00 from the first, and the
    first (summer-time) 02:00 from the second."""
    march = [s for s in hours_of(2025) if date(2025, 3, 24) <= wall(s).date() <= date(2025, 3, 30)]
    mapping = map_to_year(ms(march), 2026)
    targets = hours_of(2026)
    sunday = [k for k, s in enumerate(targets) if wall(s).date() == date(2026, 3, 22)]
    by_hour = {wall(targets[k]).hour: wall(march[mapping.history_index[k]]) for k in sunday}
    assert by_hour[2].hour == 1 and by_hour[2].date() == date(2025, 3, 30)
    assert by_hour[3].hour == 3
    october = [s for s in hours_of(2025)
               if date(2025, 10, 20) <= wall(s).date() <= date(2025, 10, 26)]
    mapping = map_to_year(ms(october), 2026)
    sunday = [k for k, s in enumerate(targets) if wall(s).date() == date(2026, 3, 22)]
    source = [wall(october[mapping.history_index[k]]) for k in sunday]
    assert [s.hour for s in source] == list(range(24))
    assert source[2].utcoffset() == timedelta(hours=2)


def test_incomplete_days_are_not_models() -> None:
    history = hours_of(2025)
    gap = datetime(2025, 6, 16, 12, tzinfo=TZ).astimezone(UTC).timestamp()
    partial = [s for s in history if s != int(gap)]  # Monday 16 June 2025 loses an hour
    mapping = map_to_year(ms(partial), 2026)
    assert dict(mapping.days)[date(2026, 6, 15)] in (date(2025, 6, 9), date(2025, 6, 23))
    assert date(2025, 6, 16) not in {d for _, d in mapping.days}


def test_empty_history_is_refused() -> None:
    with pytest.raises(OptimiseError):
        map_to_year([], 2026)
