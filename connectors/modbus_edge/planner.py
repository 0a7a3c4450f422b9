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


def plan(points: Sequence[Point], *, max_registers: int = MAX_REGISTERS,
         defined: Iterable[tuple[int, int, int]] = ()) -> list[Request]:
    """Group points into contiguous requests of at most ``max_registers`` registers."""
    if not 1 <= max_registers <= MAX_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_REGISTERS}")
    ranges = tuple(defined)
    requests: list[Request] = []
    ordered = sorted(points, key=lambda p: (p.fc, p.address, -p.words))
    current: list[Point] = []
    start = end = fc = 0
    for point in ordered:
        if point.words > max_registers:
            raise ValueError(f"point {point.name} is wider than {max_registers} registers")
        mergeable = (
            current and point.fc == fc
            and max(end, point.end) - start <= max_registers
            and _bridgeable(fc, end, point.address, ranges)
        )
        if mergeable:
            current.append(point)
            end = max(end, point.end)
            continue
        if current:
            requests.append(Request(fc, start, end - start, tuple(current)))
        current, start, end, fc = [point], point.address, point.end, point.fc
    if current:
        requests.append(Request(fc, start, end - start, tuple(current)))
    return requests
