"""Modbus edge: points per second polled from a simulated plant of 20 devices.

The plant is 20 real pymodbus TCP servers on loopback (5 SunSpec inverters with a meter model,
5 Huawei SUN2000, 5 SMA, 5 SDM630). The figure is the agent's full poll path — planned
requests, decoding, scale factors, readings, validation, registry routing and the durable SQLite
queue — with one thread per device as in production. The baseline, measured in the same run
against the same servers, is bare pymodbus: the same requests from the same number of threads,
no decoding and no queue. The ratio is the price of everything the edge adds on top of the wire.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pymodbus.client import ModbusTcpClient

from connectors.modbus_edge.agent import Agent, config_from_dict
from connectors.modbus_edge.maps import load_map
from connectors.modbus_edge.planner import plan
from connectors.modbus_edge.simserver import SimServer
from ioe.registry import parse_registry

KINDS = ("sunspec", "huawei-sun2000", "sma", "sdm630")
DEVICES_PER_KIND = 5


def _sunspec_image() -> dict[int, int]:
    image: dict[int, int] = {40000: 0x5375, 40001: 0x6E53}
    address = 40002
    for model_id, length in ((1, 66), (103, 50), (203, 105)):
        image[address], image[address + 1] = model_id, length
        for a in range(address + 2, address + 2 + length):
            image[a] = 0
        address += 2 + length
    image[address], image[address + 1] = 0xFFFF, 0
    inverter = 40002 + 68
    image[inverter + 14], image[inverter + 15] = 4520, 0  # W
    image[inverter + 24], image[inverter + 25], image[inverter + 26] = 0, 12345, 0  # WH
    return image


def _image(kind: str) -> dict[int, int]:
    """Every register the map's requests touch, with non-zero words so values decode."""
    if kind == "sunspec":
        return _sunspec_image()
    register_map = load_map(kind)
    image: dict[int, int] = {}
    for request in plan(register_map.points, defined=register_map.defined):
        for a in range(request.address, request.end):
            image[a] = 0x4000 + (a % 7)
    return image


def _registry_yaml(ids: list[str]) -> str:
    devices = "".join(f"      - {{id: '{d}', role: generation, plant: p1}}\n"
                      for d in ids for d in (d, f"{d}:meter"))
    return ("communities:\n  - id: bench\n    members:\n"
            "      - {id: m01, cups: ES0021380404050463BV, contracted_power_kw: 3.45}\n"
            "    plants:\n      - {id: p1, peak_power_kw: 100, location: {latitude: 39.5,"
            " longitude: -0.4}}\n    devices:\n" + devices)


def _run_threads(workers: list[Any], seconds: float) -> tuple[int, float]:
    """Run each worker() in its own thread until the deadline; returns (points, elapsed)."""
    totals = [0] * len(workers)
    stop = threading.Event()

    def loop(index: int) -> None:
        while not stop.is_set():
            totals[index] += workers[index]()

    threads = [threading.Thread(target=loop, args=(i,), daemon=True)
               for i in range(len(workers))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(30)
    return sum(totals), time.perf_counter() - start


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 3.0 if quick else 8.0
    servers: list[SimServer] = []
    work = Path(tempfile.mkdtemp(prefix="bench-modbus-"))
    try:
        devices = []
        for kind in KINDS:
            unit = 3 if kind == "sma" else 1
            for n in range(DEVICES_PER_KIND):
                server = SimServer({unit: _image(kind)}).start()
                servers.append(server)
                devices.append({"id": f"{kind}-{n}", "map": kind, "host": "127.0.0.1",
                                "port": server.port, "unit": unit, "poll_interval_s": 0,
                                "delay_after_connect_s": 0, "timeout_s": 5})
        config = config_from_dict({"edge": {"queue_path": str(work / "q.sqlite"),
                                            "sqlite_synchronous": "NORMAL"},
                                   "devices": devices})
        registry = parse_registry(__import__("yaml").safe_load(
            _registry_yaml([d["id"] for d in devices])))
        agent = Agent(config, registry=registry)
        for poller in agent.pollers:  # warm-up: connect, SunSpec discovery
            if not agent.poll_device(poller):
                raise RuntimeError(f"{poller.device.id} does not answer")
        points_per_poll = {p.device.id: len(p.register_map.points)  # type: ignore[union-attr]
                           for p in agent.pollers}

        def edge_worker(poller: Any) -> Any:
            size = points_per_poll[poller.device.id]
            return lambda: size if agent.poll_device(poller) else 0

        edge_points, edge_s = _run_threads([edge_worker(p) for p in agent.pollers], seconds)
        agent.stop(drain_s=0)

        clients: list[ModbusTcpClient] = []

        def raw_worker(poller: Any) -> Any:
            device = poller.device
            client = ModbusTcpClient("127.0.0.1", port=device.port, timeout=5)
            client.connect()
            clients.append(client)
            requests = [(r.fc, r.address, r.count, len(r.points)) for r in poller.requests]

            def once() -> int:
                points = 0
                for fc, address, count, n in requests:
                    call = (client.read_holding_registers if fc == 3
                            else client.read_input_registers)
                    response = call(address, count=count, device_id=device.unit)
                    if response.isError():
                        raise RuntimeError(f"baseline read failed: {response}")
                    points += n
                return points
            return once

        raw_points, raw_s = _run_threads([raw_worker(p) for p in agent.pollers], seconds)
        for client in clients:
            client.close()
    finally:
        for server in servers:
            server.stop()
    edge_rate, raw_rate = edge_points / edge_s, raw_points / raw_s
    print(f"   modbus edge: {edge_rate:,.0f} points/s, raw pymodbus: {raw_rate:,.0f} points/s, "
          f"ratio {edge_rate / raw_rate:.2f}", flush=True)
    return {
        "devices": len(devices),
        "seconds_per_side": seconds,
        "figures": [{"name": "points/s polled, 20 devices (edge vs raw pymodbus reads)",
                     "value": edge_rate, "baseline": raw_rate, "unit": "points/s",
                     "ratio": edge_rate / raw_rate}],
    }


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    for noisy in ("pymodbus", "connectors"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    print(run(quick="--quick" in sys.argv))
