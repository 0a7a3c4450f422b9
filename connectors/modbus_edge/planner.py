"""Request planning: the fewest Modbus reads that cover every point, never reading the unknown.

Many devices answer a read that touches an undefined register with exception 0x02 for the
*whole* request, so two points are merged into one request only when the registers between
them are known to exist: the points are adjacent, or a ``defined`` range of the map (for
SunSpec: the model block) covers the gap. A request never exceeds the device limit (≤ 125).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from connectors.modbus_edge.maps import Point

MAX_REGISTERS = 125


@dataclass(frozen=True)
class Request:
    fc: int
    address: int
    count: int
    points: tuple[Point, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


def _bridgeable(fc: int, start: int, end: int,
                defined: Iterable[tuple[int, int, int]]) -> bool:
    """True when registers [start, end) all lie inside one range the device answers."""
    return start >= end or any(f == fc and s <= start and end <= e for f, s, e in defined)


def _units(points: Sequence[Point], max_registers: int,
           ranges: tuple[tuple[int, int, int], ...]) -> list[list[Point]]:
    """Points that must travel together: a value and its scale factor (SunSpec) form one unit,
    so a value is never combined with a scale factor read at another moment."""
    by_name = {p.name: p for p in points}
    parent = {p.name: p.name for p in points}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for point in points:
        sf = by_name.get(point.scale_factor or "")
        if sf is not None and sf.fc == point.fc:
            parent[root(point.name)] = root(sf.name)
    groups: dict[str, list[Point]] = {}
    for point in points:
        groups.setdefault(root(point.name), []).append(point)
    units: list[list[Point]] = []
    for group in groups.values():
        start = min(p.address for p in group)
        end = max(p.end for p in group)
        fc = group[0].fc
        if len(group) == 1 or (end - start <= max_registers
                               and _bridgeable(fc, start, end, ranges)):
            units.append(group)
        else:  # cannot be read at once: fall back to separate points
            units.extend([p] for p in group)
    # units whose spans overlap are read together (a scale factor between two values)
    units.sort(key=lambda u: (u[0].fc, min(p.address for p in u)))
    merged: list[list[Point]] = []
    for unit in units:
        if merged and merged[-1][0].fc == unit[0].fc:
            last = merged[-1]
            last_end = max(p.end for p in last)
            start = min(p.address for p in unit)
            span = max(last_end, max(p.end for p in unit)) - min(p.address for p in last)
            if start < last_end and span <= max_registers:
                last.extend(unit)
                continue
        merged.append(list(unit))
    return merged


def plan(points: Sequence[Point], *, max_registers: int = MAX_REGISTERS,
         defined: Iterable[tuple[int, int, int]] = ()) -> list[Request]:
    """Group points into contiguous requests of at most ``max_registers`` registers."""
    if not 1 <= max_registers <= MAX_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_REGISTERS}")
    ranges = tuple(defined)
    for point in points:
        if point.words > max_registers:
            raise ValueError(f"point {point.name} is wider than {max_registers} registers")
    requests: list[Request] = []
    current: list[Point] = []
    start = end = fc = 0
    for unit in _units(points, max_registers, ranges):
        u_start = min(p.address for p in unit)
        u_end = max(p.end for p in unit)
        mergeable = (
            current and unit[0].fc == fc
            and max(end, u_end) - start <= max_registers
            and _bridgeable(fc, end, u_start, ranges)
        )
        if mergeable:
            current.extend(unit)
            end = max(end, u_end)
            continue
        if current:
            requests.append(_request(fc, start, end, current))
        current, start, end, fc = list(unit), u_start, u_end, unit[0].fc
    if current:
        requests.append(_request(fc, start, end, current))
    return requests


def _request(fc: int, start: int, end: int, points: list[Point]) -> Request:
    return Request(fc, start, end - start,
                   tuple(sorted(points, key=lambda p: (p.address, p.name))))
