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
* ``watermarks``: the newest event time seen per community.

An interval is emitted once the community's watermark passes its end plus the allowed
lateness, and re-emitted (higher ``version``) whenever late data changes it. The tables are
plain ``MutableMapping`` objects: Faust tables in the worker, dicts in unit checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from ioe.reading import Reading
from ioe.registry import Community, Device
from streams.energy.balance import split
from streams.energy.intervals import (
    IntervalEnergy,
    counter_energy,
    interval_energy,
    power_energy,
)
from streams.records import (
    HOUR_S,
    INTERVALS_S,
    QUARTER_S,
    interval_key,
    official_key,
    parse_interval_key,
    rnd,
    slot_key,
)

QUARTER_MS = QUARTER_S * 1000
HOUR_MS = HOUR_S * 1000

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


def quarter_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % QUARTER_MS


def is_official(device: Device) -> bool:
    return device.id.startswith("datadis:")


class VersionClock:
    """Wall-clock milliseconds, strictly increasing inside the process (ReplacingMergeTree
    keeps the highest version, so two emissions must never share one)."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        self._last = max(int(time.time() * 1000), self._last + 1)
        return self._last


@dataclass(frozen=True)
class CommunityIndex:
    """Which devices feed which balance term, worked out once per registry version: scanning
    every device of a 150-member community for each member of each interval was most of the
    cost of a recalculation."""

    #: member id -> its own (non-Datadis) consumption meters, in registry order
    meters: dict[str, tuple[Device, ...]]
    #: plant id -> (its Datadis generation devices, its generation meters), in registry order
    plants: dict[str, tuple[tuple[Device, ...], tuple[Device, ...]]]

    @classmethod
    def of(cls, community: Community) -> CommunityIndex:
        meters: dict[str, list[Device]] = {}
        plants: dict[str, tuple[list[Device], list[Device]]] = {
            p.id: ([], []) for p in community.plants}
        for d in community.devices:
            if d.role == "consumption" and not is_official(d) and d.member_id is not None:
                meters.setdefault(d.member_id, []).append(d)
            if d.role == "generation" and d.plant_id in plants:
                plants[d.plant_id][0 if is_official(d) else 1].append(d)
        return cls(meters={k: tuple(v) for k, v in meters.items()},
                   plants={k: (tuple(o), tuple(m)) for k, (o, m) in plants.items()})


@dataclass
class EmissionPlan:
    messages: list[dict[str, Any]] = field(default_factory=list)
    emitted: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)


class BalanceEngine:
    def __init__(self, *, slots: Table, official: Table, pending: Table, emitted: Table,
                 watermarks: Table, config: BalanceConfig,
                 clock: Callable[[], int] | None = None) -> None:
        self.slots = slots
        self.official = official
        self.pending = pending
        self.emitted = emitted
        self.watermarks = watermarks
        self.config = config
        self.clock = clock or VersionClock()
        self._watermark: dict[str, int] = {}
        #: community id -> (the Community object it was built from, its index); a new registry
        #: version is a new object, so identity tells when to rebuild
        self._indexes: dict[str, tuple[Community, CommunityIndex]] = {}
        #: community id -> (the Community object, intervals computed for it): see _known
        self._computed: dict[str, tuple[Community, set[tuple[int, int]]]] = {}
        #: slot reads cached while :meth:`plan` runs (None otherwise)
        self._slot_memo: dict[str, Any] | None = None

    def index(self, community: Community) -> CommunityIndex:
        cached = self._indexes.get(community.id)
        if cached is None or cached[0] is not community:
            cached = (community, CommunityIndex.of(community))
            self._indexes[community.id] = cached
        return cached[1]

    # -- ingest ------------------------------------------------------------------------------
    def watermark(self, community_id: str) -> int | None:
        cached = self._watermark.get(community_id)
        value = self.watermarks.get(community_id)
        if value is None:
            return cached
        return int(value) if cached is None else max(cached, int(value))

    def _advance(self, community_id: str, ts_ms: int) -> None:
        """The watermark moves with nearly every reading; the table (one changelog message
        per write) gets it only when a quarter is crossed or every 10 s of event time. After
        a restart it may lag by that much, which merely delays an emission."""
        self._watermark[community_id] = ts_ms
        persisted = self.watermarks.get(community_id)
        if (persisted is None or quarter_of(ts_ms) != quarter_of(int(persisted))
                or ts_ms - int(persisted) >= 10_000):
            self.watermarks[community_id] = ts_ms

    def add(self, community: Community, device: Device, reading: Reading) -> bool:
        """Fold one reading into the state; True when an interval that is already due changed
        (late data: the caller should emit soon) or the watermark crossed a quarter bound."""
        cid = community.id
        old_wm = self.watermark(cid)
        if old_wm is None or reading.ts_ms > old_wm:
            self._advance(cid, reading.ts_ms)
        wm = max(reading.ts_ms, old_wm or reading.ts_ms)
        crossed = old_wm is not None and quarter_of(wm) > quarter_of(old_wm)
        if reading.interval_s and (reading.interval_energy_wh is not None
                                   or reading.interval_energy_returned_wh is not None):
            touched = self._add_official(device, reading)
        elif reading.energy_wh is not None or reading.power_w is not None:
            touched = self._add_sample(community, device, reading, wm)
        else:
            touched = []
        due = False
        for interval_s, start in touched:
            due |= self._mark(cid, interval_s, start, wm)
        return due or crossed

    def _add_official(self, device: Device, reading: Reading) -> list[tuple[int, int]]:
        assert reading.interval_s is not None
        key = official_key(device.id, reading.interval_s, reading.ts_ms)
        value = [reading.interval_energy_wh, reading.interval_energy_returned_wh]
        if self.official.get(key) == value:
            return []
        self.official[key] = value
        start = reading.ts_ms - reading.interval_s * 1000
        quarters = range(quarter_of(start), reading.ts_ms, QUARTER_MS)
        return self._with_hours(list(quarters))

    def _add_sample(self, community: Community, device: Device, reading: Reading, wm: int
                    ) -> list[tuple[int, int]]:
        ts = reading.ts_ms
        q = quarter_of(ts)
        key = slot_key(device.id, q)
        slot = self.slots.get(key)
        new_slot = slot is None
        slot = dict(slot) if slot else {}
        first_changed = last_changed = False
        if reading.energy_wh is not None:
            sample = [ts, reading.energy_wh, reading.energy_returned_wh]
            first, last = slot.get("cf"), slot.get("cl")
            if first is None or ts < first[0] or (ts == first[0] and sample != first):
                slot["cf"] = sample
                first_changed = True
            if last is None or ts > last[0] or (ts == last[0] and sample != last):
                slot["cl"] = sample
                last_changed = True
        else:
            samples = [list(s) for s in slot.get("p", [])]
            sample = [ts, reading.power_w]
            if sample not in samples:
                samples = sorted([s for s in samples if s[0] != ts] + [sample])
                first_changed = samples[0][0] == ts
                last_changed = samples[-1][0] == ts
                slot["p"] = samples
            else:
                return []
        if not (first_changed or last_changed):
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
        touched = self._with_hours(quarters)
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
                last = _last_ts(slot)
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

    @staticmethod
    def _with_hours(quarters: list[int]) -> list[tuple[int, int]]:
        hours = {q - q % HOUR_MS for q in quarters}
        return [(QUARTER_S, q) for q in set(quarters)] + [(HOUR_S, h) for h in hours]

    def _mark(self, cid: str, interval_s: int, start: int, wm: int) -> bool:
        key = interval_key(cid, interval_s, start)
        if key not in self.pending:
            self.pending[key] = 1
        return start + interval_s * 1000 + self.config.lateness_ms <= wm

    # -- emission ----------------------------------------------------------------------------
    def due(self, community_id: str) -> list[tuple[int, int]]:
        """(interval_s, start_ms) of the community's pending intervals whose end plus the
        allowed lateness is behind the watermark, oldest first."""
        wm = self.watermark(community_id)
        if wm is None:
            return []
        out = []
        for key in list(self.pending.keys()):
            cid, interval_s, start = parse_interval_key(key)
            if cid == community_id and start + interval_s * 1000 + self.config.lateness_ms <= wm:
                out.append((interval_s, start))
        return sorted(out, key=lambda x: (x[1], x[0]))

    def plan(self, community: Community) -> EmissionPlan:
        """Compute every due interval: the balance messages that changed (to publish) and the
        table updates to make once they are published (:meth:`commit`)."""
        plan = EmissionPlan()
        # the slots do not change while planning: each device's slots are read once, not
        # once per due interval (the look-back around an empty interval reads ~50 of them)
        self._slot_memo = {}
        try:
            for interval_s, start in self.due(community.id):
                self._plan_one(plan, community, interval_s, start)
        finally:
            self._slot_memo = None
        return plan

    def _plan_one(self, plan: EmissionPlan, community: Community, interval_s: int,
                  start: int) -> None:
        key = interval_key(community.id, interval_s, start)
        rows = self.compute(community, interval_s, start)
        self._remember(community, interval_s, start)
        before = self.emitted.get(key) or {}
        changed = {r["member_id"]: _digest(r) for r in rows
                   if before.get(r["member_id"]) != _digest(r)}
        if changed:
            now = self.clock()
            for row in rows:
                if row["member_id"] in changed:
                    plan.messages.append({**row, "computed_at_ms": now, "version": now})
            plan.emitted[key] = {**before, **changed}
        plan.done.append(key)

    def commit(self, plan: EmissionPlan) -> None:
        for key, digests in plan.emitted.items():
            self.emitted[key] = digests
        for key in plan.done:
            if key in self.pending:
                del self.pending[key]

    def emit_due(self, community: Community) -> list[dict[str, Any]]:
        """:meth:`plan` + :meth:`commit` in one step (when publishing cannot fail)."""
        plan = self.plan(community)
        self.commit(plan)
        return plan.messages

    # -- the balance of one interval ----------------------------------------------------------
    def compute(self, community: Community, interval_s: int, start: int) -> list[dict[str, Any]]:
        """One row per member for ``[start, start + interval_s)`` (without version)."""
        end = start + interval_s * 1000
        generation, gen_complete = self._generation(community, start, end)
        rows = []
        for member in community.members:
            consumption, c_complete, source = self._consumption(community, member.id,
                                                                member.cups, start, end)
            beta = community.coefficient(member.id, start)
            s = split(beta, generation, consumption)
            rows.append({
                "v": 1, "community_id": community.id, "member_id": member.id,
                "cups": member.cups, "interval_start_ms": start, "interval_s": interval_s,
                "coefficient": beta, "generation_wh": rnd(generation),
                "consumption_wh": rnd(consumption), "assigned_wh": rnd(s.assigned),
                "self_consumed_wh": rnd(s.self_consumed), "surplus_wh": rnd(s.surplus),
                "import_wh": rnd(s.grid_import), "source": source,
                "complete": gen_complete and c_complete,
            })
        return rows

    def _generation(self, community: Community, start: int, end: int) -> tuple[float, bool]:
        """Net generation G of the community: Σ plants, each from Datadis when it delivered the
        whole interval, from the plant's generation meters otherwise."""
        total, complete = 0.0, bool(community.plants)
        plants = self.index(community).plants
        for plant in community.plants:
            official, meters = plants[plant.id]
            got = self._official_energy(official[0], start, end) if official else None
            if got is not None and got.complete:
                total += got.wh
                continue
            if not meters:
                complete = False
                continue
            for device in meters:
                energy = self._device_energy(device, start, end, net=True)
                total += energy.wh
                complete &= energy.complete
        return total, complete

    def _consumption(self, community: Community, member_id: str, cups: str, start: int,
                     end: int) -> tuple[float, bool, str]:
        official = self._official_energy(_datadis(community, cups), start, end)
        if official is not None and official.complete:
            return max(official.wh, 0.0), True, "datadis"
        meters = self.index(community).meters.get(member_id, ())
        total, complete = 0.0, bool(meters)
        for device in meters:
            energy = self._device_energy(device, start, end, net=False)
            total += max(energy.wh, 0.0)
            complete &= energy.complete
        return total, complete, "meter"

    def _official_energy(self, device: Device | None, start: int, end: int
                         ) -> IntervalEnergy | None:
        if device is None:
            return None
        records: list[tuple[int, int, float]] = []
        for interval_s in INTERVALS_S:
            step = interval_s * 1000
            for end_ts in range(start + step, end + 1, step):
                value = self.official.get(official_key(device.id, interval_s, end_ts))
                if value is not None:
                    records.append((end_ts, interval_s, _official_wh(device, value)))
        if not records:
            return None
        # quarters and the hour may both exist: prefer the hour record when it covers it all
        hours = [r for r in records if r[1] == HOUR_S]
        got = interval_energy(hours, start, end) if hours else None
        if got is not None and got.complete:
            return got
        return interval_energy([r for r in records if r[1] == QUARTER_S], start, end)

    def _device_energy(self, device: Device, start: int, end: int, *, net: bool
                       ) -> IntervalEnergy:
        slots = self._slots_around(device.id, start, end)
        forward: list[tuple[int, float]] = []
        returned: list[tuple[int, float]] = []
        power: list[tuple[int, float]] = []
        for slot in slots:
            for name in ("cf", "cl"):
                sample = slot.get(name)
                if sample is not None:
                    forward.append((int(sample[0]), float(sample[1])))
                    if net and sample[2] is not None:
                        returned.append((int(sample[0]), float(sample[2])))
            power.extend((int(ts), float(p)) for ts, p in slot.get("p", []))
        gap = self.config.max_gap_ms
        if forward:
            energy = counter_energy(forward, start, end, max_gap_ms=gap)
            if returned:
                back = counter_energy(returned, start, end, max_gap_ms=gap)
                energy = IntervalEnergy(energy.wh - back.wh, energy.complete and back.complete,
                                        "counter")
            return energy
        if power:
            return power_energy(power, start, end, max_gap_ms=gap,
                                part="net" if net else "positive")
        return IntervalEnergy(0.0, False, "none")

    def _slot(self, key: str) -> Any:
        memo = self._slot_memo
        if memo is None:
            return self.slots.get(key)
        try:
            return memo[key]
        except KeyError:
            memo[key] = slot = self.slots.get(key)
            return slot

    def _slots_around(self, device_id: str, start: int, end: int) -> list[dict[str, Any]]:
        """The slots inside ``[start, end)`` plus the nearest non-empty slot on each side."""
        found: list[dict[str, Any]] = []
        q = start - QUARTER_MS
        while q >= start - self.config.search_ms:
            slot = self._slot(slot_key(device_id, q))
            if slot:
                found.append(_edge(slot, last=True))
                break
            q -= QUARTER_MS
        for q in range(start, end, QUARTER_MS):
            slot = self._slot(slot_key(device_id, q))
            if slot:
                found.append(slot)
        q = end
        while q <= end + self.config.search_ms:
            slot = self._slot(slot_key(device_id, q))
            if slot:
                found.append(_edge(slot, last=False))
                break
            q += QUARTER_MS
        return found


def _last_ts(slot: dict[str, Any]) -> int | None:
    """The newest sample of a slot, counter or power (None when it holds none)."""
    stamps = [int(s[0]) for s in (slot.get("cl"), *(slot.get("p") or [])[-1:]) if s]
    return max(stamps) if stamps else None


def _edge(slot: dict[str, Any], *, last: bool) -> dict[str, Any]:
    """Only the sample of a neighbouring slot that is next to the interval."""
    power = slot.get("p") or []
    return {
        "cf" if not last else "cl": slot.get("cl" if last else "cf"),
        "p": power[-1:] if last else power[:1],
    }


def _official_wh(device: Device, value: Iterable[float | None]) -> float:
    """Datadis energy of a closed interval: consumption = forward energy; a plant's net
    generation = produced (forward) − consumed (returned), the contract's generator sign."""
    forward, returned = list(value)
    if device.role == "generation":
        return (forward or 0.0) - (returned or 0.0)
    return forward or 0.0


def _datadis(community: Community, cups: str) -> Device | None:
    return community.device(f"datadis:{cups}")


def _digest(row: dict[str, Any]) -> list[Any]:
    return [row[k] for k in ("coefficient", "generation_wh", "consumption_wh", "assigned_wh",
                             "self_consumed_wh", "surplus_wh", "import_wh", "source",
                             "complete")]
