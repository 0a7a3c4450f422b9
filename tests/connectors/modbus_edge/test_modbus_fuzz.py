"""The Modbus edge's decoders and file parsers, fuzzed: any register contents decode through every
shipped map to readings (finite, contract-valid) or refused readings with a reason; any INI
text imports or is refused with :class:`IniImportError`; any map document loads or is refused
with :class:`MapError`; any device that claims to speak SunSpec is discovered into a map whose
readings are finite, or refused with :class:`DiscoveryError`/:class:`MapError`/
:class:`ModbusReadError` (what the agent counts and retries) — never another exception.
``pytest -m long`` runs ≥ 1,000,000 inputs of each kind.

The SunSpec chains start from the real devices' images of ``test_maps.py`` (Fronius with common
model 66 and models 103 + 203 at 40000, SolarEdge with 65 + 113 at 0, SMA with 120 + 101 + 213
at 50000, after the SunSpec Information Model, sunspec.org) and mutate ids, lengths and words.
"""

from __future__ import annotations

import math
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.modbus_edge import sunspec
from connectors.modbus_edge.device import ModbusReadError, build_readings
from connectors.modbus_edge.ini_import import IniImportError, import_ini
from connectors.modbus_edge.maps import MAPS_DIR, MapError, decode_points, load_map, parse_map
from connectors.modbus_edge.planner import plan

from .images import common_model, f32, i16, sunspec_image, u16, u32
from .test_maps import inverter_103, meter_203

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
@pytest.mark.timeout(3600)  # a million inputs on a shared machine
def test_long_fuzz_a_million_register_images():
    count = int(os.environ.get("IOE_FUZZ_INPUTS", "1000000"))
    rng = random.Random(20261203)
    specials = [0, 0xFFFF, 0x8000, 0x7FFF, 0x7F80, 0xFF80, 0x7FC0, 1]
    for i in range(count):
        words = [rng.choice(specials) if rng.random() < 0.3 else rng.randrange(0x10000)
                 for _ in range(rng.randint(1, 16))]
        check_registers(MAPS[i % len(MAPS)], words)
    print(f"modbus fuzz: {count} register images, 0 crashes")


# -- SunSpec discovery: the device describes itself, so its description is input too ----------
LAYOUTS = sunspec.load_layouts()
#: (model id, L, values) blocks of real devices (see the module docstring)
REAL_MODELS = [
    common_model(66, "Fronius", "SN-12345"), common_model(65, "SolarEdge", "7E1234"),
    (101, 50, {14: i16(-30), 15: i16(0), 2: u16(0xFFFF), 6: i16(0), 24: u32(0), 38: u16(2)}),
    inverter_103(452, 1),
    (113, 60, {2: f32(10.5), 16: f32(229.5), 22: f32(2415.25), 24: f32(49.98),
               30: f32(float("nan")), 32: f32(7_654_321.0), 48: u16(5)}),
    (120, 26, {}), (123, 24, {}),
    meter_203(),
    (213, 124, {28: f32(350.5), 60: f32(1000.0), 68: f32(2500.75), 26: f32(50.02),
                10: f32(231.2)}),
]
MODEL_IDS = [1, 101, 102, 103, 111, 112, 113, 120, 123, 124, 201, 202, 203, 204, 211, 212, 213,
             214, 160, 0, 0xFFFF, 0xFFFE]
LENGTHS = [0, 1, 2, 24, 26, 50, 60, 65, 66, 105, 124, 125, 0xFFFF]


def image_reader(image: dict[int, int]) -> sunspec.Reader:
    """A device holding ``image``: a read touching an absent register is exception 0x02
    (illegal data address), as the pymodbus server of the other tests answers."""
    def read(fc: int, address: int, count: int) -> list[int]:
        if not all(a in image for a in range(address, address + count)):
            raise ModbusReadError("fuzz", fc, address, count, 2, "")
        return [image[a] for a in range(address, address + count)]
    return read


def check_discovery(image: dict[int, int], *, layouts: bool = False) -> str:
    """Discover (and poll once) a device holding ``image``; the outcome's name."""
    read = image_reader(image)
    try:
        if layouts:  # the same steps as discover(), with the layouts YAML parsed once
            base = sunspec.find_base(read, LAYOUTS["bases"])
            found = sunspec.build_map(sunspec.walk(read, base), LAYOUTS)
        else:
            found = sunspec.discover(read)[2]
        words: dict[tuple[int, int], int] = {}
        for request in plan(found.points, defined=found.defined):
            for offset, word in enumerate(read(request.fc, request.address, request.count)):
                words[(request.fc, request.address + offset)] = word
    except (sunspec.DiscoveryError, MapError, ModbusReadError) as exc:
        assert str(exc)
        return type(exc).__name__
    values = decode_points(found.points, words)
    readings, rejected = build_readings("dev", found, values, TS)
    for reading in readings:
        for name in ("power_w", "energy_wh", "energy_returned_wh", "voltage_v", "current_a",
                     "frequency_hz", "power_factor"):
            value = getattr(reading, name)
            assert value is None or math.isfinite(value), (name, value)
    assert all(error.field for _data, error in rejected)
    return "readings" if readings else "no_readings"


BLOCKS = st.one_of(st.sampled_from(REAL_MODELS), st.tuples(
    st.sampled_from(MODEL_IDS) | st.integers(0, 0xFFFF), st.sampled_from(LENGTHS),
    st.dictionaries(st.integers(0, 130), st.lists(WORDS, min_size=1, max_size=4), max_size=6)))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from([40000, 0, 50000]), st.lists(BLOCKS, max_size=5),
       st.dictionaries(st.integers(0, 0xFFFF), WORDS, max_size=8), st.booleans())
def test_fuzz_sunspec_discovery(base, blocks, stray, cut):
    blocks = [(i, min(length, 300), v) for i, length, v in blocks]  # images stay small
    image = sunspec_image(base, blocks)
    image.update(stray)  # overwrites anything: marker, ids, lengths, the end marker
    if cut and image:  # the device's register space ends early
        del image[max(image)]
    check_discovery(image, layouts=True)


def test_the_real_sunspec_devices_give_readings():
    """The fuzz's starting points are themselves good devices (so the fuzz can fail)."""
    fronius = sunspec_image(40000, [REAL_MODELS[0], REAL_MODELS[3], REAL_MODELS[7]])
    solaredge = sunspec_image(0, [REAL_MODELS[1], REAL_MODELS[4]])
    sma = sunspec_image(50000, [REAL_MODELS[1], REAL_MODELS[5], REAL_MODELS[2], REAL_MODELS[8]])
    assert [check_discovery(i) for i in (fronius, solaredge, sma)] == ["readings"] * 3
    assert check_discovery({}) == "DiscoveryError"


@pytest.mark.long
@pytest.mark.timeout(3600)  # a million inputs on a shared machine
def test_long_fuzz_a_million_sunspec_devices():
    count = int(os.environ.get("IOE_FUZZ_INPUTS", "1000000"))
    rng = random.Random(20261204)
    specials = [0, 0xFFFF, 0x8000, 0x7FFF, 0x7F80, 0xFF80, 0x7FC0, 1, 0x5375, 0x6E53]
    outcomes: dict[str, int] = {}
    for _ in range(count):
        base = rng.choice([40000, 0, 50000])
        blocks = [rng.choice(REAL_MODELS) for _ in range(rng.randint(0, 4))]
        image = sunspec_image(base, blocks)
        addresses = sorted(image)
        for _ in range(rng.randint(0, 4)):  # a few words anywhere: ids, lengths, values
            address = rng.choice(addresses) if rng.random() < 0.9 else rng.randrange(0x10000)
            image[address] = rng.choice(specials) if rng.random() < 0.5 else rng.randrange(0x10000)
        if rng.random() < 0.1 and image:
            del image[rng.choice(addresses)]
        outcome = check_discovery(image, layouts=True)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"sunspec fuzz: {count} devices, 0 crashes, {outcomes}")
