"""Interval balances (15 min and 1 h) per member, by event time, idempotent under reprocessing.

State has SET semantics, never ADD semantics, so a worker that reprocesses readings after a
crash or a rebalance ends up with exactly the same state (DESIGN.md §4, §5):

* ``slots``: per device and 15-minute slot, the *first* and *last* counter sample inside the slot
  (all a counter difference at the slot bounds needs: the value at a bound is interpolated
  between the last sample before it and the first one at or after it), and, for devices without
  a counter, the power samples of the slot (for trapezoidal integration). Updating a slot with a
  reading already seen changes nothing.
* ``official``: Datadis closed intervals per device (they supersede the meters for that
  member-hour).
* ``pending``: intervals touched since they were last emitted; ``emitted``: what was last emitted
  per interval (so a re-opened interval is re-published only when its numbers changed).
* ``watermarks``: the newest event time seen per community, and the time of its first data:
  no interval is emitted that ends at or before the quarter of the first data
  (:class:`streams.clock.Windows`).

An interval is emitted once the community's watermark passes its end plus the allowed
lateness, and re-emitted (higher ``version``) whenever late data changes it. The tables are
plain ``MutableMapping`` objects: Faust tables in the worker, dicts in unit checks.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

from ioe.messages import Balance
from ioe.reading import Reading
from ioe.registry import Community, Device
from streams.clock import HOUR_MS, QUARTER_MS, VersionClock, Windows, quarter_of, with_hours
from streams.compute import Calculator, CommunityIndex
from streams.records import HOUR_S, QUARTER_S, interval_key, official_key, slot_key
from streams.state import Slot

__all__ = ["BalanceConfig", "BalanceEngine", "EmissionPlan", "VersionClock", "quarter_of"]

Table = MutableMapping[str, Any]

#: intervals remembered per community as computed (see BalanceEngine._known) before pruning
KNOWN_MAX = 5000


@dataclass(frozen=True)
class BalanceConfig:
    lateness_ms: int = 5 * 60_000
    #: a reading pair further apart than this is a hole (interval incomplete, nothing invented)
    max_gap_ms: int = 30 * 60_000
    #: how far to look for the sample around a bound before giving up
    search_ms: int = 6 * HOUR_MS
    #: slots older than this are dropped when a device opens a new slot (Datadis D+30 fits)
    retention_ms: int = 40 * 24 * HOUR_MS


@dataclass
class EmissionPlan:
    messages: list[Balance] = field(default_factory=list)
    emitted: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)


class BalanceEngine:
    """Ingest (this class: folds readings into the slots, marks the intervals they touch),
    the clock (:class:`streams.clock.Windows`: watermarks, due intervals) and the computation
    (:class:`streams.compute.Calculator`), bound to one set of tables."""

    def __init__(self, *, slots: Table, official: Table, pending: Table, emitted: Table,
                 watermarks: Table, config: BalanceConfig,
                 clock: Callable[[], int] | None = None) -> None:
        self.slots = slots
        self.official = official
        self.emitted = emitted
        self.config = config
        self.clock = clock or VersionClock()
        self.windows = Windows(pending=pending, watermarks=watermarks,
                               lateness_ms=config.lateness_ms)
        self.calculator = Calculator(slots=slots, official=official,
                                     max_gap_ms=config.max_gap_ms, search_ms=config.search_ms)
        #: community id -> (the Community object, intervals computed for it): see _known
        self._computed: dict[str, tuple[Community, set[tuple[int, int]]]] = {}

    @property
    def pending(self) -> Table:
        return self.windows.pending

    def index(self, community: Community) -> CommunityIndex:
        return self.calculator.index(community)

    # -- ingest ------------------------------------------------------------------------------
    def watermark(self, community_id: str) -> int | None:
        return self.windows.watermark(community_id)

    def add(self, community: Community, device: Device, reading: Reading) -> bool:
        """Fold one reading into the state; True when an interval that is already due changed
        (late data: the caller should emit soon) or the watermark crossed a quarter bound."""
        cid = community.id
        wm, crossed = self.windows.advance(cid, reading.ts_ms)
        if reading.interval_s and (reading.interval_energy_wh is not None
                                   or reading.interval_energy_returned_wh is not None):
            touched = self._reopened(cid, reading.ts_ms - reading.interval_s * 1000)
            touched += self._add_official(device, reading)
        elif reading.energy_wh is not None or reading.power_w is not None:
            touched = self._reopened(cid, reading.ts_ms)
            touched += self._add_sample(community, device, reading, wm)
        else:
            touched = []
        due = False
        for interval_s, start in touched:
            due |= self.windows.mark(cid, interval_s, start, wm)
        return due or crossed

    def _reopened(self, community_id: str, ts_ms: int) -> list[tuple[int, int]]:
        """Note data at ``ts_ms`` for the community's first-data time; when it moves that time
        back (data older than any seen, e.g. readings replayed out of order), the intervals
        now in front of the first data that the look-back of a first sample would have marked
        (``search_ms`` before the old first data, no earlier than the new): they were dropped
        while they ended before the first data (:meth:`Windows.mark`), and the walks of this
        one reading need not reach them."""
        previous = self.windows.note_data(community_id, ts_ms)
        if previous is None:
            return []
        stop = quarter_of(previous)
        begin = max(quarter_of(ts_ms), stop - self.config.search_ms)
        return with_hours(list(range(begin, stop, QUARTER_MS)))

    def _add_official(self, device: Device, reading: Reading) -> list[tuple[int, int]]:
        assert reading.interval_s is not None
        key = official_key(device.id, reading.interval_s, reading.ts_ms)
        value = [reading.interval_energy_wh, reading.interval_energy_returned_wh]
        if self.official.get(key) == value:
            return []
        self.official[key] = value
        start = reading.ts_ms - reading.interval_s * 1000
        quarters = range(quarter_of(start), reading.ts_ms, QUARTER_MS)
        return with_hours(list(quarters))

    def _add_sample(self, community: Community, device: Device, reading: Reading, wm: int
                    ) -> list[tuple[int, int]]:
        ts = reading.ts_ms
        q = quarter_of(ts)
        key = slot_key(device.id, q)
        slot = self.slots.get(key)
        new_slot = slot is None
        if slot is None:
            slot = Slot()
        if reading.energy_wh is not None:
            changed, first_changed, last_changed = slot.add_counter(
                (ts, float(reading.energy_wh), None if reading.energy_returned_wh is None
                 else float(reading.energy_returned_wh)))
        else:
            assert reading.power_w is not None
            changed, first_changed, last_changed = slot.add_power((ts, float(reading.power_w)))
        if not changed:
            return []
        self.slots[key] = slot
        if new_slot:
            old = slot_key(device.id, q - self.config.retention_ms)
            if old in self.slots:
                del self.slots[old]
        quarters = [q]
        holes: list[int] = []
        if first_changed:  # the bound at q (and every empty quarter back to the previous sample)
            walked, holes = self._back_quarters(device.id, q)
            quarters += walked
        if last_changed:  # the bound at q + 15 min, up to the next sample or the watermark
            walked, ahead = self._forward_quarters(device.id, q, wm)
            quarters += walked
            holes += ahead
        touched = with_hours(quarters)
        if not holes:
            return touched
        skip = {(QUARTER_S, k) for k in holes}
        skip |= {(HOUR_S, h) for h in {k - k % HOUR_MS for k in holes}
                 if self._hole_hour(device.id, h, q, holes)}
        known = self._known(community)
        return [t for t in touched if not (t in skip and t in known)]

    def _back_quarters(self, device_id: str, q: int) -> tuple[list[int], list[int]]:
        """The quarters before ``q`` whose bound a new first sample of slot ``q`` moves: the
        empty ones back to the previous non-empty slot and that slot's own quarter; and which
        of the empty ones are *holes* for this device.

        They are holes when the previous sample is more than ``max_gap_ms`` before ``q`` (or
        there is none within ``search_ms``: a device's first reading, or one back from a long
        silence): every sample pair spanning an empty quarter is then a gap, so the device adds
        0 Wh and "incomplete" to it before and after this sample alike
        (``streams/energy/intervals.py``). Such a quarter needs recomputing only if it was
        never computed (:meth:`_known`); re-marking it anyway made every new device re-mark
        ~31 already-emitted intervals, each recalculated for every member.
        """
        empty: list[int] = []
        prev = q - QUARTER_MS
        while prev >= q - self.config.search_ms:
            slot = self.slots.get(slot_key(device_id, prev))
            if slot is not None:
                last = slot.last_ts()
                near = last is None or q - last <= self.config.max_gap_ms
                return [*empty, prev], ([] if near else empty)
            empty.append(prev)
            prev -= QUARTER_MS
        # nothing within search_ms: any earlier sample is further away than that
        return empty, (empty if self.config.search_ms >= self.config.max_gap_ms else [])

    def _forward_quarters(self, device_id: str, q: int, wm: int) -> tuple[list[int], list[int]]:
        """The quarters after slot ``q`` whose bound a new last sample of it moves (the empty
        ones up to the next non-empty slot or the watermark, and that slot's quarter), and
        which of the empty ones are holes (see :meth:`_back_quarters`): the next sample is
        more than ``max_gap_ms`` after the end of slot ``q``, or there is none at all (no
        sample is newer than the watermark) — a device replaying a buffered past while the
        others are live."""
        empty: list[int] = []
        nxt = q + QUARTER_MS
        limit = min(wm, q + self.config.search_ms)
        while nxt <= limit:
            if slot_key(device_id, nxt) in self.slots:
                far = nxt - (q + QUARTER_MS) > self.config.max_gap_ms
                return [*empty, nxt], (empty if far else [])
            empty.append(nxt)
            nxt += QUARTER_MS
        if wm <= q + self.config.search_ms:
            return empty, empty
        far = self.config.search_ms - QUARTER_MS >= self.config.max_gap_ms
        return empty, (empty if far else [])

    def _hole_hour(self, device_id: str, hour: int, q: int, holes: list[int]) -> bool:
        """Whether the hour holds only hole quarters. Its quarters below the look-back (only
        reached when nothing was found within ``search_ms``) count when they hold no sample:
        the pairs spanning the hour are then more than ``search_ms`` long, gaps too."""
        hole_set = set(holes)
        floor = q - self.config.search_ms
        return all(k in hole_set or (k < floor and slot_key(device_id, k) not in self.slots)
                   for k in range(hour, hour + HOUR_MS, QUARTER_MS))

    def _known(self, community: Community) -> set[tuple[int, int]]:
        """The intervals (interval_s, start) this process computed for this version of the
        community (a new registry version is a new object). Their result is then up to date
        unless a later change marked them again, so a hole cannot need them recomputed; any
        other interval is marked as before (e.g. re-emitted under a new registry version).
        Only a cache: forgetting an entry merely costs a recalculation."""
        cached = self._computed.get(community.id)
        if cached is None or cached[0] is not community:
            cached = (community, set())
            self._computed[community.id] = cached
        return cached[1]

    def _remember(self, community: Community, interval_s: int, start: int) -> None:
        known = self._known(community)
        known.add((interval_s, start))
        if len(known) > KNOWN_MAX:  # keep the newest two days
            newest = max(s for _, s in known)
            known.difference_update([k for k in known if k[1] < newest - 48 * HOUR_MS])

    # -- emission ----------------------------------------------------------------------------
    def due(self, community_id: str) -> list[tuple[int, int]]:
        """(interval_s, start_ms) of the community's pending intervals whose end plus the
        allowed lateness is behind the watermark, oldest first."""
        return self.windows.due(community_id)

    def plan(self, community: Community) -> EmissionPlan:
        """Compute every due interval: the balance messages that changed (to publish) and the
        table updates to make once they are published (:meth:`commit`)."""
        plan = EmissionPlan()
        self.calculator.memo(True)
        try:
            for interval_s, start in self.due(community.id):
                self._plan_one(plan, community, interval_s, start)
        finally:
            self.calculator.memo(False)
        return plan

    def _plan_one(self, plan: EmissionPlan, community: Community, interval_s: int,
                  start: int) -> None:
        key = interval_key(community.id, interval_s, start)
        rows = self.calculator.compute(community, interval_s, start)
        self._remember(community, interval_s, start)
        before = self.emitted.get(key) or {}
        changed = {r.member_id: _digest(r) for r in rows
                   if before.get(r.member_id) != _digest(r)}
        if changed:
            now = self.clock()
            for row in rows:
                if row.member_id in changed:
                    plan.messages.append(replace(row, computed_at_ms=now, version=now))
            plan.emitted[key] = {**before, **changed}
        plan.done.append(key)

    def commit(self, plan: EmissionPlan) -> None:
        for key, digests in plan.emitted.items():
            self.emitted[key] = digests
        self.windows.done(plan.done)

    def emit_due(self, community: Community) -> list[Balance]:
        """:meth:`plan` + :meth:`commit` in one step (when publishing cannot fail)."""
        plan = self.plan(community)
        self.commit(plan)
        return plan.messages

    def compute(self, community: Community, interval_s: int, start: int) -> list[Balance]:
        """One row per member for ``[start, start + interval_s)`` (version 0)."""
        return self.calculator.compute(community, interval_s, start)


def _digest(row: Balance) -> list[Any]:
    """What makes an emitted row different (kept in the ``emitted`` table as a JSON list)."""
    return [row.coefficient, row.generation_wh, row.consumption_wh, row.assigned_wh,
            row.self_consumed_wh, row.surplus_wh, row.import_wh, str(row.source), row.complete]
