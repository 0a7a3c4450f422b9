"""Request planning: contiguous, bounded, never across an undefined gap."""

from __future__ import annotations

import pytest

from connectors.modbus_edge.maps import Point
from connectors.modbus_edge.planner import plan


def p(name: str, address: int, words: int = 1, fc: int = 3) -> Point:
    return Point(name=name, address=address, type="uint16" if words == 1 else "uint32",
                 words=words, fc=fc)


def spans(requests):
    return [(r.fc, r.address, r.count) for r in requests]


def test_adjacent_points_merge_and_gaps_split():
    points = [p("a", 10), p("b", 11, 2), p("c", 13), p("d", 20)]
    assert spans(plan(points)) == [(3, 10, 4), (3, 20, 1)]


def test_defined_range_bridges_a_gap_but_not_beyond():
    points = [p("a", 10), p("b", 15), p("c", 30)]
    assert spans(plan(points, defined=[(3, 10, 20)])) == [(3, 10, 6), (3, 30, 1)]
    # a defined range of the other function code does not count
    assert spans(plan(points, defined=[(4, 10, 20)])) == [(3, 10, 1), (3, 15, 1), (3, 30, 1)]


def test_limit_125_and_per_device_lower_limit():
    points = [p(f"r{i}", 1000 + i) for i in range(300)]
    requests = plan(points)
    assert spans(requests) == [(3, 1000, 125), (3, 1125, 125), (3, 1250, 50)]
    small = plan(points, max_registers=40)
    assert all(r.count <= 40 for r in small)
    assert sum(r.count for r in small) == 300
    # a 2-word point is never split across requests
    wide = plan([p("x", 0), p("y", 1, 2)], max_registers=2)
    assert spans(wide) == [(3, 0, 1), (3, 1, 2)]


def test_function_codes_never_mix():
    assert spans(plan([p("a", 5, fc=4), p("b", 6, fc=3)])) == [(3, 6, 1), (4, 5, 1)]


def test_limits_are_checked():
    with pytest.raises(ValueError):
        plan([p("a", 0)], max_registers=126)


def test_scale_factors_share_the_request_of_their_values_even_with_a_low_limit():
    from connectors.modbus_edge.sunspec import Model, build_map

    register_map = build_map([Model(1, 40002, 66), Model(103, 40070, 50),
                              Model(203, 40122, 105)])
    for limit in (125, 40, 20, 17):
        requests = plan(register_map.points, max_registers=limit, defined=register_map.defined)
        assert all(r.count <= limit for r in requests)
        where = {p.name: i for i, r in enumerate(requests) for p in r.points}
        assert set(where) == {p.name for p in register_map.points}
        for point in register_map.points:
            if point.scale_factor:
                assert where[point.name] == where[point.scale_factor], (limit, point.name)
    # the meter energy group (38..54, 17 registers) does not fit 16: read apart, not lost
    requests = plan(register_map.points, max_registers=16, defined=register_map.defined)
    assert {p.name for r in requests for p in r.points} == {p.name for p in register_map.points}


def test_scale_factor_outside_a_defined_range_falls_back_to_separate_reads():
    value = Point(name="w", address=10, type="int16", scale_factor="sf")
    sf = Point(name="sf", address=30, type="sunssf")
    assert spans(plan([value, sf])) == [(3, 10, 1), (3, 30, 1)]
    assert spans(plan([value, sf], defined=[(3, 10, 31)])) == [(3, 10, 21)]
