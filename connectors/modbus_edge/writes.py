"""Writable points as data, and one checked write: bounds, scale, enable flag, revert, read-back.

Why a ``writable:`` section beside the read points instead of a flag on them: a setting is more
than a register. ``power_limit_pct`` on SunSpec is WMaxLimPct (scaled by WMaxLimPct_SF, read
from the device), which only takes effect once WMaxLim_Ena is 1, and which the inverter drops by
itself after WMaxLimPct_RvrtTms seconds unless renewed — the safe default when the link to the
edge is lost. The map says all of that once; this module only follows it.

Safety order of one write (:meth:`Writer.write`):

1. refuse before any I/O what the map does not allow: an unknown key, a value outside the range,
   ``none`` where nothing disables the setting, a revert longer than the register holds;
2. resolve the registers on the device (SunSpec: discover the models; a device without the model
   is refused, nothing written) and read the scale factor; refuse a value the register cannot
   represent;
3. write the revert timeout first (the limit never runs without its fallback), then the value,
   then the enable flag;
4. read everything back: ``ok`` only when the device holds what was asked. A point the maker
   documents as write-only (SMA's ``WO`` registers, ``write_only: true`` in the map) cannot be
   read back: the result says ``verified: false`` with no read-back, ``ok`` meaning only that
   the device accepted every register written.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connectors.modbus_edge import sunspec
from connectors.modbus_edge.device import (
    DeviceConfig,
    Link,
    ModbusReadError,
    read_registers,
)
from connectors.modbus_edge.maps import (
    TYPES,
    UNITS,
    MapError,
    Point,
    RegisterMap,
    decode_raw,
    parse_point,
    resolve_map_path,
)

NONE_WORDS = ("none", "null", "off_limit", "disable")


class WriteRefused(ValueError):
    """A write the map does not allow; raised before anything is written."""


class WriteLate(RuntimeError):
    """The deadline passed while waiting for the device (lock, discovery): nothing written."""


class ModbusWriteError(ModbusReadError):
    """A write request the device refused or did not answer."""


@dataclass(frozen=True)
class Companion:
    """A register written with the value: the enable flag or the revert timeout."""

    point: str | Point
    on: int | None = None
    off: int | None = None
    bit: int | None = None
    max: int | None = None


@dataclass(frozen=True)
class Writable:
    key: str
    point: str | Point
    model: int | None = None
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    #: named values of an enum setting ("on" -> 1)
    values: Mapping[str, int] = field(default_factory=dict)
    enable: Companion | None = None
    revert: Companion | None = None
    #: what ``none`` means: "disable" (enable flag off), a value, or None (not allowed)
    none: str | float | None = None
    description: str = ""
    #: the device does not let the value be read back (write-only registers)
    write_only: bool = False

    def check(self, value: float | str | None) -> float | int | None:
        """The value in engineering units (or the enum's raw value), or :class:`WriteRefused`."""
        if value is None:
            if self.none is None:
                raise WriteRefused(f"{self.key}: 'none' is not allowed (nothing disables it)")
            if self.none == "disable":
                return None
            return float(self.none)
        if self.values:
            word = str(value).lower()
            if word not in self.values:
                raise WriteRefused(f"{self.key}: value must be one of "
                                   f"{', '.join(self.values)}, got {value!r}")
            return int(self.values[word])
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise WriteRefused(f"{self.key}: {value!r} is not a number") from None
        if not math.isfinite(value):
            raise WriteRefused(f"{self.key}: {value!r} is not a finite number")
        low = -math.inf if self.minimum is None else self.minimum
        high = math.inf if self.maximum is None else self.maximum
        if not low <= value <= high:
            raise WriteRefused(f"{self.key}: {value:g} is outside the range "
                               f"[{low:g}, {high:g}] {self.unit}".rstrip())
        return float(value)


def parse_value(text: str) -> float | str | None:
    """``--set KEY=VALUE``'s value: a number, ``none``, or a word of an enum setting."""
    word = text.strip()
    if word.lower() in NONE_WORDS:
        return None
    try:
        return float(word)
    except ValueError:
        return word


# -- loading -----------------------------------------------------------------------------------
def _companion(raw: Any, where: str) -> Companion | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or "point" not in raw:
        raise MapError(f"{where}: needs a 'point'")
    point = raw["point"]
    if isinstance(point, Mapping):
        point = parse_point(point, where=where, default_sentinels=False)
    elif not isinstance(point, str):
        raise MapError(f"{where}: 'point' is a point name or an inline point")
    return Companion(point=point, on=raw.get("on"), off=raw.get("off"), bit=raw.get("bit"),
                     max=raw.get("max"))


def parse_writables(document: Mapping[str, Any], *, source: str = "<map>"
                    ) -> dict[str, Writable]:
    """The ``writable:`` section of a map document (empty when the map has none)."""
    section = document.get("writable") or {}
    if not isinstance(section, Mapping):
        raise MapError(f"{source}: 'writable' is a mapping of key -> setting")
    found: dict[str, Writable] = {}
    for key, raw in section.items():
        where = f"{source}: writable {key!r}"
        if not isinstance(raw, Mapping) or "point" not in raw:
            raise MapError(f"{where}: needs a 'point'")
        point = raw["point"]
        if isinstance(point, Mapping):
            point = parse_point(point, where=where, default_sentinels=False)
        bounds = raw.get("range")
        if bounds is not None and (not isinstance(bounds, list) or len(bounds) != 2):
            raise MapError(f"{where}: range is [min, max]")
        values = {str(k).lower(): int(v) for k, v in (raw.get("values") or {}).items()}
        found[str(key)] = Writable(
            key=str(key), point=point, model=raw.get("model"), unit=str(raw.get("unit", "")),
            minimum=float(bounds[0]) if bounds else None,
            maximum=float(bounds[1]) if bounds else None, values=values,
            enable=_companion(raw.get("enable"), f"{where} enable"),
            revert=_companion(raw.get("revert"), f"{where} revert"),
            none=raw.get("none"), description=str(raw.get("description", "")),
            write_only=bool(raw.get("write_only", False)))
    return found


def load_writables(name_or_path: str | Path) -> dict[str, Writable]:
    path = resolve_map_path(name_or_path)
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return parse_writables(document, source=str(path))


# -- encoding (pure) ---------------------------------------------------------------------------
def words_of(point: Point, raw: int) -> list[int]:
    """The registers holding ``raw`` for ``point`` (the inverse of :func:`maps.raw_bytes`)."""
    kind = TYPES[point.type]
    try:
        data = struct.pack(kind.fmt, raw)
    except struct.error:
        raise WriteRefused(f"{point.name}: raw value {raw} does not fit {point.type}") from None
    if point.byte_order == "little":
        data = b"".join(data[i + 1:i + 2] + data[i:i + 1] for i in range(0, len(data), 2))
    words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    if point.word_order == "little":
        words.reverse()
    return words


def step_of(point: Point, sf: int | None) -> float:
    """Engineering units of one raw count."""
    return point.gain * (10.0 ** (sf or 0)) * UNITS[point.unit]


def raw_of(point: Point, value: float, sf: int | None) -> int:
    """``value`` (engineering units) as the raw integer the register takes."""
    if point.type == "float32":
        raise WriteRefused(f"{point.name}: float registers are not written")
    raw = round(value / step_of(point, sf))
    unsigned = int.from_bytes(struct.pack(TYPES[point.type].fmt, raw), "big") if _fits(
        point, raw) else None
    if unsigned is None:
        raise WriteRefused(f"{point.name}: {value:g} needs raw {raw}, which {point.type} "
                           "cannot hold")
    if unsigned in point.sentinels:
        raise WriteRefused(f"{point.name}: raw {raw} is the 'no value' pattern")
    return raw


def _fits(point: Point, raw: int) -> bool:
    try:
        struct.pack(TYPES[point.type].fmt, raw)
    except struct.error:
        return False
    return True


# -- one write against a device ----------------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    """A writable's registers on one device."""

    target: Point
    scale: Point | None
    enable: Point | None
    revert: Point | None


@dataclass
class WriteResult:
    key: str
    requested: float | str | None
    readback: float | str | None
    ok: bool
    device: str
    unit: str = ""
    enabled: bool | None = None
    revert_s: int | None = None
    #: "written", "not_requested" or "unsupported" (the device has no revert timer)
    revert: str = "not_requested"
    written: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    duration_ms: int = 0
    #: False for a write-only point: accepted by the device, not read back
    verified: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "requested": self.requested, "readback": self.readback,
                "ok": self.ok, "device": self.device, "unit": self.unit,
                "enabled": self.enabled, "revert_s": self.revert_s, "revert": self.revert,
                "written": self.written, "error": self.error, "duration_ms": self.duration_ms,
                "verified": self.verified}


class Writer:
    """Writes the settings of one device through its map's ``writable`` section.

    Uses the device's :class:`Link` and holds its lock for the whole write + read-back, so a
    poll never interleaves with a half-written limit."""

    def __init__(self, device: DeviceConfig, link: Link,
                 writables: Mapping[str, Writable] | None = None) -> None:
        self.device = device
        self.link = link
        register_map = device.map
        if writables is None:
            if not isinstance(register_map, RegisterMap):
                writables = load_writables(str(register_map))
            else:
                writables = load_writables(register_map.source)
        self.writables = dict(writables)
        self._found: RegisterMap | None = None

    def writable(self, key: str) -> Writable:
        found = self.writables.get(key)
        if found is None:
            known = ", ".join(sorted(self.writables)) or "none"
            raise WriteRefused(f"{key!r} is not a writable point of this map "
                               f"(writable: {known})")
        return found

    # -- register helpers (link lock held) ---------------------------------------------------
    def _read(self, fc: int, address: int, count: int) -> list[int]:
        return read_registers(self.link, self.device, fc, address, count)

    def _write(self, address: int, words: Sequence[int]) -> None:
        device = self.device
        try:
            client = self.link.ensure_connected(device)
            response = client.write_registers(address, list(words), device_id=device.unit)
        except ModbusReadError:
            raise
        except Exception as exc:  # noqa: BLE001 - pymodbus and socket errors alike
            self.link.close()
            raise ModbusWriteError(device.id, 16, address, len(words), None,
                                   f"{type(exc).__name__}: {exc}") from None
        if response.isError():
            raise ModbusWriteError(device.id, 16, address, len(words),
                                   getattr(response, "exception_code", None), "exception reply")

    def _raw(self, point: Point) -> int | float | str | None:
        return decode_raw(point, self._read(point.fc, point.address, point.words))

    def _map(self) -> RegisterMap:
        register_map = self.device.map
        if isinstance(register_map, RegisterMap) and not register_map.discovery:
            return register_map
        if self._found is None:
            _, _, self._found = sunspec.discover(self._read)
        return self._found

    def _point(self, ref: str | Point, model: int | None, register_map: RegisterMap) -> Point:
        if isinstance(ref, Point):
            return ref
        if model is not None:
            suffix = f".{ref}"
            found = next((p for p in register_map.points
                          if p.name.startswith(f"{model}@") and p.name.endswith(suffix)), None)
            if found is None:
                raise WriteRefused(f"the device has no SunSpec model {model} (needed for {ref})")
            return found
        point = register_map.point(ref)
        if point is None:
            raise WriteRefused(f"the map has no point {ref!r}")
        return point

    def resolve(self, writable: Writable) -> Resolved:
        register_map = self._map()
        target = self._point(writable.point, writable.model, register_map)
        scale = register_map.point(target.scale_factor) if target.scale_factor else None
        enable = (self._point(writable.enable.point, writable.model, register_map)
                  if writable.enable else None)
        revert = (self._point(writable.revert.point, writable.model, register_map)
                  if writable.revert else None)
        return Resolved(target, scale, enable, revert)

    # -- the write ---------------------------------------------------------------------------
    def write(self, key: str, value: float | str | None, revert_s: int | None = None,
              not_after_ms: int | None = None) -> WriteResult:
        """Write one setting and read it back. Raises :class:`WriteRefused` (nothing written)
        or :class:`ModbusReadError`; a mismatching read-back is a result with ``ok`` false."""
        started = time.monotonic()
        writable = self.writable(key)
        checked = writable.check(value)
        if revert_s is not None:
            if writable.revert is None:
                revert_s = None  # reported as "unsupported" below
            elif not 0 <= revert_s <= (writable.revert.max or 0xFFFF):
                raise WriteRefused(f"{key}: revert {revert_s} s is outside "
                                   f"[0, {writable.revert.max or 0xFFFF}] s")
        requested_revert = revert_s
        with self.link.lock:
            resolved = self.resolve(writable)
            sf = self._scale(resolved)
            plan: list[tuple[Point, list[int]]] = []
            if requested_revert is not None and resolved.revert is not None:
                plan.append((resolved.revert, words_of(resolved.revert, int(requested_revert))))
            if checked is not None:
                raw = (int(checked) if writable.values
                       else raw_of(resolved.target, float(checked), sf))
                plan.append((resolved.target, words_of(resolved.target, raw)))
            if resolved.enable is not None and writable.enable is not None:
                flag = self._enable_word(writable.enable, resolved.enable, checked is not None)
                plan.append((resolved.enable, words_of(resolved.enable, flag)))
            if not_after_ms is not None and time.time() * 1000 > not_after_ms:
                raise WriteLate(f"deadline {not_after_ms} passed before the first write")
            written = []
            for point, words in plan:
                self._write(point.address, words)
                written.append({"point": point.name.rsplit(".", 1)[-1],
                                "address": point.address, "registers": words})
            result = self._readback(writable, resolved, sf, checked, requested_revert)
        result.written = written
        result.requested = (value if writable.values or value is None
                            else _number(float(value)))
        if revert_s is None and writable.revert is None:
            result.revert = "unsupported"
        result.duration_ms = int((time.monotonic() - started) * 1000)
        return result

    def read(self, key: str) -> WriteResult:
        """The current value of a setting (no write): what the control centre shows."""
        writable = self.writable(key)
        with self.link.lock:
            resolved = self.resolve(writable)
            sf = self._scale(resolved)
            result = self._readback(writable, resolved, sf, None, None)
        result.ok = True
        return result

    def _scale(self, resolved: Resolved) -> int | None:
        if resolved.scale is None:
            return None
        sf = self._raw(resolved.scale)
        if sf is None or isinstance(sf, str | float) or not -10 <= int(sf) <= 10:
            raise WriteRefused(f"{resolved.target.name}: scale factor is unknown ({sf!r})")
        return int(sf)

    def _enable_word(self, companion: Companion, point: Point, on: bool) -> int:
        if companion.bit is None:
            word = companion.on if on else companion.off
            if word is None:
                raise WriteRefused(f"{point.name}: the map gives no value to write")
            return int(word)
        current = self._raw(point)
        current_int = 0 if current is None or isinstance(current, str | float) else int(current)
        mask = 1 << int(companion.bit)
        return current_int | mask if on else current_int & ~mask

    def _enabled(self, companion: Companion, point: Point) -> bool | None:
        raw = self._raw(point)
        if raw is None or isinstance(raw, str | float):
            return None
        if companion.bit is not None:
            return bool(int(raw) >> int(companion.bit) & 1)
        return int(raw) == companion.on

    def _readback(self, writable: Writable, resolved: Resolved, sf: int | None,
                  checked: float | int | None, revert_s: int | None) -> WriteResult:
        if writable.write_only:  # every write above was accepted; nothing can be read
            return WriteResult(key=writable.key, requested=None, readback=None, ok=True,
                               device=self.device.id, unit=writable.unit, verified=False,
                               revert="written" if revert_s is not None else "not_requested")
        raw = self._raw(resolved.target)
        readback: float | str | None
        if raw is None or isinstance(raw, str):
            readback = raw
        elif writable.values:
            names = {v: k for k, v in writable.values.items()}
            readback = names.get(int(raw), str(raw))
        else:
            readback = _number(float(raw) * step_of(resolved.target, sf))
        enabled = (self._enabled(writable.enable, resolved.enable)
                   if writable.enable is not None and resolved.enable is not None else None)
        revert_read = None
        if resolved.revert is not None:
            value = self._raw(resolved.revert)
            revert_read = int(value) if isinstance(value, int) else None
        ok = True
        if checked is None:
            ok = enabled is False if writable.enable is not None else True
        elif writable.values:
            ok = raw == checked
        else:
            step = step_of(resolved.target, sf)
            ok = (isinstance(readback, float | int)
                  and abs(float(readback) - float(checked)) <= step / 2 + 1e-9)
            if writable.enable is not None:
                ok = ok and enabled is True
        if revert_s is not None:
            ok = ok and revert_read == revert_s
        if writable.enable is not None and enabled is False:
            readback = None  # a disabled limit limits nothing
        return WriteResult(key=writable.key, requested=None, readback=readback, ok=ok,
                           device=self.device.id, unit=writable.unit, enabled=enabled,
                           revert_s=revert_read,
                           revert="written" if revert_s is not None else "not_requested")


def _number(value: float) -> float | int:
    """50.0 -> 50 in the JSON line (the issue's contract prints ``"readback": 50``)."""
    rounded = round(value, 6)
    return int(rounded) if rounded == int(rounded) else rounded


# -- ``ioe modbus-edge write`` -----------------------------------------------------------------
REFUSED = 2


def parse_setting(text: str) -> tuple[str, float | str | None]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise WriteRefused(f"--set {text!r}: expected KEY=VALUE")
    return key.strip(), parse_value(value)


def write_command(args: Any) -> int:
    """One JSON line per ``--set`` on stdout; refusals and failures also say why on stderr and
    exit 2. A refused setting writes nothing (every ``--set`` is checked before the first)."""
    import sys

    import orjson

    from connectors.modbus_edge.maps import load_map

    def emit(payload: dict[str, Any]) -> None:
        sys.stdout.write(orjson.dumps(payload).decode() + "\n")
        sys.stdout.flush()

    try:
        register_map = load_map(args.map)
        writables = load_writables(args.map)
    except MapError as exc:
        print(f"modbus-edge write: {exc}", file=sys.stderr)
        return REFUSED
    settings: dict[str, Any] = {k: v for k, v in register_map.defaults.items()
                                if k in ("unit", "delay_after_connect_s", "max_registers")}
    if args.unit is not None:
        settings["unit"] = args.unit
    unit = settings.get("unit", 1)
    device = DeviceConfig(id=args.device_id or f"{args.host}:{args.port}:{unit}",
                          map=register_map, host=args.host, port=args.port,
                          timeout_s=args.timeout, **settings)
    writer = Writer(device, Link(device), writables)
    try:
        wanted = [parse_setting(text) for text in args.settings]
        for key, value in wanted:  # all refusals before the first write
            writer.writable(key).check(value)
    except WriteRefused as exc:
        print(f"modbus-edge write: refused, nothing written: {exc}", file=sys.stderr)
        emit({"key": None, "ok": False, "error": f"refused: {exc}", "device": device.id})
        return REFUSED
    code = 0
    try:
        for key, value in wanted:
            try:
                result = writer.write(key, value, args.revert_s)
            except WriteRefused as exc:
                print(f"modbus-edge write: refused: {exc}", file=sys.stderr)
                emit({"key": key, "requested": _shown(value), "ok": False,
                      "error": f"refused: {exc}", "device": device.id})
                return REFUSED
            except ModbusReadError as exc:
                code_text = f"0x{exc.code:02X}" if exc.code is not None else "none"
                print(f"modbus error: device {exc.device} fc {exc.fc} address {exc.address} "
                      f"count {exc.count} exception code {code_text}: {exc}", file=sys.stderr)
                emit({"key": key, "requested": _shown(value), "ok": False, "error": str(exc),
                      "device": device.id})
                return REFUSED
            except Exception as exc:  # noqa: BLE001 - discovery errors and the like
                print(f"modbus error: {type(exc).__name__}: {exc}", file=sys.stderr)
                emit({"key": key, "requested": _shown(value), "ok": False,
                      "error": f"{type(exc).__name__}: {exc}", "device": device.id})
                return REFUSED
            emit(result.to_dict())
            if not result.ok:
                print(f"modbus-edge write: {key}: read back {result.readback!r} "
                      f"(enabled {result.enabled}), asked {result.requested!r}",
                      file=sys.stderr)
                code = REFUSED
    finally:
        writer.link.close()
    return code


def _shown(value: float | str | None) -> float | int | str | None:
    return _number(value) if isinstance(value, float) else value
