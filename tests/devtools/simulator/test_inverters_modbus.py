"""The simulated inverters read with a real pymodbus client: SunSpec and Huawei SUN2000 maps,
values equal to the PV model's output, yield counters that grow by power × time."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pymodbus.client import AsyncModbusTcpClient

from devtools.simulator import pv
from devtools.simulator.engine import SimConfig, Simulator
from devtools.simulator.inverters import InverterSample

from .conftest import SimCommunity

NOON_MS = int(datetime(2026, 6, 21, 13, 30, tzinfo=ZoneInfo("Europe/Madrid")).timestamp() * 1000)
RATED = {"inv-ss": 6000.0, "inv-hw": 4000.0}


def s16(v: int) -> int:
    return v - 0x10000 if v & 0x8000 else v


def u32(hi: int, lo: int) -> int:
    return (hi << 16) | lo


def s32(hi: int, lo: int) -> int:
    v = u32(hi, lo)
    return v - 0x1_0000_0000 if v & 0x8000_0000 else v


def model_ac_w(plant: pv.PlantModel, device_id: str, ts_ms: int) -> float:
    """The expected AC power, worked out again here: share of the plant (by rating), 97.5 %
    conversion efficiency, clipped at the rating."""
    share = RATED[device_id] / sum(RATED.values())
    return min(pv.plant_power_w(plant, ts_ms) * share * 0.975, RATED[device_id])


def matching(samples: list[InverterSample], power_w: float) -> InverterSample:
    found = [s for s in samples if abs(s.power_w - power_w) <= 1.0]
    assert found, (power_w, [s.power_w for s in samples])
    return found[-1]


async def read(port: int, address: int, count: int) -> list[int]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3)
    assert await client.connect()
    try:
        response = await client.read_holding_registers(address, count=count, device_id=1)
        assert not response.isError(), response
        return list(response.registers)
    finally:
        client.close()


async def test_sunspec_and_huawei_values_match_the_pv_model(community: SimCommunity,
                                                            tmp_path: Path) -> None:
    sim = Simulator(SimConfig(registry_path=community.path, seed=3, speed=1.0, start_ms=NOON_MS,
                              state_dir=tmp_path / "state", enable_meters=False,
                              inverter_interval_s=0.5))
    task = asyncio.create_task(sim.run())
    await asyncio.wait_for(sim.ready.wait(), 10)
    try:
        await asyncio.sleep(1.2)
        plant = sim.plants["p1"]
        # --- SunSpec: discovery chain and model 103 values
        regs = (await read(community.sunspec_port, 40000, 100)
                + await read(community.sunspec_port, 40100, 50))  # max 125 per request
        assert regs[0:2] == [0x5375, 0x6E53]                       # "SunS"
        assert regs[2:4] == [1, 66]                                 # common model, L=66
        assert bytes(b for r in regs[4:20] for b in r.to_bytes(2, "big")).rstrip(b"\0")
        assert regs[70:72] == [103, 50]                             # three-phase inverter
        assert regs[122:124] == [123, 24]                           # immediate controls
        assert regs[124 + 2] == 1 and regs[124 + 7] == 0            # Conn on, no limit
        assert regs[148:150] == [0xFFFF, 0]                         # end marker
        m = regs[72:122]
        w = s16(m[12]) * 10 ** s16(m[13])
        wh = u32(m[22], m[23]) * 10 ** s16(m[24])
        hz = m[14] * 10 ** s16(m[15])
        volts = m[8] * 10 ** s16(m[11])
        sample = matching(list(sim.samples["inv-ss"]), w)
        assert sample.power_w == pytest.approx(model_ac_w(plant, "inv-ss", sample.ts_ms), abs=1.0)
        assert w > 1000  # June, 13:30 local, Valencia
        assert m[36] == 4  # St = MPPT
        assert wh == round(sample.energy_wh)
        assert hz == pytest.approx(50.0) and 220 < volts < 240
        # --- Huawei SUN2000
        hw = await read(community.huawei_port, 32080, 2)
        power = s32(*hw)
        sample = matching(list(sim.samples["inv-hw"]), power)
        assert sample.power_w == pytest.approx(model_ac_w(plant, "inv-hw", sample.ts_ms), abs=1.0)
        status = (await read(community.huawei_port, 32089, 1))[0]
        assert status == 0x0200  # on-grid
        total = await read(community.huawei_port, 32106, 2)
        daily = await read(community.huawei_port, 32114, 2)
        assert u32(*total) * 10 == pytest.approx(sim.samples["inv-hw"][-1].energy_wh, abs=50)
        assert 0 <= u32(*daily) * 10 <= u32(*total) * 10
        meter = s32(*(await read(community.huawei_port, 37113, 2)))
        assert meter == pytest.approx(power - 300.0, abs=60)  # feed-in = PV − site load
        grid = await read(community.huawei_port, 37119, 4)
        exported, imported = s32(*grid[0:2]) * 10, s32(*grid[2:4]) * 10  # Wh
        last = sim.samples["inv-hw"][-1]
        assert exported == pytest.approx(last.meter_exported_wh, abs=10)
        assert imported == pytest.approx(last.meter_imported_wh, abs=10)
        freq = (await read(community.huawei_port, 32085, 1))[0] / 100
        assert freq == pytest.approx(50.0)
        # an address outside the map is an exception reply, as on the real device
        client = AsyncModbusTcpClient("127.0.0.1", port=community.huawei_port, timeout=3)
        await client.connect()
        assert (await client.read_holding_registers(35000, count=2, device_id=1)).isError()
        client.close()
    finally:
        sim.request_stop()
        await task


async def test_yield_counters_grow_by_power_times_time(community: SimCommunity,
                                                       tmp_path: Path) -> None:
    sim = Simulator(SimConfig(registry_path=community.path, seed=3, speed=1800.0,
                              start_ms=NOON_MS - 3 * 3_600_000, state_dir=tmp_path / "state",
                              enable_meters=False, inverter_interval_s=0.3))
    task = asyncio.create_task(sim.run())
    await asyncio.wait_for(sim.ready.wait(), 10)
    try:
        first = await read(community.sunspec_port, 40000 + 72 + 22, 2)
        await asyncio.sleep(2.0)
        last = await read(community.sunspec_port, 40000 + 72 + 22, 2)
    finally:
        sim.request_stop()
        await task
    assert u32(*last) > u32(*first)
    samples = list(sim.samples["inv-ss"])
    plant = sim.plants["p1"]
    a, b = samples[0], samples[-1]
    assert b.ts_ms - a.ts_ms > 20 * 60_000
    expected = sum(model_ac_w(plant, "inv-ss", t) for t in range(a.ts_ms, b.ts_ms, 5000)) \
        * 5 / 3600
    assert b.energy_wh - a.energy_wh == pytest.approx(expected, rel=0.02)
    # the plant's grid meter: export = production above the 300 W site load
    hw = list(sim.samples["inv-hw"])
    a, b = hw[0], hw[-1]
    exported = sum(max(model_ac_w(plant, "inv-hw", t) - 300.0, 0.0)
                   for t in range(a.ts_ms, b.ts_ms, 5000)) * 5 / 3600
    assert b.meter_exported_wh - a.meter_exported_wh == pytest.approx(exported, rel=0.02)


async def edge_write(port: int, *setting: str) -> dict:
    """``ioe modbus-edge write`` (the edge's own writer, as a technician runs it) on the sim."""
    import subprocess
    import sys

    import orjson

    from ioe.settings import ROOT

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ioe.cli", "modbus-edge", "write", "--host", "127.0.0.1",
        "--port", str(port), "--unit", "1", "--map", "sunspec", *setting, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return orjson.loads(out.decode().strip().splitlines()[-1])


async def test_the_sunspec_inverter_obeys_a_written_limit_and_reverts_it(
        community: SimCommunity, tmp_path: Path) -> None:
    """Model 123 written through the edge's writer: read back, output capped at 20 % of the
    6 kW rating (1,200 W, worked out by hand) while the June-noon sun gives more, St =
    throttled; after the revert timer the inverter drops the limit by itself."""
    sim = Simulator(SimConfig(registry_path=community.path, seed=3, speed=1.0, start_ms=NOON_MS,
                              state_dir=tmp_path / "state", enable_meters=False,
                              inverter_interval_s=0.2))
    task = asyncio.create_task(sim.run())
    await asyncio.wait_for(sim.ready.wait(), 10)
    try:
        plant = sim.plants["p1"]
        free = model_ac_w(plant, "inv-ss", NOON_MS)
        assert free > 1500  # the limit below must bite
        result = await edge_write(community.sunspec_port, "--set", "power_limit_pct=20",
                                  "--revert-s", "4")
        assert result["ok"] is True and result["readback"] == 20, result
        await asyncio.sleep(0.6)
        m = (await read(community.sunspec_port, 40072, 50))
        assert s16(m[12]) * 10 ** s16(m[13]) == pytest.approx(1200.0, abs=1.0)
        assert m[36] == 5  # St = throttled
        # a register outside model 123's RW points is refused, as on a real device
        client = AsyncModbusTcpClient("127.0.0.1", port=community.sunspec_port, timeout=3)
        await client.connect()
        assert (await client.write_register(40072 + 12, 1, device_id=1)).isError()
        client.close()
        await asyncio.sleep(4.5)  # the revert timer (4 s) elapses: the inverter's safe default
        m = (await read(community.sunspec_port, 40072, 50))
        controls = await read(community.sunspec_port, 40124, 24)
        assert controls[7] == 0  # WMaxLim_Ena dropped
        w = s16(m[12]) * 10 ** s16(m[13])
        assert w > 1300 and m[36] == 4, (w, m[36])
    finally:
        sim.request_stop()
        await task
