"""Import the INI configuration of the previous edge program (eco_modbus_tcp).

That program ``exec``-uted pieces of its configuration (``Endian.Big``, ``decode_32bit_float``);
here every value goes through a lookup table and anything unknown is an error naming the
section, so a configuration file can never run code. Sections with ``url`` are devices
(``url/port/unit/byteorder/wordorder``), sections with ``server`` are points
(``server/start/registers/tipe``; the old program read holding registers only). Optional
``field``, ``unit`` and ``gain`` keys in a point section (or ``--field NAME=FIELD[:UNIT]`` on
the command line) override the guesses below. The ``[emoncms]`` section (it holds an API key) is
ignored and never echoed.

Guesses, in order:

1. The predecessor's own naming convention ``<where>_<quantity>`` (``fr_pow``, ``cn_pow``,
   ``bm_pow``, ``fr_ener_h``, ``fr_acw``, ``fr_acwh``). ``<where>`` names the measuring point
   and becomes the reading's *channel* (device ``<section>:<where>``), so the values of
   different points of one Modbus server are never mixed into one reading: ``fr`` = frontera
   (the grid connection), ``cn`` = consumo (the consumption), ``bm`` = bomba (a pump / heat
   pump circuit, which the predecessor's README lists among the devices it read). The registry
   gives each channel device its role. ``<quantity>``: ``pow`` and ``acw`` are active power in
   W, ``acwh`` the active energy counter in Wh. ``ener_h`` is the energy of the last hour, not a
   cumulative counter: no contract field carries it, so it stays an internal point (the reading
   contract's counters would see a "reset" every hour). A second point for a quantity a
   channel already has (``fr_acw`` beside ``fr_pow``) stays internal too.
2. Keywords in Spanish and English names (``potencia_activa``, ``energia_exportada``…).

Every point that stays internal is reported with the hint to map it with ``--field``, and a
configuration in which *no* point feeds a contract field is an error: it would poll happily
and publish nothing.
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
#: the predecessor's ``<where>_<quantity>`` names: where -> channel, quantity -> (field, unit);
#: a quantity mapped to None is known and deliberately not a contract field
CONVENTION_CHANNELS = {"fr": "fr", "cn": "cn", "bm": "bm"}
CONVENTION_QUANTITIES: dict[str, tuple[str, str] | None] = {
    "pow": ("power_w", "W"), "acw": ("power_w", "W"), "acwh": ("energy_wh", "Wh"),
    "ener_h": None,
}
WHY_UNMAPPED = {"ener_h": "energy of the last hour, not a cumulative counter"}
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


def convention(name: str) -> tuple[str, tuple[str, str] | None, str] | None:
    """``fr_acwh`` -> (channel "fr", (field, unit) or None, quantity) by the predecessor's
    naming convention; None when the name does not follow it."""
    where, sep, quantity = name.lower().partition("_")
    if not sep or where not in CONVENTION_CHANNELS or quantity not in CONVENTION_QUANTITIES:
        return None
    return CONVENTION_CHANNELS[where], CONVENTION_QUANTITIES[quantity], quantity


def parse_field_option(text: str) -> tuple[str, str, str | None]:
    """``--field fr_ener_h=energy_wh:kWh`` -> (point, field, unit or None)."""
    name, sep, target = text.partition("=")
    field, _, unit = target.partition(":")
    if not sep or not name.strip() or field.strip() not in FIELDS:
        raise IniImportError(f"--field {text!r}: expected POINT=FIELD[:UNIT] with FIELD one of "
                             f"{', '.join(FIELDS)}")
    if unit and unit not in UNITS:
        raise IniImportError(f"--field {text!r}: unit {unit!r} is not known")
    return name.strip(), field.strip(), unit or None


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


def import_ini(text: str, *, source: str = "eco_modbus_tcp",
               fields: dict[str, tuple[str, str | None]] | None = None,
               unmapped: list[str] | None = None) -> dict[str, Any]:
    """INI text -> the ``devices`` part of an edge config (plain data, ready for YAML).

    ``fields``: point name -> (contract field, unit or None), the ``--field`` overrides.
    ``unmapped`` (filled in): one line per point kept internal, with the reason and the fix.
    """
    overrides = dict(fields or {})
    notes = unmapped if unmapped is not None else []
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:  # no section header, duplicate keys, broken lines
        raise IniImportError(f"{source}: not an INI file: {exc}") from None
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
                "_fed": {},  # (channel, field) -> the point that feeds it
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
        target, unit, channel, why = _target(parser, section, overrides)
        if target is not None and (channel, target) in device["_fed"]:
            why = (f"{device['_fed'][(channel, target)]} already gives {target}"
                   f"{' of channel ' + channel if channel else ''}")
            target, unit = None, None
        if channel:
            point["channel"] = channel
        if target is not None:
            if target not in FIELDS:
                raise IniImportError(f"[{section}] field = {target!r} is not a contract field")
            point["field"] = target
            point["unit"] = unit if unit is not None else DEFAULT_UNITS.get(target, "")
            device["_fed"][(channel, target)] = section
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
            note = (f"[{section}]: {why or 'no contract field guessed'}; kept as an internal "
                    f"point (map it with --field {section}=FIELD[:UNIT])")
            log.warning("%s", note)
            notes.append(note)
        device["map"]["points"].append(point)
    unknown = sorted(set(overrides) - {p["name"] for d in devices.values()
                                       for p in d["map"]["points"]})
    if unknown:
        raise IniImportError(f"--field names no point section: {', '.join(unknown)}")
    for device in devices.values():
        device.pop("_orders")
        device.pop("_fed")
    empty = [d for d, v in devices.items() if not v["map"]["points"]]
    for name in empty:
        log.warning("[%s]: device without points, skipped", name)
        devices.pop(name)
    if not any(p.get("field") for d in devices.values() for p in d["map"]["points"]):
        raise IniImportError(f"{source}: no point feeds a contract field, so the edge would "
                             "publish nothing; " + ("; ".join(notes) or "no point sections"))
    return {"devices": list(devices.values())}


def _target(parser: configparser.ConfigParser, section: str,
            overrides: dict[str, tuple[str, str | None]],
            ) -> tuple[str | None, str | None, str, str | None]:
    """(field, unit, channel, why unmapped) of a point: explicit beats convention beats
    keywords."""
    by_convention = convention(section)
    channel = by_convention[0] if by_convention else ""
    if section in overrides:
        field, unit = overrides[section]
        return field, unit if unit is not None else parser.get(section, "unit", fallback=None), (
            channel), None
    if parser.has_option(section, "field"):
        return (parser.get(section, "field"), parser.get(section, "unit", fallback=None),
                channel, None)
    if by_convention is not None:
        _, target, quantity = by_convention
        if target is None:
            return None, None, channel, WHY_UNMAPPED.get(quantity, "not a contract quantity")
        return target[0], parser.get(section, "unit", fallback=target[1]), channel, None
    guessed = guess_field(section)
    return guessed, parser.get(section, "unit", fallback=None) if guessed else None, "", None


def import_ini_file(path: str | Path, **options: Any) -> dict[str, Any]:
    return import_ini(Path(path).read_text(encoding="utf-8"), source=str(path), **options)
