"""``ioe modbus-edge write`` and :class:`Writer` against real pymodbus servers playing a SunSpec
1+103+123(+124) inverter and a Huawei SUN2000: limits written with their scale factor, enable
flag and revert timeout, read back, refused before any write when out of range or unknown."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import orjson
import pytest

from connectors.modbus_edge.device import DeviceConfig, Link, ModbusReadError
from connectors.modbus_edge.maps import Point, decode_raw, load_map
from connectors.modbus_edge.sunspec import DiscoveryError
from connectors.modbus_edge.writes import Writer, WriteRefused, load_writables, raw_of, words_of
from connectors.modbus_edge.writesim import HuaweiInverter, SunSpecInverter, WritableSimServer
from ioe.settings import ROOT


def ioe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ioe.cli", "modbus-edge", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def write(server: WritableSimServer, map_name: str, *args: str
          ) -> tuple[int, list[dict], str]:
    done = ioe("write", "--host", "127.0.0.1", "--port", str(server.port), "--map", map_name,
               "--unit", "1", "--timeout", "2", *args)
    return done.returncode, [orjson.loads(x) for x in done.stdout.splitlines()], done.stderr


@pytest.fixture
def started() -> Iterator[list[WritableSimServer]]:
    servers: list[WritableSimServer] = []
    yield servers
    for server in servers:
        server.stop()


def sunspec(started: list[WritableSimServer], **kwargs: object
            ) -> tuple[SunSpecInverter, WritableSimServer]:
    inverter = SunSpecInverter(**kwargs)  # type: ignore[arg-type]
    server = inverter.server().start()
    started.append(server)
    return inverter, server


def writer_for(server: WritableSimServer, map_name: str) -> Writer:
    device = DeviceConfig(id="inv", map=load_map(map_name), host="127.0.0.1", port=server.port,
                          unit=1, timeout_s=2)
    return Writer(device, Link(device), load_writables(map_name))


# -- SunSpec -----------------------------------------------------------------------------------
def test_power_limit_written_scaled_enabled_with_revert_and_read_back(started):
    inverter, server = sunspec(started, rated_w=10_000, available_w=8_000, limit_sf=-1)
    code, (line,), _ = write(server, "sunspec", "--set", "power_limit_pct=50",
                             "--revert-s", "600")
    assert code == 0
    assert line["key"] == "power_limit_pct" and line["requested"] == 50
    assert line["readback"] == 50 and line["ok"] is True
    assert line["enabled"] is True and line["revert_s"] == 600 and line["revert"] == "written"
    c = inverter.controls
    # by hand: 50 % with WMaxLimPct_SF = -1 is raw 500; the revert goes first, enable last
    assert [(w["address"], w["registers"]) for w in line["written"]] == [
        (c + 7, [600]), (c + 5, [500]), (c + 9, [1])]
    assert server.images[1][c + 5] == 500 and server.images[1][c + 9] == 1
    # the simulated inverter now caps its output at 50 % of 10 kW
    done = ioe("read", "--host", "127.0.0.1", "--port", str(server.port), "--map", "sunspec",
               "--once")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout.splitlines()[0])["power_w"] == 5000.0


def test_scale_factor_minus_two(started):
    inverter, server = sunspec(started, limit_sf=-2)
    code, (line,), _ = write(server, "sunspec", "--set", "power_limit_pct=37.5")
    assert code == 0 and line["readback"] == 37.5
    assert server.images[1][inverter.controls + 5] == 3750


def test_none_disables_the_limit(started):
    inverter, server = sunspec(started)
    assert write(server, "sunspec", "--set", "power_limit_pct=40")[0] == 0
    assert inverter.limit_pct == 40
    code, (line,), _ = write(server, "sunspec", "--set", "power_limit_pct=none")
    assert code == 0 and line["ok"] is True
    assert line["requested"] is None and line["readback"] is None and line["enabled"] is False
    assert inverter.limit_pct is None


@pytest.mark.parametrize("setting,why", [
    ("power_limit_pct=150", "outside the range [0, 100]"),
    ("power_limit_pct=-1", "outside the range"),
    ("power_limit_pct=abc", "not a number"),
    ("WMaxLimPct=50", "not a writable point"),
    ("export_limit_w=1000", "not a writable point"),
    ("connected=maybe", "must be one of on, off"),
])
def test_refused_before_anything_is_written(started, setting, why):
    _, server = sunspec(started)
    code, (line,), stderr = write(server, "sunspec", "--set", setting)
    assert code == 2
    assert line["ok"] is False and why in line["error"]
    assert why in stderr and "nothing written" in stderr
    assert server.writes == []


def test_second_bad_setting_refuses_the_first_too(started):
    _, server = sunspec(started)
    code, _, _ = write(server, "sunspec", "--set", "power_limit_pct=20",
                       "--set", "power_limit_pct=101")
    assert code == 2 and server.writes == []


def test_revert_longer_than_the_register_is_refused(started):
    _, server = sunspec(started)
    code, (line,), _ = write(server, "sunspec", "--set", "power_limit_pct=20",
                             "--revert-s", "70000")
    assert code == 2 and "revert 70000 s" in line["error"]
    assert server.writes == []


def test_missing_model_refused_nothing_written(started):
    _, server = sunspec(started)  # no model 124
    code, (line,), _ = write(server, "sunspec", "--set", "storage_charge_limit_pct=30")
    assert code == 2 and "no SunSpec model 124" in line["error"]
    assert server.writes == []


def test_revert_timeout_is_honoured_by_the_device(started):
    inverter, server = sunspec(started, available_w=8_000)
    writer = writer_for(server, "sunspec")
    try:
        result = writer.write("power_limit_pct", 25, revert_s=1)
        assert result.ok and inverter.limit_pct == 25
        assert writer.read("power_limit_pct").readback == 25
        time.sleep(1.3)  # nobody renews the command: the link is "lost"
        after = writer.read("power_limit_pct")
        assert after.enabled is False and after.readback is None
        assert inverter.reverts == 1
    finally:
        writer.link.close()


def test_device_that_does_not_keep_the_value_is_not_ok(started):
    inverter = SunSpecInverter()
    c = inverter.controls

    def stubborn(unit, fc, address, count, image):  # firmware clamps every limit to 80 %
        if image[c + 5] < 800:
            image[c + 5] = 800
        return inverter.on_read(unit, fc, address, count, image)

    server = WritableSimServer({1: inverter.image}, on_read=stubborn,
                               on_write=inverter.on_write).start()
    started.append(server)
    code, (line,), stderr = write(server, "sunspec", "--set", "power_limit_pct=50")
    assert code == 2
    assert line["ok"] is False and line["readback"] == 80
    assert "read back 80" in stderr


def test_write_to_a_read_only_register_reports_the_exception(started):
    inverter = SunSpecInverter()
    server = WritableSimServer({1: inverter.image},
                               writable={1: inverter.writable_addresses()
                                         - {inverter.controls + 9}}).start()
    started.append(server)
    code, (line,), stderr = write(server, "sunspec", "--set", "power_limit_pct=50")
    assert code == 2 and line["ok"] is False
    assert "exception code 0x02" in stderr


def test_storage_limits_set_their_own_bit_of_storctl_mod(started):
    inverter, server = sunspec(started, storage=True)
    s = inverter.storage
    assert s is not None
    code, (charge,), _ = write(server, "sunspec", "--set", "storage_charge_limit_pct=30",
                               "--revert-s", "900")
    assert code == 0 and charge["readback"] == 30 and charge["enabled"] is True
    code, (discharge,), _ = write(server, "sunspec", "--set", "storage_discharge_limit_pct=60")
    assert code == 0 and discharge["readback"] == 60
    image = server.images[1]
    assert image[s + 13] == 30 and image[s + 12] == 60
    assert image[s + 5] == 0b11  # both limits active: the second write kept the first bit
    assert image[s + 15] == 900
    code, (off,), _ = write(server, "sunspec", "--set", "storage_charge_limit_pct=none")
    assert code == 0 and off["enabled"] is False and image[s + 5] == 0b10


def test_unreachable_device_exits_2():
    done = ioe("write", "--host", "127.0.0.1", "--port", "1", "--map", "sunspec", "--set",
               "power_limit_pct=50", "--timeout", "0.5")
    assert done.returncode == 2
    assert orjson.loads(done.stdout)["ok"] is False and "cannot connect" in done.stderr


# -- Huawei SUN2000 ----------------------------------------------------------------------------
def huawei(started: list[WritableSimServer]) -> tuple[HuaweiInverter, WritableSimServer]:
    inverter = HuaweiInverter(rated_w=10_000, available_w=7_000)
    server = inverter.server().start()
    started.append(server)
    return inverter, server


def test_huawei_power_limit_derating(started):
    _, server = huawei(started)
    code, (line,), _ = write(server, "huawei-sun2000", "--set", "power_limit_pct=30",
                             "--revert-s", "600")
    assert code == 0 and line["ok"] is True and line["readback"] == 30
    assert line["revert"] == "unsupported" and line["revert_s"] is None
    assert server.images[1][40125] == 300  # gain 0.1 %
    done = ioe("read", "--host", "127.0.0.1", "--port", str(server.port), "--map",
               "huawei-sun2000", "--once")
    assert done.returncode == 0, done.stderr
    main = next(orjson.loads(x) for x in done.stdout.splitlines()
                if not orjson.loads(x)["device_id"].endswith(":meter"))
    assert main["power_w"] == 3000.0 and main["status"] == "on_grid_power_limited"
    code, (line,), _ = write(server, "huawei-sun2000", "--set", "power_limit_pct=none")
    assert code == 0 and line["readback"] == 100 and server.images[1][40125] == 1000


def test_huawei_export_limit_sets_the_control_mode(started):
    _, server = huawei(started)
    code, (line,), _ = write(server, "huawei-sun2000", "--set", "export_limit_w=2500")
    assert code == 0 and line["ok"] is True and line["readback"] == 2500
    image = server.images[1]
    assert image[47415] == 6 and (image[47416] << 16 | image[47417]) == 2500
    code, (line,), _ = write(server, "huawei-sun2000", "--set", "export_limit_w=none")
    assert code == 0 and image[47415] == 0 and line["enabled"] is False


def test_huawei_refuses_storage_beyond_range(started):
    _, server = huawei(started)
    code, (line,), _ = write(server, "huawei-sun2000", "--set",
                             "storage_charge_limit_w=200000")
    assert code == 2 and "outside the range" in line["error"] and server.writes == []


# -- encoding (pure) ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind,word_order,byte_order,raw", [
    ("uint16", "big", "big", 500), ("int16", "big", "big", -250),
    ("int32", "big", "big", -123456), ("int32", "little", "big", 70000),
    ("uint32", "little", "little", 0x01020304),
])
def test_words_round_trip_through_the_decoder(kind, word_order, byte_order, raw):
    point = Point(name="p", address=0, type=kind, words=2 if "32" in kind else 1,
                  word_order=word_order, byte_order=byte_order)
    assert decode_raw(point, words_of(point, raw)) == raw


def test_raw_that_does_not_fit_or_is_a_sentinel_is_refused():
    point = Point(name="p", address=0, type="uint16", sentinels=(0xFFFF,))
    with pytest.raises(WriteRefused, match="cannot hold"):
        raw_of(point, 70000, 0)
    with pytest.raises(WriteRefused, match="no value"):
        raw_of(point, 6553.5, -1)


def test_not_writable_raises_without_io():
    device = DeviceConfig(id="x", map=load_map("sunspec"), host="127.0.0.1", port=1)
    writer = Writer(device, Link(device), load_writables("sunspec"))
    with pytest.raises(WriteRefused):
        writer.write("power_limit_pct", 101)
    with pytest.raises((ModbusReadError, DiscoveryError)):
        writer.write("power_limit_pct", 50)  # allowed, so it tries the (absent) device


# -- SMA: the documented write-only registers --------------------------------------------------
def sma(started: list[WritableSimServer]) -> WritableSimServer:
    """An SMA inverter's write-only control registers (SMA answers reads of WO registers with
    an exception, as this image does: the addresses may be written, never read)."""
    image = {a: 0 for a in (40016, 40149, 40150, 40151, 40152)}

    def refuse_reads(unit: int, fc: int, address: int, count: int, img: dict[int, int]) -> int:
        return 0x02  # ILLEGAL DATA ADDRESS

    server = WritableSimServer({1: image}, on_read=refuse_reads, writable={1: set(image)})
    started.append(server.start())
    return server


def test_sma_power_limit_is_written_and_reported_as_not_verifiable(started):
    server = sma(started)
    code, (line,), _ = write(server, "sma", "--set", "power_limit_pct=60", "--revert-s", "300")
    assert code == 0 and line["ok"] is True and line["verified"] is False
    assert line["readback"] is None and line["revert"] == "unsupported"
    assert server.images[1][40016] == 60
    assert line["written"] == [{"point": "active_power_setpoint_pct", "address": 40016,
                                "registers": [60]}]


def test_sma_watt_setpoint_activates_plant_control_and_none_deactivates_it(started):
    server = sma(started)
    code, (line,), _ = write(server, "sma", "--set", "power_limit_w=5000")
    image = server.images[1]
    assert code == 0 and line["verified"] is False
    assert (image[40149] << 16 | image[40150]) == 5000
    assert (image[40151] << 16 | image[40152]) == 802  # "Plant control" active
    code, (line,), _ = write(server, "sma", "--set", "power_limit_w=none")
    assert code == 0 and (image[40151] << 16 | image[40152]) == 803
    assert (image[40149] << 16 | image[40150]) == 5000  # the setpoint itself untouched
    code, _, err = write(server, "sma", "--set", "power_limit_pct=120")
    assert code == 2 and "outside the range" in err and image[40016] == 0  # nothing written
