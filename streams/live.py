"""Live shares: DESIGN.md §1 on power instead of energy, for one community at one instant.

Pure: the worker hands in the latest power of every device (from its ``latest`` table) and the
community's event-time "now" (the newest reading seen), and gets back the member and community
messages of ``ioe.live``. Event time rather than the wall clock decides staleness so that a
replayed or simulated day behaves exactly as it did live.

A device silent longer than ``staleness_ms`` is *unknown*, never zero: a plant whose inverter
stopped reporting would otherwise show every member importing everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ioe.messages import GeneratorPower, LiveCommunity, LiveMember, PlantPower
from ioe.registry import Community, Device, Role
from streams.records import rnd
from streams.shares import coefficients, member_split
from streams.state import Latest

#: latest power per device: device_id -> Latest (or a plain (power_w, ts_ms) pair)
LatestMap = Mapping[str, "Latest | tuple[float, int]"]


@dataclass(frozen=True)
class LiveUpdate:
    members: dict[str, LiveMember]  # member_id -> member message
    community: LiveCommunity


def _fresh(latest: LatestMap, device_id: str, now_ms: int, staleness_ms: int
           ) -> tuple[float | None, int | None, bool]:
    """(power, ts, stale) of one device; stale when never seen or silent too long."""
    value = latest.get(device_id)
    if value is None:
        return None, None, True
    if isinstance(value, Latest):
        power, ts = value.power_w, value.ts_ms
    else:  # (power, ts): the tests' plain tuples, and the release before's table values
        power, ts = float(value[0]), int(value[1])
    return power, ts, now_ms - ts > staleness_ms


def _sum_fresh(devices: list[Device], latest: LatestMap, now_ms: int, staleness_ms: int,
               clamp: bool) -> float | None:
    """Sum of the devices' power, or None when any of them is unknown (or there are none)."""
    if not devices:
        return None
    total = 0.0
    for device in devices:
        power, _ts, stale = _fresh(latest, device.id, now_ms, staleness_ms)
        if stale or power is None:
            return None
        total += max(power, 0.0) if clamp else power
    return total


@dataclass(frozen=True)
class _Index:
    generators: tuple[Device, ...]
    #: plant id -> its generators; member id -> its consumption meters (registry order)
    plant_generators: dict[str, tuple[Device, ...]]
    member_meters: dict[str, tuple[Device, ...]]


#: community id -> (the Community object, its index): rebuilt when the registry publishes a new
#: version (a new object); scanning every device for each of 150 members cost more than the rest
_INDEXES: dict[str, tuple[Community, _Index]] = {}


def _index(community: Community) -> _Index:
    cached = _INDEXES.get(community.id)
    if cached is None or cached[0] is not community:
        # the distributor's meter (Datadis) delivers closed hours days later: not live data
        live_devices = [d for d in community.devices if not d.is_official]
        generators = tuple(d for d in live_devices if d.role is Role.GENERATION and d.plant_id)
        plants: dict[str, list[Device]] = {}
        meters: dict[str, list[Device]] = {}
        for d in generators:
            plants.setdefault(str(d.plant_id), []).append(d)
        for d in live_devices:
            if d.role is Role.CONSUMPTION and d.member_id is not None:
                meters.setdefault(d.member_id, []).append(d)
        cached = (community, _Index(generators,
                                    {k: tuple(v) for k, v in plants.items()},
                                    {k: tuple(v) for k, v in meters.items()}))
        _INDEXES[community.id] = cached
    return cached[1]


def compute(community: Community, latest: LatestMap, now_ms: int, staleness_ms: int) -> LiveUpdate:
    """The member and community messages for ``community`` at event time ``now_ms``."""
    cid = community.id
    index = _index(community)
    generators = list(index.generators)
    gen_info: dict[str, GeneratorPower] = {}
    for device in generators:
        power, ts, stale = _fresh(latest, device.id, now_ms, staleness_ms)
        gen_info[device.id] = GeneratorPower(rnd(power), ts, stale)
    generation = _sum_fresh(generators, latest, now_ms, staleness_ms, clamp=False)
    plants: dict[str, PlantPower] = {}
    for plant in community.plants:
        own = list(index.plant_generators.get(plant.id, ()))
        stamps = [t for t in (gen_info[d.id].ts_ms for d in own) if t is not None]
        plants[plant.id] = PlantPower(
            rnd(_sum_fresh(own, latest, now_ms, staleness_ms, clamp=False)),
            max(stamps) if stamps else None)

    members: dict[str, LiveMember] = {}
    consumption_total = sc_total = surplus_total = import_total = 0.0
    reporting = 0
    betas = coefficients(community, now_ms)
    for member in community.members:
        meters = list(index.member_meters.get(member.id, ()))
        consumption = _sum_fresh(meters, latest, now_ms, staleness_ms, clamp=True)
        beta = betas[member.id]
        s = member_split(beta, generation, consumption)
        both = s is not None and consumption is not None
        if consumption is not None:
            reporting += 1
            consumption_total += consumption
        if both and s is not None:
            sc_total += s.self_consumed
            surplus_total += s.surplus
            import_total += s.grid_import
        members[member.id] = LiveMember(
            community_id=cid, member_id=member.id, ts_ms=now_ms, coefficient=beta,
            generation_w=rnd(generation), assigned_w=rnd(s.assigned) if s else None,
            consumption_w=rnd(consumption),
            self_consumption_w=rnd(s.self_consumed) if both and s else None,
            surplus_w=rnd(s.surplus) if both and s else None,
            import_w=rnd(s.grid_import) if both and s else None,
            stale=not both)

    known = generation is not None
    community_msg = LiveCommunity(
        community_id=cid, ts_ms=now_ms, generation_w=rnd(generation),
        consumption_w=rnd(consumption_total),
        self_consumption_w=rnd(sc_total) if known else None,
        surplus_w=rnd(surplus_total) if known else None,
        import_w=rnd(import_total) if known else None,
        members_reporting=reporting, members_total=len(community.members),
        plants=plants, generators=gen_info)
    return LiveUpdate(members=members, community=community_msg)


def fingerprint(msg: LiveMember | LiveCommunity) -> LiveMember | LiveCommunity:
    """What makes a message *different* (its timestamp alone does not)."""
    return replace(msg, ts_ms=0)
