"""Spain's national holidays: the days that behave like a Sunday.

Both the simulator (people are at home) and the coefficient optimiser (a holiday of last year maps
to a holiday of next year) need the same calendar, so it lives in the spine. Regional holidays vary
by autonomous community and are not included: a community's own calendar would be registry data.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

#: fixed-date national holidays (month, day)
FIXED_HOLIDAYS: tuple[tuple[int, int], ...] = (
    (1, 1), (1, 6), (5, 1), (8, 15), (10, 12), (11, 1), (12, 6), (12, 8), (12, 25),
)


def easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    m = (32 + 2 * e + 2 * i - h - k) % 7
    n = (a + 11 * h + 22 * m) // 451
    month, day = divmod(h + m - 7 * n + 114, 31)
    return date(year, month, day + 1)


@lru_cache(maxsize=64)
def holidays(year: int) -> frozenset[date]:
    """The national holidays of ``year``: the fixed ones and Viernes Santo."""
    days = {date(year, m, d) for m, d in FIXED_HOLIDAYS}
    days.add(easter(year) - timedelta(days=2))  # Viernes Santo
    return frozenset(days)
