"""``ioe modbus-edge read`` and ``import-ini`` as a user runs them (real processes)."""

from __future__ import annotations

import subprocess
import sys

import orjson
import yaml

from ioe.settings import ROOT

from .images import block, f32, put


def ioe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ioe.cli", "modbus-edge", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def sdm_image() -> dict[int, int]:
    image: dict[int, int] = {}
    block(image, 0, 0x12)
    put(image, 0x0000, f32(230.0))
    put(image, 0x0034, f32(1500.0))
    put(image, 0x003E, f32(0.5))
    put(image, 0x0046, f32(50.0))
    put(image, 0x0048, f32(2.5))
    put(image, 0x004A, f32(0.0))
    return image


def test_read_once_prints_json_lines(modbus_server):
    server = modbus_server({5: sdm_image()})
    done = ioe("read", "--host", "127.0.0.1", "--port", str(server.port), "--map", "sdm630",
               "--unit", "5", "--once")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    reading = orjson.loads(lines[0])
    assert reading["device_id"] == f"127.0.0.1:{server.port}:5"
    assert reading["source"] == "sdm630"
    assert reading["power_w"] == 1500.0
    assert reading["energy_wh"] == 2500.0
    assert reading["energy_returned_wh"] == 0.0
    assert reading["voltage_v"] == 230.0 and reading["frequency_hz"] == 50.0
    assert reading["power_factor"] == 0.5
    assert reading["current_a"] == 0.0


def test_read_reports_the_failed_request_and_exits_2(modbus_server):
    image = sdm_image()
    del image[0x004A], image[0x004B]
    server = modbus_server({1: image})
    done = ioe("read", "--host", "127.0.0.1", "--port", str(server.port), "--map", "sdm630",
               "--once")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "address 70" in done.stderr and "exception code 0x02" in done.stderr


def test_read_unreachable_device_exits_2():
    done = ioe("read", "--host", "127.0.0.1", "--port", "1", "--map", "sma", "--once",
               "--timeout", "0.5")
    assert done.returncode == 2
    assert "cannot connect" in done.stderr


def test_import_ini_prints_a_config(tmp_path):
    ini = tmp_path / "config.ini"
    ini.write_text("[emoncms]\nkey = secret-key\n\n[inv]\nurl = 10.0.0.5\nport = 502\nunit = 1\n"
                   "byteorder = Endian.Big\nwordorder = Endian.Big\n\n"
                   "[potencia]\nserver = inv\nstart = 40083\nregisters = 1\ntipe = 16bit_int\n")
    done = ioe("import-ini", str(ini))
    assert done.returncode == 0, done.stderr
    assert "secret-key" not in done.stdout
    document = yaml.safe_load(done.stdout)
    (device,) = document["devices"]
    assert device["host"] == "10.0.0.5"
    assert device["map"]["points"][0]["field"] == "power_w"
