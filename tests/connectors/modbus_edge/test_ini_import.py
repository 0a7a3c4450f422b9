"""The eco_modbus_tcp INI importer: a lookup table, never exec; the result polls a device."""

from __future__ import annotations

import pytest
import yaml

from connectors.modbus_edge.device import Link, Poller, device_from_dict
from connectors.modbus_edge.ini_import import IniImportError, import_ini

from .images import f32, i32, put

INI = """
[emoncms]
site = planta
cms_ip = 10.0.0.1
path = /emoncms
key = 0123456789abcdef

[inversor]
url = 127.0.0.1
port = {port}
unit = 7
byteorder = Endian.Big
wordorder = Endian.Little

[potencia_activa]
server = inversor
start = 100
registers = 2
tipe = 32bit_float

[energia_total]
server = inversor
start = 102
registers = 2
tipe = 32bit_float

[energia_exportada]
server = inversor
start = 200
registers = 2
tipe = 32bit_int
unit = Wh

[temperatura]
server = inversor
start = 300
registers = 2
tipe = 32bit_float
"""


def test_import_and_poll(modbus_server):
    image: dict[int, int] = {}
    put(image, 100, f32(2750.5, "little"))
    put(image, 102, f32(1520.25, "little"))   # kWh (old program: raw values, energy in kWh)
    put(image, 200, i32(98_000, "little"))
    put(image, 300, f32(41.5, "little"))
    server = modbus_server({7: image})
    document = import_ini(INI.format(port=server.port))
    assert "0123456789abcdef" not in yaml.safe_dump(document)   # the API key is not carried
    (raw,) = document["devices"]
    assert raw["host"] == "127.0.0.1" and raw["unit"] == 7
    device = device_from_dict(raw)
    link = Link(device)
    try:
        result = Poller(device, link).poll(now_ms=1_767_225_600_000)
    finally:
        link.close()
    (reading,) = result.readings
    assert reading.device_id == "inversor"
    assert reading.power_w == pytest.approx(2750.5)
    assert reading.energy_wh == pytest.approx(1_520_250.0)
    assert reading.energy_returned_wh == pytest.approx(98_000.0)
    assert result.values["temperatura"] == pytest.approx(41.5)


@pytest.mark.parametrize("key,value", [
    ("tipe", "32bit_float()\nimport os"),
    ("tipe", "__import__('os').system('true')"),
])
def test_code_in_the_config_is_refused(key, value):
    text = INI.format(port=502).replace("tipe = 32bit_float\n\n[energia_total]",
                                        f"{key} = {value!r}\n\n[energia_total]", 1)
    with pytest.raises(IniImportError, match="tipe"):
        import_ini(text)


def test_unknown_byteorder_is_refused():
    with pytest.raises(IniImportError, match="byteorder"):
        import_ini(INI.format(port=502).replace("byteorder = Endian.Big",
                                                "byteorder = exec('x')"))


def test_point_of_unknown_server_is_refused():
    with pytest.raises(IniImportError, match="not a device section"):
        import_ini(INI.format(port=502).replace("server = inversor\nstart = 300",
                                                "server = nadie\nstart = 300"))
