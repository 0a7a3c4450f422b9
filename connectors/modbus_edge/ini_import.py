"""Import the INI configuration of the previous edge program (eco_modbus_tcp).

That program ``exec``-uted pieces of its configuration (``Endian.Big``, ``decode_32bit_float``);
here every value goes through a lookup table and anything unknown is an error naming the
section, so a configuration file can never run code. Sections with ``url`` are devices
(``url/port/unit/byteorder/wordorder``), sections with ``server`` are points
(``server/start/registers/tipe``; the old program read holding registers only). Optional
``field``, ``unit`` and ``gain`` keys in a point section override the guesses below. The
``[emoncms]`` section (it holds an API key) is ignored and never echoed.
"""

from __future__ import annotations

import configparser
import logging
from pathlib import Path
from typing import Any

from connectors.modbus_edge.maps import FIELDS, UNITS

log = logging.getLogger(__name__)

#: the old BinaryPayloadDecoder method names -> our point types
TIPES: dict[str, str] = {
    "16bit_uint": "uint16", "16bit_int": "int16", "32bit_uint": "uint32",
    "32bit_int": "int32", "64bit_uint": "uint64", "32bit_float": "float32",
    "string": "string",
}
#: the old pymodbus Endian constants (as written in the INI) -> our orders
ORDERS: dict[str, str] = {
    "endian.big": "big", "endian.little": "little", "big": "big", "little": "little",
    ">": "big", "<": "little",
}
#: point section names -> contract field (first keyword found wins: specific before generic)
FIELD_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("export", "energy_returned_wh"), ("vertid", "energy_returned_wh"),
    ("inyect", "energy_returned_wh"), ("energ", "energy_wh"), ("yield", "energy_wh"),
    ("kwh", "energy_wh"), ("potencia", "power_w"), ("power", "power_w"),
    ("tension", "voltage_v"), ("voltage", "voltage_v"), ("voltaje", "voltage_v"),
    ("corriente", "current_a"), ("intensidad", "current_a"), ("current", "current_a"),
    ("frecuencia", "frequency_hz"), ("frequency", "frequency_hz"),
)
DEFAULT_UNITS = {"power_w": "W", "energy_wh": "kWh", "energy_returned_wh": "kWh",
                 "voltage_v": "V", "current_a": "A", "frequency_hz": "Hz"}


class IniImportError(ValueError):
    pass


def _lookup(table: dict[str, str], value: str, what: str, section: str) -> str:
    found = table.get(value.strip().lower() if table is ORDERS else value.strip())
    if found is None:
        raise IniImportError(f"[{section}] {what} = {value!r} is not one of "
                             f"{', '.join(sorted(table))}")
    return found


def guess_field(name: str) -> str | None:
    lowered = name.lower()
    return next((f for word, f in FIELD_KEYWORDS if word in lowered), None)


def _int(parser: configparser.ConfigParser, section: str, key: str,
         default: int | None = None) -> int:
    raw = parser.get(section, key, fallback=None)
    if raw is None:
        if default is None:
            raise IniImportError(f"[{section}] missing {key}")
        return default
    try:
        return int(raw.strip(), 0)
    except ValueError:
        raise IniImportError(f"[{section}] {key} = {raw!r} is not an integer") from None


def import_ini(text: str, *, source: str = "eco_modbus_tcp") -> dict[str, Any]:
    """INI text -> the ``devices`` part of an edge config (plain data, ready for YAML)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    devices: dict[str, dict[str, Any]] = {}
    for section in parser.sections():
        if parser.has_option(section, "url"):
            byte_order = _lookup(ORDERS, parser.get(section, "byteorder", fallback="big"),
                                 "byteorder", section)
            word_order = _lookup(ORDERS, parser.get(section, "wordorder", fallback="big"),
                                 "wordorder", section)
            devices[section] = {
                "id": section, "host": parser.get(section, "url").strip(),
                "port": _int(parser, section, "port", 502),
                "unit": _int(parser, section, "unit", 1),
                "map": {"name": section, "source": "modbus", "fc": "holding", "points": []},
                "_orders": (byte_order, word_order),
            }
    for section in parser.sections():
        if not parser.has_option(section, "server"):
            continue
        server = parser.get(section, "server").strip()
        if server not in devices:
            raise IniImportError(f"[{section}] server = {server!r} is not a device section")
        device = devices[server]
        byte_order, word_order = device["_orders"]
        kind = _lookup(TIPES, parser.get(section, "tipe", fallback=""), "tipe", section)
        point: dict[str, Any] = {
            "name": section, "address": _int(parser, section, "start"), "type": kind,
            "word_order": word_order, "byte_order": byte_order,
        }
        registers = _int(parser, section, "registers")
        if kind == "string":
            point["words"] = registers
        target = parser.get(section, "field", fallback=None) or guess_field(section)
        if target is not None:
            if target not in FIELDS:
                raise IniImportError(f"[{section}] field = {target!r} is not a contract field")
            point["field"] = target
            point["unit"] = parser.get(section, "unit", fallback=DEFAULT_UNITS.get(target, ""))
        elif parser.has_option(section, "unit"):
            point["unit"] = parser.get(section, "unit")
        if point.get("unit", "") not in UNITS:
            raise IniImportError(f"[{section}] unit = {point['unit']!r} is not known")
        if parser.has_option(section, "gain"):
            try:
                point["gain"] = float(parser.get(section, "gain"))
            except ValueError:
                raise IniImportError(f"[{section}] gain is not a number") from None
        if target is None:
            log.warning("[%s]: no contract field guessed; kept as an internal point", section)
        device["map"]["points"].append(point)
    for device in devices.values():
        device.pop("_orders")
    empty = [d for d, v in devices.items() if not v["map"]["points"]]
    for name in empty:
        log.warning("[%s]: device without points, skipped", name)
        devices.pop(name)
    return {"devices": list(devices.values())}


def import_ini_file(path: str | Path) -> dict[str, Any]:
    return import_ini(Path(path).read_text(encoding="utf-8"), source=str(path))
