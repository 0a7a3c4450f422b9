"""The computation part of the balances: one community's interval balances from the state.

Pure and stateless apart from the tables it reads (plain mappings of :class:`Slot` and official
records): energies of each device in the interval (:mod:`streams.energy.intervals`), the
community's net generation G, each member's consumption C, and β applied once per member
through :func:`streams.shares.coefficients` and :func:`streams.energy.balance.split` — the same
two functions the live view uses. It never decides *when* an interval is computed
(:mod:`streams.clock`) nor writes anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ioe.messages import Balance, BalanceSource
from ioe.registry import Community, Device, Role, official_device_id
from streams.clock import HOUR_MS, QUARTER_MS
from streams.energy.balance import split
from streams.energy.intervals import (
    IntervalEnergy,
    counter_energy,
    interval_energy,
    power_energy,
)
from streams.records import HOUR_S, INTERVALS_S, QUARTER_S, official_key, slot_key
from streams.shares import coefficients
from streams.state import Slot


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
            if d.role is Role.CONSUMPTION and not d.is_official and d.member_id is not None:
                meters.setdefault(d.member_id, []).append(d)
            if d.role is Role.GENERATION and d.plant_id in plants:
                plants[d.plant_id][0 if d.is_official else 1].append(d)
        return cls(meters={k: tuple(v) for k, v in meters.items()},
                   plants={k: (tuple(o), tuple(m)) for k, (o, m) in plants.items()})


class Calculator:
    """Balances of one interval from the ``slots`` and ``official`` tables."""

    def __init__(self, *, slots: Mapping[str, Slot], official: Mapping[str, Any],
                 max_gap_ms: int, search_ms: int) -> None:
        self.slots = slots
        self.official = official
        self.max_gap_ms = max_gap_ms
        self.search_ms = search_ms
        self._indexes: dict[str, tuple[Community, CommunityIndex]] = {}
        #: slot reads cached while a plan runs (None otherwise): see :meth:`memo`
        self._slot_memo: dict[str, Slot | None] | None = None

    def index(self, community: Community) -> CommunityIndex:
        """Rebuilt when the registry publishes a new version (a new object)."""
        cached = self._indexes.get(community.id)
        if cached is None or cached[0] is not community:
            cached = (community, CommunityIndex.of(community))
            self._indexes[community.id] = cached
        return cached[1]

    def memo(self, on: bool) -> None:
        """While planning the slots do not change: each device's slots are read once, not once
        per due interval (the look-back around an empty interval reads ~50 of them)."""
        self._slot_memo = {} if on else None

    def compute(self, community: Community, interval_s: int, start: int) -> list[Balance]:
        """One row per member for ``[start, start + interval_s)`` (version 0: set when it is
        emitted)."""
        end = start + interval_s * 1000
        generation, gen_complete = self._generation(community, start, end)
        betas = coefficients(community, start)
        rows = []
        for member in community.members:
            consumption, c_complete, source = self._consumption(community, member.id,
                                                                member.cups, start, end)
            beta = betas[member.id]
            s = split(beta, generation, consumption)
            rows.append(Balance(
                community_id=community.id, member_id=member.id, cups=member.cups,
                interval_start_ms=start, interval_s=interval_s, coefficient=beta,
                generation_wh=_r(generation), consumption_wh=_r(consumption),
                assigned_wh=_r(s.assigned), self_consumed_wh=_r(s.self_consumed),
                surplus_wh=_r(s.surplus), import_wh=_r(s.grid_import), source=source,
                complete=gen_complete and c_complete))
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
                     end: int) -> tuple[float, bool, BalanceSource]:
        official = self._official_energy(community.device(official_device_id(cups)), start, end)
        if official is not None and official.complete:
            return max(official.wh, 0.0), True, BalanceSource.DATADIS
        meters = self.index(community).meters.get(member_id, ())
        total, complete = 0.0, bool(meters)
        for device in meters:
            energy = self._device_energy(device, start, end, net=False)
            total += max(energy.wh, 0.0)
            complete &= energy.complete
        return total, complete, BalanceSource.METER

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
        forward: list[tuple[int, float]] = []
        returned: list[tuple[int, float]] = []
        power: list[tuple[int, float]] = []
        for slot in self._slots_around(device.id, start, end):
            for sample in (slot.first, slot.last):
                if sample is not None:
                    forward.append((sample[0], sample[1]))
                    if net and sample[2] is not None:
                        returned.append((sample[0], sample[2]))
            power.extend(slot.power)
        gap = self.max_gap_ms
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

    def _slot(self, key: str) -> Slot | None:
        memo = self._slot_memo
        if memo is None:
            return self.slots.get(key)
        try:
            return memo[key]
        except KeyError:
            memo[key] = slot = self.slots.get(key)
            return slot

    def _slots_around(self, device_id: str, start: int, end: int) -> list[Slot]:
        """The slots inside ``[start, end)`` plus the nearest non-empty slot on each side."""
        found: list[Slot] = []
        q = start - QUARTER_MS
        while q >= start - self.search_ms:
            slot = self._slot(slot_key(device_id, q))
            if slot:
                found.append(slot.edge(last=True))
                break
            q -= QUARTER_MS
        for q in range(start, end, QUARTER_MS):
            slot = self._slot(slot_key(device_id, q))
            if slot:
                found.append(slot)
        q = end
        while q <= end + self.search_ms:
            slot = self._slot(slot_key(device_id, q))
            if slot:
                found.append(slot.edge(last=False))
                break
            q += QUARTER_MS
        return found


def _official_wh(device: Device, value: Iterable[float | None]) -> float:
    """Datadis energy of a closed interval: consumption = forward energy; a plant's net
    generation = produced (forward) − consumed (returned), the contract's generator sign."""
    forward, returned = list(value)
    if device.role is Role.GENERATION:
        return (forward or 0.0) - (returned or 0.0)
    return forward or 0.0


def _r(value: float) -> float:
    """Round published numbers: float noise (1e-13 Wh) must not count as a change."""
    return round(float(value), 3)


__all__ = ["Calculator", "CommunityIndex", "HOUR_MS"]
