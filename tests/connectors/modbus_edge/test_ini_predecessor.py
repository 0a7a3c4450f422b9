"""The predecessor's real configurations import and read real values (issue 16, item 6).

The INI below has the shape of eco_modbus_tcp's ``config.ini`` (github.com/iotlibre/
eco_modbus_tcp and the onsar/eco_modbus_tcp_autoconsumo40 fork: ``[emoncms]`` with the API
key, device sections with ``url/port/unit/byteorder/wordorder``, point sections with
``server/start/registers/tipe``, read with ``read_holding_registers`` and
``BinaryPayloadDecoder.decode_<tipe>``), with the point names the community's installations
used: ``fr_pow``, ``cn_pow``, ``bm_pow``, ``fr_ener_h``, ``fr_acw``, ``fr_acwh``.
"""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
import yaml

from connectors.modbus_edge.device import Link, Poller, device_from_dict
from connectors.modbus_edge.ini_import import IniImportError, import_ini
from ioe.settings import ROOT

from .images import f32, i32, put

INI = """
[emoncms]
site = autoconsumo40
cms_ip = center.autoconsumo.cloud
path = /api
key = c7e7ebc1783ea5d8faf432f46aa8942e659718a7

[planta]
url = 127.0.0.1
port = {port}
unit = 1
byteorder = Endian.Big
wordorder = Endian.Little

[fr_pow]
server = planta
start = 100
registers = 2
tipe = 32bit_float

[cn_pow]
server = planta
start = 102
registers = 2
tipe = 32bit_float

[bm_pow]
server = planta
start = 104
registers = 2
tipe = 32bit_float

[fr_ener_h]
server = planta
start = 106
registers = 2
tipe = 32bit_float

[fr_acw]
server = planta
start = 108
registers = 2
tipe = 32bit_int

[fr_acwh]
server = planta
start = 110
registers = 2
tipe = 32bit_int
"""


def image() -> dict[int, int]:
    words: dict[int, int] = {}
    put(words, 100, f32(-1830.5, "little"))   # grid boundary: exporting 1830.5 W
    put(words, 102, f32(640.25, "little"))    # consumption
    put(words, 104, f32(1200.0, "little"))    # pump
    put(words, 106, f32(1.75, "little"))      # energy of the last hour (kWh)
    put(words, 108, i32(-1830, "little"))     # the same power as an integer
    put(words, 110, i32(45_678_901, "little"))  # active energy counter, Wh
    return words


def ioe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ioe.cli", "modbus-edge", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_the_naming_convention_maps_to_channels_and_fields(modbus_server):
    server = modbus_server({1: image()})
    notes: list[str] = []
    document = import_ini(INI.format(port=server.port), unmapped=notes)
    (raw,) = document["devices"]
    points = {p["name"]: p for p in raw["map"]["points"]}
    assert {n: (p.get("channel"), p.get("field"), p.get("unit")) for n, p in points.items()} == {
        "fr_pow": ("fr", "power_w", "W"), "cn_pow": ("cn", "power_w", "W"),
        "bm_pow": ("bm", "power_w", "W"), "fr_acwh": ("fr", "energy_wh", "Wh"),
        "fr_ener_h": ("fr", None, None), "fr_acw": ("fr", None, None)}
    # the two points that stay internal are named, with the reason and the fix
    assert len(notes) == 2
    assert any("[fr_ener_h]" in n and "not a cumulative counter" in n and "--field" in n
               for n in notes)
    assert any("[fr_acw]" in n and "fr_pow already gives power_w" in n for n in notes)
    device = device_from_dict(raw)
    link = Link(device)
    try:
        result = Poller(device, link).poll(now_ms=1_767_225_600_000)
    finally:
        link.close()
    got = {r.device_id: r for r in result.readings}
    assert sorted(got) == ["planta:bm", "planta:cn", "planta:fr"]
    assert got["planta:fr"].power_w == pytest.approx(-1830.5)
    assert got["planta:fr"].energy_wh == pytest.approx(45_678_901.0)
    assert got["planta:cn"].power_w == pytest.approx(640.25)
    assert got["planta:cn"].energy_wh is None
    assert got["planta:bm"].power_w == pytest.approx(1200.0)
    assert result.values["fr_ener_h"] == pytest.approx(1.75)
    assert result.values["fr_acw"] == -1830


def test_a_config_that_would_publish_nothing_is_an_error():
    only_hourly = INI.split("[fr_pow]")[0] + INI[INI.index("[fr_ener_h]"):INI.index("[fr_acw]")]
    with pytest.raises(IniImportError, match="no point feeds a contract field") as info:
        import_ini(only_hourly.format(port=502))
    assert "fr_ener_h" in str(info.value)
    document = import_ini(only_hourly.format(port=502),
                          fields={"fr_ener_h": ("energy_wh", "kWh")})
    (point,) = document["devices"][0]["map"]["points"]
    assert (point["field"], point["unit"], point["channel"]) == ("energy_wh", "kWh", "fr")


def test_cli_import_reports_unmapped_points_and_read_refuses_an_empty_map(tmp_path,
                                                                          modbus_server):
    server = modbus_server({1: image()})
    ini = tmp_path / "config.ini"
    ini.write_text(INI.format(port=server.port))
    done = ioe("import-ini", str(ini))
    assert done.returncode == 0, done.stderr
    assert "c7e7ebc1783ea5d8faf432f46aa8942e659718a7" not in done.stdout + done.stderr
    assert "[fr_ener_h]" in done.stderr and "--field fr_ener_h=FIELD" in done.stderr
    (device,) = yaml.safe_load(done.stdout)["devices"]
    map_file = tmp_path / "planta.yaml"
    map_file.write_text(yaml.safe_dump(device["map"]))
    read = ioe("read", "--host", "127.0.0.1", "--port", str(server.port), "--map", str(map_file),
               "--device-id", "planta")
    assert read.returncode == 0, read.stderr
    readings = {r["device_id"]: r for r in map(orjson.loads, read.stdout.splitlines())}
    assert readings["planta:cn"]["power_w"] == 640.25
    # the same map without any contract field: an error, not "exit 0, no output"
    for point in device["map"]["points"]:
        point.pop("field", None)
    map_file.write_text(yaml.safe_dump(device["map"]))
    read = ioe("read", "--host", "127.0.0.1", "--port", str(server.port), "--map", str(map_file))
    assert read.returncode == 1 and read.stdout == ""
    assert "no point with a contract field" in read.stderr
    bad = ioe("import-ini", str(ini), "--field", "nope=energy_wh")
    assert bad.returncode == 1 and "names no point section: nope" in bad.stderr
