"""Modbus RTU: two meters on one line (shared link, serialised), RTU frames over a socket URL."""

from __future__ import annotations

import pytest

from connectors.modbus_edge.device import Poller, device_from_dict, make_links

from .images import block, f32, put


def sdm(power: float) -> dict[int, int]:
    image: dict[int, int] = {}
    block(image, 0, 0x12)
    for address in (0x34, 0x3E, 0x46, 0x48, 0x4A):
        put(image, address, f32(0.0))
    put(image, 0x34, f32(power))
    return image


def test_two_rtu_meters_on_one_line(modbus_server):
    line = modbus_server({2: sdm(120.5), 3: sdm(-75.25)}, framer="rtu")
    url = f"socket://127.0.0.1:{line.port}"
    devices = [device_from_dict({"id": f"sdm-{u}", "map": "sdm630", "transport": "rtu",
                                 "serial_port": url, "unit": u, "baudrate": 9600,
                                 "timeout_s": 2}) for u in (2, 3)]
    links = make_links(devices)
    assert len(links) == 1   # one serial line, one connection, requests serialised
    pollers = [Poller(d, links[d.link_key]) for d in devices]
    try:
        powers = {p.device.id: p.poll().readings[0].power_w for p in pollers}
    finally:
        for link in links.values():
            link.close()
    assert powers == {"sdm-2": pytest.approx(120.5), "sdm-3": pytest.approx(-75.25)}
