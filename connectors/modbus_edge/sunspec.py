"""SunSpec discovery: find the marker, walk the model chain, build a map of the models found.

A SunSpec device describes itself, so the agent never guesses a base address or a model
length: it reads ``SunS`` at 40000, then 0, then 50000, then follows each model's length ``L``
to the next one until ``0xFFFF``. The layouts of the supported models are data
(``maps/sunspec.yaml``); each model block becomes a ``defined`` range, which lets the planner
read a value and its scale factor in one request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from connectors.modbus_edge.maps import MAPS_DIR, MapError, Point, RegisterMap, parse_point

log = logging.getLogger(__name__)

MARKER = (0x5375, 0x6E53)  # "SunS"
END = 0xFFFF
MAX_MODELS = 64
#: read(fc, address, count) -> registers; raises on a Modbus error
Reader = Callable[[int, int, int], Sequence[int]]


class DiscoveryError(RuntimeError):
    pass


@dataclass(frozen=True)
class Model:
    id: int
    start: int  # address of the model ID register
    length: int  # L: registers after ID and L

    @property
    def end(self) -> int:
        return self.start + 2 + self.length


def load_layouts() -> dict[str, Any]:
    document = yaml.safe_load((MAPS_DIR / "sunspec.yaml").read_text(encoding="utf-8"))
    return dict(document)


def find_base(read: Reader, bases: Sequence[int]) -> int:
    """The first base address holding the ``SunS`` marker (errors at a base mean 'not here')."""
    failures = []
    for base in bases:
        try:
            regs = read(3, base, 2)
        except Exception as exc:  # noqa: BLE001 - an exception reply just means "not at this base"
            failures.append(f"{base}: {exc}")
            continue
        if tuple(regs[:2]) == MARKER:
            return base
        failures.append(f"{base}: no SunS marker")
    raise DiscoveryError("SunSpec marker not found (" + "; ".join(failures) + ")")


def walk(read: Reader, base: int) -> list[Model]:
    """Follow the model chain from ``base`` + 2 until the end marker."""
    models: list[Model] = []
    address = base + 2
    for _ in range(MAX_MODELS):
        header = read(3, address, 2)
        model_id, length = int(header[0]), int(header[1])
        if model_id == END:
            return models
        models.append(Model(model_id, address, length))
        address += 2 + length
        if address > 0xFFFF:
            break
    raise DiscoveryError(f"SunSpec chain at {base} has no end marker within {MAX_MODELS} models")


def build_map(models: Sequence[Model], layouts: dict[str, Any] | None = None) -> RegisterMap:
    """A register map holding the points of every supported model found on the device."""
    document = layouts or load_layouts()
    by_model: dict[int, tuple[str, dict[str, Any]]] = {}
    for name, layout in document["layouts"].items():
        for model_id in layout["models"]:
            by_model[int(model_id)] = (name, layout)
    points: list[Point] = []
    defined: list[tuple[int, int, int]] = []
    channels_used: set[str] = set()
    power_seen = False
    for model in models:
        found = by_model.get(model.id)
        if found is None:
            log.debug("SunSpec model %d at %d not used", model.id, model.start)
            continue
        name, layout = found
        lengths = layout.get("lengths")
        if lengths and model.length not in lengths:
            raise MapError(f"SunSpec model {model.id} at {model.start} has L={model.length}, "
                           f"expected one of {lengths}")
        # the first model with power is the device itself; later ones are its channels
        channel = ""
        if layout.get("channel"):
            if power_seen:
                channel = layout["channel"]
                index = 2
                while channel in channels_used:
                    channel, index = f"{layout['channel']}{index}", index + 1
            power_seen = True
        channels_used.add(channel)
        prefix = f"{model.id}@{model.start}."
        for raw in layout["points"]:
            if raw["address"] >= 2 + model.length:
                continue  # a shorter model version without this point
            point = parse_point(raw, where=f"sunspec model {model.id}", default_fc=3,
                                offset=model.start)
            points.append(Point(
                **{**_fields(point), "name": prefix + point.name, "channel": channel,
                   "scale_factor": prefix + point.scale_factor if point.scale_factor else None}))
        defined.append((3, model.start, model.end))
    return RegisterMap(name="sunspec", source="sunspec", points=tuple(points),
                       defined=tuple(defined), defaults=dict(document.get("defaults", {})))


def _fields(point: Point) -> dict[str, Any]:
    return {name: getattr(point, name) for name in point.__dataclass_fields__}


def discover(read: Reader, bases: Sequence[int] | None = None) -> tuple[int, list[Model],
                                                                         RegisterMap]:
    document = load_layouts()
    base = find_base(read, bases or document.get("bases", [40000, 0, 50000]))
    models = walk(read, base)
    return base, models, build_map(models, document)
