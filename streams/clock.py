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
from streams.state import Watermark

QUARTER_MS = QUARTER_S * 1000
HOUR_MS = HOUR_S * 1000

Table = MutableMapping[str, Any]

#: the first-data time given to a watermark of the release before (a plain number): that
#: community had data before first-data times were kept, so assume it came before anything
#: that can arrive now — nothing is dropped for it
LEGACY_FIRST_MS = 0


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

    ``pending`` holds ``<cid>|<interval_s>|<start>`` keys; ``watermarks`` a
    :class:`streams.state.Watermark` per community: the newest event time, persisted only when
    a quarter is crossed or every 10 s of event time (one changelog message per write: after a
    restart it may lag by that much, which merely delays an emission), and the time of the
    community's first data, persisted as soon as it changes (it must not lag: it decides which
    intervals exist at all).

    An interval exists from the first data on: one that ends at or before the quarter of the
    community's first data is never pending, so never emitted. Before, the first sample of a
    community's first device looked 6 h back for an earlier one, found none and made every
    quarter and hour of those 6 h due: 0 Wh, ``complete=0`` rows for every member that billing
    queries had to filter. After the first data a gap still gives ``complete=0`` rows — the
    one "no data" state of a balance row.
    """

    def __init__(self, *, pending: Table, watermarks: Table, lateness_ms: int) -> None:
        self.pending = pending
        self.watermarks = watermarks
        self.lateness_ms = lateness_ms
        self._watermark: dict[str, int] = {}

    def _stored(self, community_id: str) -> Watermark | None:
        """The persisted clock of a community; a plain number (the release before) is a
        watermark whose first data came before anything that can arrive now."""
        value = self.watermarks.get(community_id)
        if value is None or isinstance(value, Watermark):
            return value
        return Watermark(int(value), LEGACY_FIRST_MS)

    def watermark(self, community_id: str) -> int | None:
        cached = self._watermark.get(community_id)
        stored = self._stored(community_id)
        if stored is None:
            return cached
        return stored.ts_ms if cached is None else max(cached, stored.ts_ms)

    def first_data(self, community_id: str) -> int | None:
        """The time of the community's first data (None before any)."""
        stored = self._stored(community_id)
        return None if stored is None else stored.first_ms

    def note_data(self, community_id: str, ts_ms: int) -> int | None:
        """Record data at ``ts_ms`` (a sample's time, the start of an official interval).
        Returns the previous first-data time when this moves it back (late data older than
        anything seen: the intervals in between now exist and the caller marks them), None
        otherwise — also for the community's very first data, which has nothing before it."""
        stored = self._stored(community_id)
        first = None if stored is None else stored.first_ms
        if first is not None and first <= ts_ms:
            return None
        wm = self.watermark(community_id)
        self.watermarks[community_id] = Watermark(ts_ms if wm is None else wm, ts_ms)
        return first

    def exists(self, community_id: str, interval_s: int, start: int) -> bool:
        """Whether an interval can hold data: it ends after the quarter of the first data."""
        first = self.first_data(community_id)
        return first is not None and start + interval_s * 1000 > quarter_of(first)

    def advance(self, community_id: str, ts_ms: int) -> tuple[int, bool]:
        """Move the watermark to ``ts_ms`` if newer; (the watermark, whether it crossed a
        quarter bound)."""
        old = self.watermark(community_id)
        if old is not None and ts_ms <= old:
            return old, False
        self._watermark[community_id] = ts_ms
        stored = self._stored(community_id)
        if (stored is None or quarter_of(ts_ms) != quarter_of(stored.ts_ms)
                or ts_ms - stored.ts_ms >= 10_000):
            self.watermarks[community_id] = Watermark(
                ts_ms, None if stored is None else stored.first_ms)
        return ts_ms, old is not None and quarter_of(ts_ms) > quarter_of(old)

    def is_due(self, interval_s: int, start: int, wm: int) -> bool:
        return start + interval_s * 1000 + self.lateness_ms <= wm

    def mark(self, community_id: str, interval_s: int, start: int, wm: int) -> bool:
        """Record a touched interval; True when it is already due (late data: re-opened).
        An interval before the first data (:meth:`exists`) is not recorded."""
        if not self.exists(community_id, interval_s, start):
            return False
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
