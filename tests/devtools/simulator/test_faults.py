"""Fault injection: offline, frozen, counter reset and inverter fault, seen from outside."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pymodbus.client import AsyncModbusTcpClient

from devtools.simulator.engine import SimConfig, Simulator
from devtools.simulator.faults import Fault, FaultError, parse_fault

from .conftest import Recorder, SimCommunity

MADRID = ZoneInfo("Europe/Madrid")
START_MS = int(datetime(2026, 6, 21, 12, 0, tzinfo=MADRID).timestamp() * 1000)


def test_parse_fault_specs() -> None:
    assert parse_fault("offline:tasmota_913B5D") == Fault("offline", "tasmota_913B5D", 0.0, None)
    assert parse_fault("frozen:emontx26:1@30") == Fault("frozen", "emontx26:1", 30.0, None)
    assert parse_fault("inverter-fault:inv-huawei-1@5-20.5") == Fault(
        "inverter-fault", "inv-huawei-1", 5.0, 20.5)
    fault = parse_fault("counter-reset:shellyem-563B54590D35:0@10")
    assert fault.device_id == "shellyem-563B54590D35:0" and fault.start_min == 10
    assert fault.window_ms(1_000_000) == (1_600_000, None)
    for bad in ("explode:x", "offline", "offline:x@20-10", "offline:x@soon"):
        with pytest.raises(FaultError):
            parse_fault(bad)


def test_a_fault_on_an_unknown_device_is_refused(community: SimCommunity, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nope"):
        Simulator(SimConfig(registry_path=community.path, state_dir=tmp_path,
                            faults=[parse_fault("offline:nope")]))


async def modbus_read(port: int, address: int, count: int) -> list[int] | None:
    """Registers, or None when nothing answers."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        if not await client.connect():
            return None
        response = await client.read_holding_registers(address, count=count, device_id=1)
        return None if response.isError() else list(response.registers)
    finally:
        client.close()


async def test_faults_as_the_outside_world_sees_them(community: SimCommunity,
                                                     recorder: Recorder, tmp_path: Path) -> None:
    faults = [
        parse_fault(f"offline:{community.gen1}:0@0-10"),
        parse_fault(f"frozen:{community.tasmota}@8"),
        parse_fault(f"counter-reset:{community.emon}:1@10"),
        parse_fault("inverter-fault:inv-hw@0"),
        parse_fault("offline:inv-ss@0"),
    ]
    sim = Simulator(SimConfig(registry_path=community.path, seed=2, speed=600.0,
                              start_ms=START_MS, state_dir=tmp_path / "state", faults=faults,
                              min_interval_s=0.2, inverter_interval_s=0.2))
    task = asyncio.create_task(sim.run())
    await asyncio.wait_for(sim.ready.wait(), 10)
    try:
        await asyncio.sleep(0.5)
        sunspec = await modbus_read(community.sunspec_port, 40000, 2)
        huawei_power = await modbus_read(community.huawei_port, 32080, 2)
        huawei_status = await modbus_read(community.huawei_port, 32089, 2)
        await asyncio.sleep(2.5)
    finally:
        sim.request_stop()
        await task
    await asyncio.sleep(0.3)

    # inverters: the offline one does not answer, the tripped one says so and produces nothing
    assert sunspec is None
    assert huawei_power == [0, 0]
    assert huawei_status is not None and huawei_status[0] == 0x0300 and huawei_status[1] != 0

    # Shelly Gen1 offline for the first 10 simulated minutes: "false", silence, "true", values
    gen1 = f"shellies/{community.gen1}"
    sequence = [(t, p) for t, p, _, _ in recorder.messages
                if t.startswith(gen1) and (t.endswith("/online") or t.endswith("/power"))]
    assert sequence[0] == (f"{gen1}/online", b"false")
    back = sequence.index((f"{gen1}/online", b"true"))
    assert back > 0 and all(t.endswith("/online") for t, _ in sequence[:back])
    assert any(t.endswith("/power") for t, _ in sequence[back:])

    # Tasmota frozen from minute 8: the time goes on, the values do not
    sensors = [json.loads(p) for p in recorder.of(f"tele/{community.tasmota}/SENSOR")]
    frozen_from = START_MS + 8 * 60_000
    def ts(s: dict) -> int:  # noqa: E306
        return int(datetime.fromisoformat(s["Time"]).replace(tzinfo=MADRID).timestamp() * 1000)
    before = [s for s in sensors if ts(s) < frozen_from]
    after = [s for s in sensors if ts(s) >= frozen_from + 60_000]
    assert len(before) >= 2 and len(after) >= 3
    assert before[-1]["ENERGY"]["Total"] > before[0]["ENERGY"]["Total"]
    assert len({ts(s) for s in after}) == len(after)
    assert len({(s["ENERGY"]["Total"], s["ENERGY"]["Power"]) for s in after}) == 1

    # emonhub counter reset at minute 10: E1 falls to about zero, then counts up again
    energies = [float(p) for p in recorder.of(f"emon/{community.emon}/E1")]
    drop = next(i for i in range(1, len(energies)) if energies[i] < energies[i - 1])
    assert energies[drop - 1] > 100_000 and energies[drop] < 1_000
    assert energies[drop:] == sorted(energies[drop:])

    # Shelly Gen2 had no fault and kept publishing throughout
    assert len(recorder.of(f"{community.gen2}/events/rpc")) >= 10

    # the ground truth of the run, for anomaly evaluation
    truth = json.loads((tmp_path / "state" / "faults.json").read_text())
    assert {(f["kind"], f["device_id"], f["start_ms"]) for f in truth} >= {
        ("frozen", community.tasmota, START_MS + 8 * 60_000)}
