"""What operators see of the worker fleet (``ioe workers status``): pure, from snapshots.

The facts come from Kafka itself, not from the workers, so a stalled or dead worker cannot hide:
the consumer group's members and their assigned ``ioe.readings`` partitions, the group's
committed offsets sampled twice a few seconds apart (the processing rate: workers commit only
after processing), and the partitions' end offsets (the lag). Which communities a partition
carries follows from the key: ``ioe.readings`` is keyed by community id and every producer uses
Kafka's default partitioner (murmur2 of the key), so :func:`partition_of` is the same function
the producers apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kafka.partitioner.default import murmur2


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (Java and Python clients)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def communities_by_partition(community_ids: Iterable[str], partitions: int
                             ) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for cid in sorted(community_ids):
        out.setdefault(partition_of(cid, partitions), []).append(cid)
    return out


@dataclass(frozen=True)
class PartitionStatus:
    partition: int
    committed: int | None  # None: the group never committed here
    end: int
    rate_per_s: float      # readings committed per second over the sample window
    communities: tuple[str, ...] = ()

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.committed or 0))


@dataclass(frozen=True)
class MemberStatus:
    member_id: str
    client_id: str
    host: str
    partitions: tuple[PartitionStatus, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def rate_per_s(self) -> float:
        return sum(p.rate_per_s for p in self.partitions)

    @property
    def stalled(self) -> bool:
        """Readings wait on its partitions and none was committed during the window."""
        return self.lag > 0 and self.rate_per_s == 0.0


@dataclass(frozen=True)
class FleetStatus:
    group: str
    topic: str
    state: str
    window_s: float
    members: tuple[MemberStatus, ...]
    #: partitions no member holds (a rebalance under way, or no worker running)
    unassigned: tuple[PartitionStatus, ...] = field(default=())

    @property
    def lag(self) -> int:
        return sum(m.lag for m in self.members) + sum(p.lag for p in self.unassigned)

    @property
    def stalled(self) -> tuple[MemberStatus, ...]:
        return tuple(m for m in self.members if m.stalled)

    def to_dict(self) -> dict[str, object]:
        def part(p: PartitionStatus) -> dict[str, object]:
            return {"partition": p.partition, "committed": p.committed, "end": p.end,
                    "lag": p.lag, "rate_per_s": round(p.rate_per_s, 1),
                    "communities": list(p.communities)}
        return {"group": self.group, "topic": self.topic, "state": self.state,
                "window_s": self.window_s, "lag": self.lag,
                "stalled": [m.member_id for m in self.stalled],
                "members": [{"member_id": m.member_id, "client_id": m.client_id,
                             "host": m.host, "lag": m.lag, "rate_per_s": round(m.rate_per_s, 1),
                             "stalled": m.stalled, "partitions": [part(p) for p in m.partitions]}
                            for m in self.members],
                "unassigned": [part(p) for p in self.unassigned]}


def fleet_status(*, group: str, topic: str, state: str, partitions: int,
                 assignments: Mapping[tuple[str, str, str], Iterable[int]],
                 committed_before: Mapping[int, int | None],
                 committed_after: Mapping[int, int | None], ends: Mapping[int, int],
                 window_s: float, community_ids: Iterable[str]) -> FleetStatus:
    """Assemble the fleet from the snapshots. ``assignments`` maps (member id, client id,
    host) to the ``topic`` partitions that member holds."""
    carried = communities_by_partition(community_ids, partitions)

    def status(p: int) -> PartitionStatus:
        before, after = committed_before.get(p), committed_after.get(p)
        moved = (after or 0) - (before or 0) if after is not None else 0
        return PartitionStatus(partition=p, committed=after, end=ends.get(p, 0),
                               rate_per_s=max(0, moved) / window_s if window_s > 0 else 0.0,
                               communities=tuple(carried.get(p, ())))

    held: set[int] = set()
    members = []
    for (member_id, client_id, host), parts in sorted(assignments.items()):
        mine = tuple(status(p) for p in sorted(set(parts)))
        held.update(p.partition for p in mine)
        members.append(MemberStatus(member_id, client_id, host, mine))
    unassigned = tuple(status(p) for p in range(partitions) if p not in held)
    return FleetStatus(group=group, topic=topic, state=state, window_s=window_s,
                       members=tuple(members), unassigned=unassigned)


def render(status: FleetStatus) -> list[str]:
    """The table ``ioe workers status`` prints."""
    lines = [f"group {status.group} ({status.state}) on {status.topic}: "
             f"{len(status.members)} member(s), lag {status.lag}, "
             f"{len(status.stalled)} stalled (window {status.window_s:.1f} s)"]
    header = f"{'member':<44} {'partition':>9} {'committed':>10} {'end':>10} {'lag':>8} " \
             f"{'rate/s':>8}  communities"
    lines.append(header)
    rows: list[tuple[str, PartitionStatus]] = [
        (f"{m.client_id}@{m.host} {m.member_id[-8:]}" + (" STALLED" if m.stalled else ""), p)
        for m in status.members for p in m.partitions]
    rows += [("(unassigned)", p) for p in status.unassigned]
    for who, p in rows:
        committed = "-" if p.committed is None else str(p.committed)
        lines.append(f"{who:<44} {p.partition:>9} {committed:>10} {p.end:>10} {p.lag:>8} "
                     f"{p.rate_per_s:>8.1f}  {', '.join(p.communities) or '-'}")
    return lines
