"""Simulated PV inverters: real Modbus TCP servers (pymodbus) with real register maps.

Two maps, as the registry's ``protocol.map`` names them:

* ``sunspec`` — SunSpec: ``SunS`` at holding register 40000 (protocol address, 0-based), common
  model 1 (L=66: Mn, Md, Opt, Vr, SN, DA), inverter model 103 (three phase, L=50: currents,
  voltages, W, Hz, VA, VAr, PF, WH as acc32, DC values, temperatures, St, events, each with its
  scale factor), then the end marker ``0xFFFF`` with length 0.
* ``huawei-sun2000`` — Huawei SUN2000 holding registers: 30000 model string, 32064 input power,
  32069… phase voltages, 32080 active power (I32, W), 32085 grid frequency (U16, 0.01 Hz),
  32087 internal temperature, 32089 device status (0x0200 on-grid, 0xA000 standby no irradiation,
  0x0300 shutdown on fault), 32090 fault code, 32106 total yield (U32, 0.01 kWh), 32114 daily
  yield (U32, 0.01 kWh), 37100 meter status, 37113 grid meter active power (I32, W, > 0 = feed-in),
  37119 / 37121 grid meter exported / imported energy (I32, 0.01 kWh).

The register images are pure functions of an :class:`InverterSample`; the server copies the
latest image into pymodbus' memory whenever a request arrives (a ``SimDevice`` action), so a
reader always sees one consistent image.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

log = logging.getLogger(__name__)

SUNSPEC_BASE = 40000
NOT_IMPLEMENTED_I16 = 0x8000
NOT_IMPLEMENTED_U16 = 0xFFFF

#: SunSpec model 103 operating states (St)
SUNSPEC_ST = {"off": 1, "sleeping": 2, "starting": 3, "mppt": 4, "throttled": 5,
              "shutting_down": 6, "fault": 7, "standby": 8}
#: Huawei SUN2000 device status (32089)
HUAWEI_STATUS = {"standby": 0xA000, "mppt": 0x0200, "fault": 0x0300, "sleeping": 0xA000}


# -- model 123: the one thing a client may write ------------------------------------------------
MODEL123_LEN = 24
#: offsets in the body of model 123 (after ID and L), as the SunSpec model defines them
CONN, WMAXLIMPCT, WMAXLIMPCT_RVRT, WMAXLIM_ENA, WMAXLIMPCT_SF = 2, 3, 5, 7, 21
#: body offsets a client may write: Conn_WinTms … WMaxLim_Ena (the RW points)
MODEL123_WRITABLE = range(0, 8)
LIMIT_SF = -1  # WMaxLimPct in 0.1 %


def _default_controls() -> list[int]:
    words = [0] * MODEL123_LEN
    words[CONN] = 1                                   # connected
    words[WMAXLIMPCT] = round(100 / 10 ** LIMIT_SF)   # 100 %
    words[WMAXLIMPCT_SF] = LIMIT_SF & 0xFFFF
    return words


@dataclass
class PowerLimit:
    """Model 123 of a simulated inverter: what a client wrote, and the inverter's own revert
    timer (wall time: the edge's link is lost in real seconds, whatever the simulated speed).

    As the model says, the output follows ``WMaxLimPct`` only while ``WMaxLim_Ena`` is 1, and
    the inverter drops the limit ``WMaxLimPct_RvrtTms`` seconds after it was written — the safe
    default the control path relies on."""

    words: list[int] = field(default_factory=_default_controls)
    revert_at: float | None = None
    clock: Callable[[], float] = time.monotonic

    def write(self, offset: int, values: list[int]) -> bool:
        """Words written at a body offset; False (nothing written) outside the RW points."""
        touched = range(offset, offset + len(values))
        if not values or any(o not in MODEL123_WRITABLE for o in touched):
            return False
        self.words[offset:offset + len(values)] = [v & 0xFFFF for v in values]
        if WMAXLIMPCT in touched or WMAXLIM_ENA in touched:
            revert_s = self.words[WMAXLIMPCT_RVRT]
            self.revert_at = self.clock() + revert_s if revert_s else None
        return True

    def expire(self) -> None:
        if self.revert_at is not None and self.clock() >= self.revert_at:
            self.words[WMAXLIM_ENA] = 0
            self.words[WMAXLIMPCT] = round(100 / 10 ** LIMIT_SF)
            self.revert_at = None
            log.info("power limit reverted by the inverter (WMaxLimPct_RvrtTms elapsed)")

    @property
    def limit_pct(self) -> float | None:
        """The limit in force, % of the rated power (None: no limit)."""
        self.expire()
        if self.words[WMAXLIM_ENA] != 1:
            return None
        return self.words[WMAXLIMPCT] * 10.0 ** LIMIT_SF

    def cap(self, power_w: float, rated_w: float) -> float:
        """The output the inverter allows itself: 0 when disconnected, else under the limit."""
        if self.words[CONN] != 1:
            return 0.0
        limit = self.limit_pct
        return power_w if limit is None else min(power_w, rated_w * limit / 100.0)


@dataclass(frozen=True)
class InverterSample:
    """What an inverter shows at one instant (system units)."""

    ts_ms: int
    power_w: float
    energy_wh: float
    daily_energy_wh: float
    state: str  # key of SUNSPEC_ST
    voltage_v: float = 230.0
    frequency_hz: float = 50.0
    temperature_c: float = 30.0
    rated_power_w: float = 15000.0
    site_load_w: float = 300.0
    #: the plant's grid meter (Huawei DTSU666 behind the inverter): exported / imported Wh
    meter_exported_wh: float = 0.0
    meter_imported_wh: float = 0.0
    fault_code: int = 0
    unit: int = 1
    serial: str = "SIM0000001"
    #: model 123 body as last written (SunSpec only)
    controls: tuple[int, ...] = tuple(_default_controls())


def _u16(v: float) -> int:
    return int(round(v)) & 0xFFFF


def _i16(v: float) -> int:
    return int(round(v)) & 0xFFFF


def _u32(v: float) -> list[int]:
    n = int(round(v)) & 0xFFFFFFFF
    return [n >> 16, n & 0xFFFF]


def _i32(v: float) -> list[int]:
    return _u32(int(round(v)) & 0xFFFFFFFF)


def _string(text: str, registers: int) -> list[int]:
    raw = text.encode("ascii")[: registers * 2].ljust(registers * 2, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


def sunspec_image(s: InverterSample) -> list[int]:
    """The SunSpec registers from 40000 to the end marker (150 registers)."""
    common = ([1, 66] + _string("IoE Comunidades", 16) + _string("SIM-SUNSPEC-15K", 16)
              + _string("", 8) + _string("1.0.0", 8) + _string(s.serial, 16)
              + [s.unit, NOT_IMPLEMENTED_I16])
    apparent = s.power_w  # unity power factor
    current = apparent / (3.0 * s.voltage_v) if s.voltage_v else 0.0
    dc_v = 600.0 if s.power_w > 0 else 0.0
    dc_w = s.power_w / 0.975 if s.power_w > 0 else 0.0
    line_v = s.voltage_v * math.sqrt(3.0)
    model103 = [
        _u16(current * 3 * 100), _u16(current * 100), _u16(current * 100), _u16(current * 100),
        _i16(-2),                                                       # A_SF
        _u16(line_v * 10), _u16(line_v * 10), _u16(line_v * 10),        # PPVph..
        _u16(s.voltage_v * 10), _u16(s.voltage_v * 10), _u16(s.voltage_v * 10),  # PhVph..
        _i16(-1),                                                       # V_SF
        _i16(s.power_w), _i16(0),                                       # W, W_SF
        _u16(s.frequency_hz * 100), _i16(-2),                           # Hz, Hz_SF
        _i16(apparent), _i16(0),                                        # VA, VA_SF
        _i16(0), _i16(0),                                               # VAr, VAr_SF
        _i16(1000 if s.power_w > 0 else 0), _i16(-1),                   # PF (%), PF_SF
        *_u32(s.energy_wh), _i16(0),                                    # WH acc32, WH_SF
        _u16(dc_w / dc_v * 100 if dc_v else 0), _i16(-2),               # DCA, DCA_SF
        _u16(dc_v * 10), _i16(-1),                                      # DCV, DCV_SF
        _i16(dc_w), _i16(0),                                            # DCW, DCW_SF
        _i16(s.temperature_c * 10), _i16(s.temperature_c * 10),         # TmpCab, TmpSnk
        NOT_IMPLEMENTED_I16, NOT_IMPLEMENTED_I16, _i16(-1),             # TmpTrns, TmpOt, Tmp_SF
        SUNSPEC_ST[s.state], NOT_IMPLEMENTED_U16,                       # St, StVnd
        *_u32(1 if s.state == "fault" else 0),                          # Evt1 bit 0 GROUND_FAULT
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                                   # Evt2, EvtVnd1..4
    ]
    assert len(common) == 68 and len(model103) == 50 and len(s.controls) == MODEL123_LEN
    return [0x5375, 0x6E53, *common, 103, 50, *model103, 123, MODEL123_LEN, *s.controls,
            0xFFFF, 0]


#: SunSpec register addresses of the points the tests (and the edge) read
SUNSPEC_W = SUNSPEC_BASE + 72 + 12
SUNSPEC_WH = SUNSPEC_BASE + 72 + 22
SUNSPEC_ST_ADDR = SUNSPEC_BASE + 72 + 36
#: first body register of model 123 (after its ID and L)
SUNSPEC_CONTROLS = SUNSPEC_BASE + 72 + 50 + 2


def huawei_image(s: InverterSample) -> dict[int, list[int]]:
    """Blocks of Huawei SUN2000 registers: {start address: registers}."""
    status = HUAWEI_STATUS[s.state] if s.state in HUAWEI_STATUS else 0xA000
    current = s.power_w / (3.0 * s.voltage_v) if s.voltage_v else 0.0
    meter_w = s.power_w - s.site_load_w  # > 0: feed-in to the grid
    block32 = [0] * 120  # 32000..32119
    def put(addr: int, regs: list[int]) -> None:
        block32[addr - 32000: addr - 32000 + len(regs)] = regs
    put(32064, _i32(s.power_w / 0.975 if s.power_w > 0 else 0.0))    # input power, W (kW/1000)
    line_v = s.voltage_v * math.sqrt(3.0) * 10
    put(32066, [_u16(line_v)] * 3)
    put(32069, [_u16(s.voltage_v * 10)] * 3)
    put(32072, _i32(current * 1000) * 3)
    put(32078, _i32(s.power_w))                                      # peak today (approx.)
    put(32080, _i32(s.power_w))
    put(32082, _i32(0))
    put(32084, [_i16(1000 if s.power_w > 0 else 0)])
    put(32085, [_u16(s.frequency_hz * 100)])
    put(32086, [_u16(9750 if s.power_w > 0 else 0)])
    put(32087, [_i16(s.temperature_c * 10)])
    put(32088, [_u16(3000)])
    put(32089, [status])
    put(32090, [s.fault_code])
    put(32091, _u32(s.ts_ms // 1000))
    put(32093, _u32(0xFFFFFFFF))
    put(32106, _u32(s.energy_wh / 10.0))                             # 0.01 kWh
    put(32114, _u32(s.daily_energy_wh / 10.0))
    block37 = [0] * 40  # 37100..37139
    block37[0] = 1                                                   # meter status: normal
    block37[37101 - 37100: 37107 - 37100] = (_i32(s.voltage_v * 10) * 3)
    block37[37113 - 37100: 37115 - 37100] = _i32(meter_w)
    block37[37118 - 37100] = _u16(s.frequency_hz * 100)
    block37[37119 - 37100: 37121 - 37100] = _i32(s.meter_exported_wh / 10.0)  # 0.01 kWh
    block37[37121 - 37100: 37123 - 37100] = _i32(s.meter_imported_wh / 10.0)
    block30 = (_string("SUN2000-15KTL-M2", 15) + _string(s.serial, 10) + [0] * 48
               + _u32(s.rated_power_w))                              # 30073 rated power (W)
    return {30000: block30, 32000: block32, 37100: block37}


MAPS: dict[str, Callable[[InverterSample], dict[int, list[int]]]] = {
    "sunspec": lambda s: {SUNSPEC_BASE: sunspec_image(s)},
    "huawei-sun2000": huawei_image,
}


class InverterServer:
    """One Modbus TCP server serving the latest register image of one inverter.

    A SunSpec inverter given a :class:`PowerLimit` also takes writes to model 123's RW points
    (anything else written is refused with ILLEGAL ADDRESS, as a real device does); what is
    written shows in the next read at once, and in the output from the next sample on."""

    def __init__(self, device_id: str, map_name: str, host: str, port: int, unit: int,
                 first: InverterSample, limit: PowerLimit | None = None) -> None:
        if map_name not in MAPS:
            raise ValueError(f"{device_id}: unknown Modbus map {map_name!r} "
                             f"(known: {', '.join(MAPS)})")
        self.device_id, self.map_name = device_id, map_name
        self.host, self.port, self.unit = host, port, unit
        self.limit = limit if map_name == "sunspec" else None
        self._image: dict[int, int] = {}
        self.update(first)
        self._server: ModbusTcpServer | None = None

    def update(self, sample: InverterSample) -> None:
        image: dict[int, int] = {}
        for start, regs in MAPS[self.map_name](sample).items():
            for i, value in enumerate(regs):
                image[start + i] = value
        self._image = image

    def _device(self) -> SimDevice:
        blocks = MAPS[self.map_name](InverterSample(0, 0.0, 0.0, 0.0, "sleeping"))
        simdata = [SimData(start, values=[0] * len(regs), datatype=DataType.REGISTERS)
                   for start, regs in blocks.items()]
        return SimDevice(self.unit, simdata=simdata, action=self._action)

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      current_registers: list[int], set_values: Any) -> ExcCodes | None:
        if set_values is not None and function_code in (6, 16):
            words = [int(v) for v in (set_values if isinstance(set_values, list)
                                      else [set_values])]
            if self.limit is None or not self.limit.write(address - SUNSPEC_CONTROLS, words):
                log.warning("%s: write of %d register(s) at %d refused (not a writable point)",
                            self.device_id, len(words), address)
                return ExcCodes.ILLEGAL_ADDRESS
            log.info("%s: model 123 written at %d: %s (limit now %s %%)", self.device_id,
                     address, words, self.limit.limit_pct)
            self._controls_to_image()
            return None
        if self.limit is not None:
            self.limit.expire()
            self._controls_to_image()
        image = self._image
        for addr in range(address, address + count):
            if addr in image:
                current_registers[addr - start_address] = image[addr]
        return None

    def _controls_to_image(self) -> None:
        assert self.limit is not None
        for offset, word in enumerate(self.limit.words):
            self._image[SUNSPEC_CONTROLS + offset] = word

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        server = ModbusTcpServer(self._device(), address=(self.host, self.port))
        await server.serve_forever(background=True)
        self._server = server
        log.info("%s: %s Modbus server on %s:%d unit %d", self.device_id, self.map_name,
                 self.host, self.port, self.unit)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
            await asyncio.sleep(0)


# -- the inverter as a simulated device ---------------------------------------------------------
#: AC/DC conversion efficiency applied to the plant's DC output
INVERTER_EFFICIENCY = 0.975
#: integration step of the yield counter, simulated seconds
COUNTER_STEP_S = 15.0


def ac_power_w(plant_w: float, share: float, rated_w: float) -> float:
    """AC output of one inverter carrying ``share`` of the plant: efficiency, then clipping."""
    return round(min(plant_w * share * INVERTER_EFFICIENCY, rated_w), 1)


@dataclass
class SimInverter:
    """Yield counters and status of one inverter, fed by its plant's PV model."""

    device_id: str
    map_name: str
    unit: int
    port: int
    rated_w: float
    share: float
    power_fn: Callable[[int], float]  # plant DC output at ts_ms, W
    timezone: str
    energy_wh: float
    daily_wh: float = 0.0
    day: str = ""
    last_ms: int | None = None
    serial: str = "SIM0000001"
    site_load_w: float = 300.0
    meter_exported_wh: float = 0.0
    meter_imported_wh: float = 0.0
    #: model 123 (the SunSpec map): the limit a client wrote caps the output
    limit: PowerLimit = field(default_factory=PowerLimit)

    def state(self) -> dict[str, object]:
        return {"kind": "inverter", "energy_wh": round(self.energy_wh, 3),
                "daily_wh": round(self.daily_wh, 3), "day": self.day, "sim_ms": self.last_ms,
                "meter_exported_wh": round(self.meter_exported_wh, 3),
                "meter_imported_wh": round(self.meter_imported_wh, 3)}

    def power_at(self, ts_ms: int) -> float:
        power = ac_power_w(self.power_fn(ts_ms), self.share, self.rated_w)
        return round(self.limit.cap(power, self.rated_w), 1) if self.map_name == "sunspec" \
            else power

    def _integrate(self, start_ms: int, end_ms: int, tripped: bool) -> tuple[float, float, float]:
        """(produced, exported, imported) Wh between two instants, by the midpoint rule."""
        span_s = (end_ms - start_ms) / 1000.0
        steps = max(1, math.ceil(span_s / COUNTER_STEP_S))
        dt = span_s / steps
        produced = exported = imported = 0.0
        for i in range(steps):
            power = 0.0 if tripped else self.power_at(start_ms + int((i + 0.5) * dt * 1000.0))
            produced += power * dt
            exported += max(power - self.site_load_w, 0.0) * dt
            imported += max(self.site_load_w - power, 0.0) * dt
        return produced / 3600.0, exported / 3600.0, imported / 3600.0

    def step(self, now_ms: int, tripped: bool) -> InverterSample:
        if self.last_ms is not None and now_ms > self.last_ms:
            produced, exported, imported = self._integrate(self.last_ms, now_ms, tripped)
            self.energy_wh += produced
            self.daily_wh += produced
            self.meter_exported_wh += exported
            self.meter_imported_wh += imported
        if self.last_ms is None or now_ms > self.last_ms:
            self.last_ms = now_ms
        today = datetime.fromtimestamp(now_ms / 1000.0, ZoneInfo(self.timezone)).date()
        if self.day != today.isoformat():
            self.day, self.daily_wh = today.isoformat(), 0.0 if self.day else self.daily_wh
        power = 0.0 if tripped else self.power_at(now_ms)
        throttled = (self.map_name == "sunspec" and self.limit.limit_pct is not None
                     and not tripped and power < ac_power_w(self.power_fn(now_ms), self.share,
                                                            self.rated_w))
        state = "fault" if tripped else ("throttled" if throttled
                                         else "mppt" if power > 0 else "sleeping")
        return InverterSample(
            ts_ms=now_ms, power_w=power, energy_wh=self.energy_wh,
            daily_energy_wh=self.daily_wh, state=state,
            voltage_v=230.0 + 1.5 * power / max(self.rated_w, 1.0),
            frequency_hz=50.0, temperature_c=25.0 + 25.0 * power / max(self.rated_w, 1.0),
            rated_power_w=self.rated_w, site_load_w=self.site_load_w,
            meter_exported_wh=self.meter_exported_wh, meter_imported_wh=self.meter_imported_wh,
            fault_code=2001 if tripped else 0, unit=self.unit, serial=self.serial,
            controls=tuple(self.limit.words))
