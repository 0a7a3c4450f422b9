"""The Modbus edge's decoders and file parsers, fuzzed: any register contents decode through every
shipped map to readings (finite, contract-valid) or refused readings with a reason; any INI
text imports or is refused with :class:`IniImportError`; any map document loads or is refused
with :class:`MapError` — never another exception. ``pytest -m long`` runs ≥ 1,000,000 inputs.
"""

from __future__ import annotations

import math
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.modbus_edge.device import build_readings
from connectors.modbus_edge.ini_import import IniImportError, import_ini
from connectors.modbus_edge.maps import MAPS_DIR, MapError, decode_points, load_map, parse_map

MAPS = [load_map(p.stem) for p in sorted(MAPS_DIR.glob("*.yaml"))]
MAPS = [m for m in MAPS if m.points]  # sunspec discovers its points at run time
#: a SunSpec-style map: values scaled by a scale-factor register (any int16 in the fuzz)
MAPS.append(parse_map({"name": "sf", "points": [
    {"name": "W", "address": 0, "type": "int16", "field": "power_w", "scale_factor": "W_SF"},
    {"name": "W_SF", "address": 1, "type": "sunssf"},
    {"name": "WH", "address": 2, "type": "acc32", "field": "energy_wh", "unit": "kWh",
     "scale_factor": "WH_SF"},
    {"name": "WH_SF", "address": 4, "type": "sunssf"},
    {"name": "Hz", "address": 5, "type": "float32", "field": "frequency_hz", "gain": 1e30}]},
    source="fuzz-sf"))
TS = 1_767_225_600_000
WORDS = st.one_of(st.integers(0, 0xFFFF),
                  st.sampled_from([0, 0xFFFF, 0x8000, 0x7FFF, 0x7F80, 0xFF80, 0x7FC0, 1]))


def check_registers(register_map, words: list[int]) -> None:  # noqa: ANN001
    registers = {}
    for point in register_map.points:
        for offset, address in enumerate(range(point.address, point.end)):
            registers[(point.fc, address)] = words[(address + offset) % len(words)]
    values = decode_points(register_map.points, registers)
    readings, rejected = build_readings("dev", register_map, values, TS)
    for reading in readings:
        for name in ("power_w", "energy_wh", "energy_returned_wh", "voltage_v", "current_a",
                     "frequency_hz", "power_factor"):
            value = getattr(reading, name)
            assert value is None or math.isfinite(value), (register_map.name, name, value)
    for data, error in rejected:
        assert error.field and data["device_id"].startswith("dev")


@pytest.mark.parametrize("register_map", MAPS, ids=lambda m: m.name)
def test_fuzz_register_contents_through_every_map(register_map):
    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(WORDS, min_size=1, max_size=64))
    def one(words: list[int]) -> None:
        check_registers(register_map, words)

    one()


INI_LINES = st.sampled_from([
    "[emoncms]", "key = secret", "[inv]", "url = 10.0.0.1", "port = 502", "port = x",
    "unit = 1", "byteorder = Endian.Big", "wordorder = Endian.Little", "byteorder = ?",
    "[fr_pow]", "[cn_pow]", "[potencia]", "server = inv", "server = nadie", "start = 100",
    "start = -1", "start = 0x10", "registers = 2", "registers = 0", "tipe = 32bit_float",
    "tipe = 16bit_int", "tipe = string", "tipe = exec()", "field = power_w",
    "field = nope", "unit = kWh", "unit = parsec", "gain = 0.1", "gain = x", "[inv]",
    "no section header", "= value", "[", "%(x)s", "key", ""])


def check_ini(text: str) -> None:
    try:
        document = import_ini(text)
    except IniImportError:
        return
    points = [p for d in document["devices"] for p in d["map"]["points"]]
    assert any(p.get("field") for p in points)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(INI_LINES, max_size=25) | st.text(max_size=200).map(lambda t: [t]))
def test_fuzz_ini_import(lines):
    check_ini("\n".join(lines))


MAP_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(), st.text(max_size=6),
              st.sampled_from(["float32", "int16", "sunssf", "string", "holding", "input",
                               "power_w", "W", "kWh", "big", "little", "meter"])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "address", "type", "fc", "field", "unit", "gain", "words",
                         "scale_factor", "word_order", "byte_order", "enum", "channel",
                         "sentinels", "points", "source", "defaults", "defined", "offset"]),
        inner, max_size=6), max_leaves=20)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(MAP_VALUES)
def test_fuzz_map_documents(document):
    try:
        register_map = parse_map(document, source="fuzz")
    except MapError:
        return
    if register_map.points:
        check_registers(register_map, [0x4000, 0x1234, 0xFFFF, 0])


@pytest.mark.long
def test_long_fuzz_a_million_register_images():
    count = int(os.environ.get("IOE_FUZZ_INPUTS", "1000000"))
    rng = random.Random(20261203)
    specials = [0, 0xFFFF, 0x8000, 0x7FFF, 0x7F80, 0xFF80, 0x7FC0, 1]
    for i in range(count):
        words = [rng.choice(specials) if rng.random() < 0.3 else rng.randrange(0x10000)
                 for _ in range(rng.randint(1, 16))]
        check_registers(MAPS[i % len(MAPS)], words)
    print(f"modbus fuzz: {count} register images, 0 crashes")
