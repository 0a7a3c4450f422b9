"""Each shipped map against a real pymodbus server holding a hand-built register image."""

from __future__ import annotations

import math

import pytest

from connectors.modbus_edge.device import DeviceConfig, Link, ModbusReadError, Poller
from connectors.modbus_edge.maps import Point, decode_raw, load_map

from .images import block, common_model, f32, i16, i32, put, sunspec_image, text, u16, u32

TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def poll(server, map_name: str, unit: int, device_id: str = "dev", **settings):
    register_map = load_map(map_name)
    defaults = {k: v for k, v in register_map.defaults.items() if k != "unit"}
    defaults.update(settings)
    device = DeviceConfig(id=device_id, map=register_map, host="127.0.0.1", port=server.port,
                          unit=unit, timeout_s=2, **defaults)
    link = Link(device)
    try:
        return Poller(device, link).poll(now_ms=TS)
    finally:
        link.close()


def by_id(result):
    return {r.device_id: r for r in result.readings}


# -- SunSpec -----------------------------------------------------------------------------------
def inverter_103(w: int, w_sf: int) -> tuple[int, int, dict]:
    return (103, 50, {
        2: u16(1234), 6: i16(-2),            # A = 1234 * 10^-2 = 12.34 A
        10: u16(2301), 13: i16(-1),          # PhVphA = 230.1 V
        14: i16(w), 15: i16(w_sf),           # W
        16: u16(5001), 17: i16(-2),          # Hz = 50.01
        22: u16(0x8000), 23: i16(-2),        # PF not implemented
        24: u32(123456), 26: i16(1),         # WH = 1 234 560 Wh
        38: u16(4),                          # St = MPPT
    })


def meter_203() -> tuple[int, int, dict]:
    return (203, 105, {
        2: u16(0x8000), 6: i16(-2),          # A not implemented
        7: i16(2305), 15: i16(-1),           # PhV = 230.5 V
        16: i16(5000), 17: i16(-2),          # Hz = 50.00
        18: i16(-1500), 22: i16(0),          # W = -1500 (export)
        33: i16(-95), 37: i16(0),            # PF = -95 % -> -0.95
        38: u32(5000), 46: u32(0), 54: i16(2),  # exported 500 000 Wh, imported: acc 0 = none
    })


def test_sunspec_base_40000_common_66_int_inverter_and_meter(modbus_server):
    image = sunspec_image(40000, [common_model(66, "Fronius", "SN-12345"),
                                  inverter_103(452, 1), meter_203()])
    server = modbus_server({1: image})
    result = poll(server, "sunspec", 1, "inv")
    readings = by_id(result)
    inv = readings["inv"]
    assert inv.source == "sunspec"
    assert inv.power_w == pytest.approx(4520.0)   # 452 * 10^1
    assert inv.current_a == pytest.approx(12.34)  # negative SF
    assert inv.voltage_v == pytest.approx(230.1)
    assert inv.frequency_hz == pytest.approx(50.01)
    assert inv.energy_wh == pytest.approx(1_234_560.0)
    assert inv.power_factor is None               # 0x8000 sentinel
    assert inv.status == "mppt"
    assert inv.ts_ms == TS
    meter = readings["inv:meter"]
    assert meter.power_w == pytest.approx(-1500.0)
    assert meter.current_a is None
    assert meter.voltage_v == pytest.approx(230.5)
    assert meter.power_factor == pytest.approx(-0.95)
    assert meter.energy_returned_wh == pytest.approx(500_000.0)
    assert meter.energy_wh is None                # accumulator 0 = no value
    # strings of the common model (model 1 starts at 40002)
    assert result.values["1@40002.Mn"] == "Fronius"
    assert result.values["1@40002.SN"] == "SN-12345"
    # scale factors travel with their values: one request per model block
    assert result.requests == 3


def test_sunspec_base_0_common_65_float_inverter(modbus_server):
    image = sunspec_image(0, [common_model(65, "SolarEdge", "7E1234"), (113, 60, {
        2: f32(10.5), 16: f32(229.5), 22: f32(2415.25), 24: f32(49.98),
        30: f32(float("nan")), 32: f32(7_654_321.0), 48: u16(5)})])
    server = modbus_server({1: image})  # nothing at 40000: exception 0x02, then base 0
    result = poll(server, "sunspec", 1, "se")
    inv = by_id(result)["se"]
    assert inv.power_w == pytest.approx(2415.25)
    assert inv.current_a == pytest.approx(10.5)
    assert inv.voltage_v == pytest.approx(229.5)
    assert inv.frequency_hz == pytest.approx(49.98, abs=1e-4)
    assert inv.energy_wh == pytest.approx(7_654_321.0)
    assert inv.power_factor is None               # NaN = no value
    assert inv.status == "throttled"
    assert result.values["1@2.Mn"] == "SolarEdge"
    assert len(result.readings) == 1


def test_sunspec_base_50000_chain_with_unsupported_model(modbus_server):
    image = sunspec_image(50000, [
        common_model(65, "SMA", "3001234567"),
        (120, 26, {}),                            # nameplate: not used, walked over by L
        (101, 50, {14: i16(-30), 15: i16(0), 2: u16(0xFFFF), 6: i16(0),
                   24: u32(0), 26: i16(0), 38: u16(2)}),
        (213, 124, {28: f32(350.5), 60: f32(1000.0), 68: f32(2500.75), 26: f32(50.02),
                    10: f32(231.2)}),  # a live meter's line: 0 V would drop its 50.02 Hz
    ])
    image[0] = 0x1234  # something at 0 that is not the marker
    image[1] = 0x5678
    server = modbus_server({2: image})
    result = poll(server, "sunspec", 2, "sma-ss")
    readings = by_id(result)
    inv = readings["sma-ss"]
    assert inv.power_w == pytest.approx(-30.0)    # night consumption of the inverter
    assert inv.current_a is None                  # uint16 0xFFFF
    assert inv.energy_wh is None                  # acc32 0
    assert inv.status == "sleeping"
    meter = readings["sma-ss:meter"]
    assert meter.power_w == pytest.approx(350.5)
    assert meter.energy_wh == pytest.approx(2500.75)
    assert meter.energy_returned_wh == pytest.approx(1000.0)
    assert meter.frequency_hz == pytest.approx(50.02, abs=1e-4)
    assert meter.voltage_v == pytest.approx(231.2, abs=1e-4)


def test_sunspec_not_found_is_an_error(modbus_server):
    server = modbus_server({1: {0: 1, 1: 2, 40000: 3, 40001: 4}})
    with pytest.raises(Exception, match="SunSpec marker not found"):
        poll(server, "sunspec", 1)


def test_sunspec_inverter_at_night_keeps_power_drops_the_dead_line(modbus_server):
    """A Fronius Symo 5.0-3-M at night (model 103 as dumped in evcc-io/evcc issue 16924): 0 A,
    0 V, 0 W, 0 Hz, PF not implemented, WH 75 438 296. The 0 W and 0 A are measurements and
    kept; 0 V / 0 Hz are not a line, so the contract's one rule drops them — as the MQTT
    decoders drop a Tasmota's 0.00 V (``ioe.reading.auxiliary_checked``)."""
    night = (103, 50, {2: u16(0), 6: i16(-2), 10: u16(0), 13: i16(-2), 14: i16(0),
                       15: i16(-2), 16: u16(0), 17: i16(-2), 22: u16(0x8000), 23: u16(0x8000),
                       24: u32(75_438_296), 26: i16(0), 38: u16(2)})
    image = sunspec_image(40000, [common_model(66, "Fronius", "28093020"), night])
    (inv,) = poll(modbus_server({1: image}), "sunspec", 1, "symo").readings
    assert (inv.power_w, inv.current_a, inv.energy_wh) == (0.0, 0.0, 75_438_296.0)
    assert (inv.voltage_v, inv.frequency_hz, inv.power_factor) == (None, None, None)
    assert inv.status == "sleeping"


# -- Huawei SUN2000 ------------------------------------------------------------------------------
def huawei_image(meter_power: int = 1200) -> dict[int, int]:
    image: dict[int, int] = {}
    block(image, 32064, 32092)
    block(image, 37100, 37125)
    put(image, 32069, u16(2305))                  # 230.5 V
    put(image, 32072, i32(8123))                  # 8.123 A
    put(image, 32080, i32(5230))                  # 5230 W
    put(image, 32084, i16(990))                   # PF 0.990
    put(image, 32085, u16(5002))                  # 50.02 Hz
    put(image, 32089, u16(0x0200))                # on-grid
    put(image, 32106, u32(1_234_567))             # 12 345.67 kWh
    put(image, 32114, u32(2345))                  # 23.45 kWh today
    put(image, 37101, i32(2312))                  # 231.2 V
    put(image, 37107, i32(-523))                  # -5.23 A
    put(image, 37113, i32(meter_power))           # Huawei: + = export
    put(image, 37117, i16(-950))
    put(image, 37118, i16(4998))
    put(image, 37119, i32(98_765))                # exported 987.65 kWh
    put(image, 37121, i32(43_210))                # imported 432.10 kWh
    return image


def test_huawei_sun2000(modbus_server):
    server = modbus_server({1: huawei_image()})
    result = poll(server, "huawei-sun2000", 1, "hw", delay_after_connect_s=0.05)
    readings = by_id(result)
    inv = readings["hw"]
    assert inv.source == "huawei-sun2000"
    assert inv.power_w == pytest.approx(5230.0)
    assert inv.voltage_v == pytest.approx(230.5)
    assert inv.current_a == pytest.approx(8.123)
    assert inv.power_factor == pytest.approx(0.99)
    assert inv.frequency_hz == pytest.approx(50.02)
    assert inv.status == "on_grid"
    assert inv.energy_wh == pytest.approx(12_345_670.0)
    assert result.values["daily_yield"] == pytest.approx(23_450.0)
    meter = readings["hw:meter"]
    assert meter.power_w == pytest.approx(-1200.0)   # exporting 1200 W -> contract −1200
    assert meter.energy_returned_wh == pytest.approx(987_650.0)
    assert meter.energy_wh == pytest.approx(432_100.0)
    assert meter.voltage_v == pytest.approx(231.2)
    assert meter.current_a == pytest.approx(-5.23)
    assert meter.frequency_hz == pytest.approx(49.98)


def test_huawei_meter_importing(modbus_server):
    server = modbus_server({1: huawei_image(meter_power=-640)})
    meter = by_id(poll(server, "huawei-sun2000", 1, "hw", delay_after_connect_s=0))["hw:meter"]
    assert meter.power_w == pytest.approx(640.0)


def test_channels_setting_selects_what_is_published(modbus_server):
    from connectors.modbus_edge.device import device_from_dict

    server = modbus_server({1: huawei_image()})
    device = device_from_dict({"id": "hw", "map": "huawei-sun2000", "host": "127.0.0.1",
                               "port": server.port, "delay_after_connect_s": 0,
                               "channels": ["main"]})
    link = Link(device)
    try:
        result = Poller(device, link).poll(now_ms=TS)
    finally:
        link.close()
    assert [r.device_id for r in result.readings] == ["hw"]


# -- SMA -----------------------------------------------------------------------------------------
def sma_image(night: bool = False) -> dict[int, int]:
    image: dict[int, int] = {}
    put(image, 30201, u32(307))
    put(image, 30529, u32(0xFFFFFFFF if night else 45_678_901))
    put(image, 30775, u32(0x80000000) if night else i32(3150))
    put(image, 30783, u32(23_150))
    put(image, 30803, u32(5001))
    put(image, 30977, i32(13_700))
    return image


def test_sma(modbus_server):
    server = modbus_server({3: sma_image()})
    r = by_id(poll(server, "sma", 3, "sma"))["sma"]
    assert r.source == "sma"
    assert r.power_w == pytest.approx(3150.0)
    assert r.energy_wh == pytest.approx(45_678_901.0)
    assert r.voltage_v == pytest.approx(231.5)
    assert r.frequency_hz == pytest.approx(50.01)
    assert r.current_a == pytest.approx(13.7)
    assert r.status == "ok"


def test_sma_nan_values_are_absent(modbus_server):
    server = modbus_server({3: sma_image(night=True)})
    r = by_id(poll(server, "sma", 3, "sma"))["sma"]
    assert r.power_w is None and r.energy_wh is None
    assert r.voltage_v == pytest.approx(231.5)


def test_sma_wrong_unit_is_a_modbus_error(modbus_server):
    server = modbus_server({3: sma_image()})
    with pytest.raises(ModbusReadError):
        poll(server, "sma", 1, "sma")


# -- Kostal (float32, little word order) ----------------------------------------------------------
def test_kostal(modbus_server):
    image: dict[int, int] = {}
    block(image, 150, 160)
    put(image, 56, u32(6, "little"))
    put(image, 100, f32(3600.0, "little"))
    put(image, 150, f32(0.98, "little"))
    put(image, 152, f32(50.0, "little"))
    put(image, 154, f32(5.25, "little"))
    put(image, 158, f32(229.75, "little"))
    put(image, 172, f32(3456.5, "little"))
    put(image, 320, f32(9_876_543.0, "little"))
    server = modbus_server({71: image})
    result = poll(server, "kostal", 71, "ko")
    r = by_id(result)["ko"]
    assert r.power_w == pytest.approx(3456.5)
    assert r.energy_wh == pytest.approx(9_876_543.0)
    assert r.frequency_hz == pytest.approx(50.0)
    assert r.current_a == pytest.approx(5.25)
    assert r.voltage_v == pytest.approx(229.75)
    assert r.power_factor == pytest.approx(0.98, abs=1e-6)
    assert r.status == "feed_in"
    # the same words read big-endian would be garbage: the word order matters
    big = Point(name="p", address=172, type="float32", words=2, word_order="big")
    assert not math.isclose(decode_raw(big, f32(3456.5, "little")), 3456.5)


# -- Eastron SDM630 (input registers) ------------------------------------------------------------
def test_sdm630(modbus_server):
    image: dict[int, int] = {}
    block(image, 0, 0x12)
    put(image, 0x0000, f32(231.5))
    put(image, 0x0006, f32(4.5))
    put(image, 0x0034, f32(-850.25))
    put(image, 0x003E, f32(0.97))
    put(image, 0x0046, f32(49.95))
    put(image, 0x0048, f32(1234.5))
    put(image, 0x004A, f32(321.25))
    server = modbus_server({1: image})
    result = poll(server, "sdm630", 1, "sdm")
    r = by_id(result)["sdm"]
    assert r.source == "sdm630"
    assert r.power_w == pytest.approx(-850.25)     # exporting
    assert r.energy_wh == pytest.approx(1_234_500.0)
    assert r.energy_returned_wh == pytest.approx(321_250.0)
    assert r.frequency_hz == pytest.approx(49.95, abs=1e-4)
    assert r.voltage_v == pytest.approx(231.5)
    assert r.current_a == pytest.approx(4.5)
    assert r.power_factor == pytest.approx(0.97, abs=1e-6)
    assert result.requests == 4


def test_strings_decode():
    p = Point(name="s", address=0, type="string", words=4)
    assert decode_raw(p, text("ABC", 4)) == "ABC"
    assert decode_raw(p, [0, 0, 0, 0]) is None
