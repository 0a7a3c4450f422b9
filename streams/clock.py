"""The clock and window part of the balances: watermarks, lateness, due and re-opened
intervals, versions. Pure (tables are plain mappings), no energy arithmetic.

This is the seam bytewax and quix-streams draw between a window's *when* and its *what*: this
module decides which intervals of a community are due (their end plus the allowed lateness is
behind the community's watermark, the newest event time seen) and which were re-opened by late
data; :mod:`streams.compute` says what their numbers are. Event time, not the wall clock, so a
replayed day behaves exactly like the live one.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from streams.records import HOUR_S, QUARTER_S, interval_key, parse_interval_key

QUARTER_MS = QUARTER_S * 1000
HOUR_MS = HOUR_S * 1000

Table = MutableMapping[str, Any]


def quarter_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % QUARTER_MS


def with_hours(quarters: list[int]) -> list[tuple[int, int]]:
    """The (interval_s, start) of the given quarters and of the hours they lie in."""
    hours = {q - q % HOUR_MS for q in quarters}
    return [(QUARTER_S, q) for q in set(quarters)] + [(HOUR_S, h) for h in hours]


class VersionClock:
    """Wall-clock milliseconds, strictly increasing inside the process (ReplacingMergeTree
    keeps the highest version, so two emissions must never share one)."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        self._last = max(int(time.time() * 1000), self._last + 1)
        return self._last


class Windows:
    """Watermarks and pending (touched, not yet emitted) intervals of every community.

    ``pending`` holds ``<cid>|<interval_s>|<start>`` keys; ``watermarks`` the newest event time
    per community, persisted only when a quarter is crossed or every 10 s of event time (one
    changelog message per write): after a restart it may lag by that much, which merely delays
    an emission.
    """

    def __init__(self, *, pending: Table, watermarks: Table, lateness_ms: int) -> None:
        self.pending = pending
        self.watermarks = watermarks
        self.lateness_ms = lateness_ms
        self._watermark: dict[str, int] = {}

    def watermark(self, community_id: str) -> int | None:
        cached = self._watermark.get(community_id)
        value = self.watermarks.get(community_id)
        if value is None:
            return cached
        return int(value) if cached is None else max(cached, int(value))

    def advance(self, community_id: str, ts_ms: int) -> tuple[int, bool]:
        """Move the watermark to ``ts_ms`` if newer; (the watermark, whether it crossed a
        quarter bound)."""
        old = self.watermark(community_id)
        if old is not None and ts_ms <= old:
            return old, False
        self._watermark[community_id] = ts_ms
        persisted = self.watermarks.get(community_id)
        if (persisted is None or quarter_of(ts_ms) != quarter_of(int(persisted))
                or ts_ms - int(persisted) >= 10_000):
            self.watermarks[community_id] = ts_ms
        return ts_ms, old is not None and quarter_of(ts_ms) > quarter_of(old)

    def is_due(self, interval_s: int, start: int, wm: int) -> bool:
        return start + interval_s * 1000 + self.lateness_ms <= wm

    def mark(self, community_id: str, interval_s: int, start: int, wm: int) -> bool:
        """Record a touched interval; True when it is already due (late data: re-opened)."""
        key = interval_key(community_id, interval_s, start)
        if key not in self.pending:
            self.pending[key] = 1
        return self.is_due(interval_s, start, wm)

    def due(self, community_id: str) -> list[tuple[int, int]]:
        """(interval_s, start_ms) of the community's pending intervals that are due, oldest
        first."""
        wm = self.watermark(community_id)
        if wm is None:
            return []
        out = []
        for key in list(self.pending.keys()):
            cid, interval_s, start = parse_interval_key(key)
            if cid == community_id and self.is_due(interval_s, start, wm):
                out.append((interval_s, start))
        return sorted(out, key=lambda x: (x[1], x[0]))

    def done(self, keys: list[str]) -> None:
        for key in keys:
            if key in self.pending:
                del self.pending[key]
