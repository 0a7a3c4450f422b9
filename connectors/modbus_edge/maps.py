"""Register maps as data: a map is a YAML file listing points, decoded by one table of types.

Why data and not code: every inverter brand numbers its registers differently, and an
installer must be able to add a meter without a release. A point says *where* a value lives
(function code, 0-based address), *how* it is encoded (type, word/byte order), *how* to scale it
(constant gain or a SunSpec scale-factor point) and *what* it means (contract field and unit).
Sentinels ("not implemented") decode to ``None`` so a missing value is never reported as 0.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

import yaml

MAPS_DIR = Path(__file__).resolve().parent / "maps"

#: contract fields a point may feed (DESIGN.md §3); ``None`` = internal (scale factors, strings)
FIELDS = ("power_w", "energy_wh", "energy_returned_wh", "voltage_v", "current_a",
          "frequency_hz", "power_factor", "status")

#: unit of the scaled raw value -> factor to the contract unit (W, Wh, V, A, Hz, PF as 0..1)
UNITS: dict[str, float] = {
    "W": 1.0, "kW": 1000.0, "Wh": 1.0, "kWh": 1000.0, "MWh": 1_000_000.0,
    "V": 1.0, "A": 1.0, "mA": 0.001, "Hz": 1.0, "Pct": 0.01, "1": 1.0, "": 1.0,
}


class MapError(ValueError):
    """A map file that cannot be used; the message names the file and the point."""


@dataclass(frozen=True)
class PointType:
    words: int
    fmt: str  # struct format of the big-endian byte string of all words
    #: default "no value" raw patterns (SunSpec and most vendors)
    sentinels: tuple[int, ...] = ()


#: one table decides the width, the encoding and the default sentinels of every type
TYPES: dict[str, PointType] = {
    "uint16": PointType(1, ">H", (0xFFFF,)),
    "int16": PointType(1, ">h", (0x8000,)),
    "enum16": PointType(1, ">H", (0xFFFF,)),
    "sunssf": PointType(1, ">h", (0x8000,)),
    "uint32": PointType(2, ">I", (0xFFFFFFFF,)),
    "int32": PointType(2, ">i", (0x80000000,)),
    "acc32": PointType(2, ">I", (0,)),
    "uint64": PointType(4, ">Q", (0xFFFFFFFFFFFFFFFF,)),
    "float32": PointType(2, ">f", ()),
    "string": PointType(0, "", ()),
}


@dataclass(frozen=True)
class Point:
    name: str
    address: int
    type: str
    fc: int = 3
    field: str | None = None
    words: int = 1
    word_order: str = "big"
    byte_order: str = "big"
    gain: float = 1.0
    scale_factor: str | None = None
    unit: str = ""
    sentinels: tuple[int, ...] = ()
    enum: Mapping[int, str] = dc_field(default_factory=dict)
    #: readings of one device are split by channel: "" -> the device id, "meter" -> "<id>:meter"
    channel: str = ""

    @property
    def end(self) -> int:
        return self.address + self.words


@dataclass(frozen=True)
class RegisterMap:
    name: str
    source: str
    points: tuple[Point, ...]
    #: address ranges (fc, start, end-exclusive) the device is known to answer in full, so the
    #: planner may read across the unused registers inside them
    defined: tuple[tuple[int, int, int], ...] = ()
    #: map defaults for device settings (unit id, delay after connect, …)
    defaults: Mapping[str, Any] = dc_field(default_factory=dict)
    #: "sunspec" = discover the models at run time instead of using ``points``
    discovery: str | None = None

    def point(self, name: str) -> Point | None:
        return next((p for p in self.points if p.name == name), None)


# -- decoding (pure) ---------------------------------------------------------------------------
def raw_bytes(registers: Sequence[int], word_order: str, byte_order: str) -> bytes:
    """The big-endian byte string of the value, whatever order the device sends words in."""
    words = list(registers)
    if word_order == "little":
        words.reverse()
    data = b"".join(int(w & 0xFFFF).to_bytes(2, "big") for w in words)
    if byte_order == "little":
        data = b"".join(data[i + 1:i + 2] + data[i:i + 1] for i in range(0, len(data), 2))
    return data


def decode_raw(point: Point, registers: Sequence[int]) -> int | float | str | None:
    """Decode the registers of one point into its raw (unscaled) value, or None (sentinel)."""
    data = raw_bytes(registers, point.word_order, point.byte_order)
    if point.type == "string":
        text = data.split(b"\x00", 1)[0].decode("utf-8", errors="replace").strip()
        return text or None
    kind = TYPES[point.type]
    value = struct.unpack(kind.fmt, data)[0]
    if point.type == "float32":
        return None if not math.isfinite(value) else float(value)
    unsigned = int.from_bytes(data, "big")
    if unsigned in point.sentinels:
        return None
    return int(value)


def scaled(point: Point, raw: int | float | str | None,
           factors: Mapping[str, int | float | str | None]) -> float | str | None:
    """Apply gain, scale factor and unit so the value is in contract units."""
    if raw is None:
        return None
    if point.enum:
        return point.enum.get(int(raw), str(raw))
    if isinstance(raw, str) or point.type in ("sunssf",):
        return raw
    value = float(raw) * point.gain
    if point.scale_factor is not None:
        sf = factors.get(point.scale_factor)
        if sf is None or isinstance(sf, str) or not -10 <= int(sf) <= 10:
            return None  # a value whose scale is unknown (or outside SunSpec's ±10) is no value
        value *= 10.0 ** int(sf)
    return value * UNITS[point.unit]


def decode_points(points: Sequence[Point], registers: Mapping[tuple[int, int], int]
                  ) -> dict[str, float | str | None]:
    """Decode every point whose registers were read; ``registers`` maps (fc, address) -> word."""
    raws: dict[str, int | float | str | None] = {}
    for point in points:
        words = [registers.get((point.fc, a)) for a in range(point.address, point.end)]
        if any(w is None for w in words):
            continue
        raws[point.name] = decode_raw(point, [int(w) for w in words if w is not None])
    return {p.name: scaled(p, raws[p.name], raws) for p in points if p.name in raws}


# -- loading -----------------------------------------------------------------------------------
def resolve_map_path(name_or_path: str | Path) -> Path:
    """A shipped map name (``sunspec``, ``sdm630`` …) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    shipped = MAPS_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    known = ", ".join(sorted(p.stem for p in MAPS_DIR.glob("*.yaml")))
    raise MapError(f"unknown map {name_or_path!r} (shipped maps: {known}; or give a .yaml path)")


def load_map(name_or_path: str | Path) -> RegisterMap:
    path = resolve_map_path(name_or_path)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return parse_map(document, source=str(path))


FC_NAMES = {"holding": 3, "input": 4, 3: 3, 4: 4}


def parse_point(raw: Mapping[str, Any], *, where: str, default_fc: int = 3,
                default_word_order: str = "big", offset: int = 0,
                default_sentinels: bool = True) -> Point:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise MapError(f"{where}: a point needs a 'name'")
    where = f"{where}: point {name!r}"
    kind = raw.get("type")
    if kind not in TYPES:
        raise MapError(f"{where}: type must be one of {', '.join(TYPES)}, got {kind!r}")
    fc = FC_NAMES.get(raw.get("fc", default_fc))
    if fc is None:
        raise MapError(f"{where}: fc must be 3/holding or 4/input")
    address = raw.get("address")
    if not isinstance(address, int) or address < 0 or address + offset > 0xFFFF:
        raise MapError(f"{where}: address must be a 0-based register number")
    words = TYPES[kind].words or raw.get("words")
    if not isinstance(words, int) or words <= 0:
        raise MapError(f"{where}: a string needs 'words' (its length in registers)")
    target = raw.get("field")
    if target is not None and target not in FIELDS:
        raise MapError(f"{where}: field must be one of {', '.join(FIELDS)}")
    unit = str(raw.get("unit", ""))
    if unit not in UNITS:
        raise MapError(f"{where}: unit must be one of {', '.join(u for u in UNITS if u)}")
    order = raw.get("word_order", default_word_order)
    byte_order = raw.get("byte_order", "big")
    if order not in ("big", "little") or byte_order not in ("big", "little"):
        raise MapError(f"{where}: word_order/byte_order must be big or little")
    sentinel = raw.get("sentinel", None)
    if sentinel is None:
        sentinels = TYPES[kind].sentinels if default_sentinels else ()
    else:
        values = sentinel if isinstance(sentinel, list) else [sentinel]
        sentinels = tuple(int(v) for v in values)
    gain = raw.get("gain", 1)
    if not isinstance(gain, int | float) or isinstance(gain, bool):
        raise MapError(f"{where}: gain must be a number")
    enum = raw.get("enum") or {}
    return Point(
        name=name, address=address + offset, type=kind, fc=fc, field=target, words=words,
        word_order=order, byte_order=byte_order, gain=float(gain),
        scale_factor=raw.get("scale_factor"), unit=unit, sentinels=sentinels,
        enum={int(k): str(v) for k, v in enum.items()}, channel=str(raw.get("channel", "")),
    )


def parse_map(document: Any, *, source: str = "<map>") -> RegisterMap:
    """A map document, checked; anything malformed is a :class:`MapError` naming the file
    (a YAML map is hand-written: a list where a mapping belongs must not crash the edge)."""
    try:
        return _parse_map(document, source=source)
    except MapError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        raise MapError(f"{source}: malformed map ({type(exc).__name__}: {exc})") from None


def _parse_map(document: Any, *, source: str = "<map>") -> RegisterMap:
    if not isinstance(document, dict):
        raise MapError(f"{source}: a map is a YAML mapping")
    name = str(document.get("name") or Path(source).stem)
    default_fc = FC_NAMES.get(document.get("fc", 3), 3)
    order = document.get("word_order", "big")
    points = tuple(
        parse_point(p, where=source, default_fc=default_fc, default_word_order=order,
                    default_sentinels=bool(document.get("default_sentinels", False)))
        for p in document.get("points", []) or []
    )
    names = [p.name for p in points]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise MapError(f"{source}: duplicate point names {sorted(duplicates)}")
    for p in points:
        if p.scale_factor is not None and p.scale_factor not in names:
            raise MapError(f"{source}: point {p.name!r} names unknown scale factor "
                           f"{p.scale_factor!r}")
    defined = tuple((FC_NAMES.get(d.get("fc", default_fc), 3), int(d["start"]), int(d["end"]))
                    for d in document.get("defined", []) or [])
    discovery = document.get("discovery")
    if not points and discovery is None:
        raise MapError(f"{source}: a map needs points (or discovery: sunspec)")
    return RegisterMap(name=name, source=str(document.get("source", name)), points=points,
                       defined=defined, defaults=dict(document.get("defaults", {}) or {}),
                       discovery=discovery)
