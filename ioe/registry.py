"""The community registry: communities, members, plants, devices and coefficient schedules.

Authored as YAML (see ``infra/examples/community.yaml``) plus the official coefficient files,
validated here with messages that name the file and line, and published to the compacted topic
``ioe.registry`` (one message per community) so every service follows changes without restart.

Every member and plant also owns an implicit device ``datadis:<CUPS>``: the distributor's
official meter, fed by the Datadis connector.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
import yaml

from ioe import yamllines
from ioe.coefficients import (
    CoefficientError,
    CoefficientSchedule,
    in_force,
    normalize_cups,
    parse_file,
    parse_text,
    schedule_from_dict,
    schedule_to_dict,
)
from ioe.yamllines import line_of


class Role(StrEnum):
    """What a device measures (a ``StrEnum``: it compares equal to its registry word)."""

    CONSUMPTION = "consumption"  # a member's consumption meter
    GENERATION = "generation"    # a plant's inverter / generation meter (net generation G)
    GRID = "grid"                # a grid-connection meter (import/export), not generation
    STORAGE = "storage"          # a battery


class ProtocolKind(StrEnum):
    """How a device reaches the system; ``Device.protocol["type"]`` in the registry."""

    MQTT = "mqtt"
    MODBUS = "modbus"
    DATADIS = "datadis"  # the distributor's official meter (implicit device of a supply)
    OTHER = "other"


ROLES = tuple(Role)
OFFICIAL_PREFIX = "datadis:"


def official_device_id(cups: str) -> str:
    """The implicit device of a supply point: the distributor's meter, fed by Datadis."""
    return f"{OFFICIAL_PREFIX}{cups}"
REGISTRY_FORMAT = 1


class RegistryError(ValueError):
    """A registry that cannot be used; the message starts with ``file:line``."""


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    cups: str
    contracted_power_kw: float
    tariff: str = "2.0TD"


@dataclass(frozen=True)
class Plant:
    id: str
    name: str
    cups: str | None
    peak_power_kw: float
    latitude: float
    longitude: float
    tilt_deg: float = 30.0
    azimuth_deg: float = 180.0


@dataclass(frozen=True)
class Device:
    id: str
    community_id: str
    role: Role
    member_id: str | None = None
    plant_id: str | None = None
    #: free-form connector details: {"type": "mqtt", "decoder": "shelly-gen1", ...}
    protocol: Mapping[str, Any] = field(default_factory=dict)
    #: seconds between readings in normal operation (staleness / offline detection)
    expected_interval_s: float = 10.0
    #: rated power in W (inverters: AC rating), for plausibility checks
    rated_power_w: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))

    @property
    def protocol_kind(self) -> ProtocolKind:
        kind = self.protocol.get("type")
        return ProtocolKind(kind) if isinstance(kind, str) and kind in (
            ProtocolKind.__members__.values()) else ProtocolKind.OTHER

    @property
    def is_official(self) -> bool:
        """The distributor's meter (Datadis): its hours supersede the monitoring meters', and
        it carries no live power. The one test of it in the code base."""
        return self.protocol_kind is ProtocolKind.DATADIS or self.id.startswith(OFFICIAL_PREFIX)


@dataclass(frozen=True)
class Community:
    id: str
    name: str
    cau: str | None
    timezone: str
    latitude: float
    longitude: float
    members: tuple[Member, ...]
    plants: tuple[Plant, ...]
    devices: tuple[Device, ...]
    schedules: tuple[CoefficientSchedule, ...]
    prices: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_members", {m.id: m for m in self.members})
        object.__setattr__(self, "_devices", {d.id: d for d in self.devices})

    def member(self, member_id: str) -> Member | None:
        return self._members.get(member_id)  # type: ignore[attr-defined,no-any-return]

    def device(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)  # type: ignore[attr-defined,no-any-return]

    def devices_of_member(self, member_id: str) -> list[Device]:
        return [d for d in self.devices if d.member_id == member_id]

    def generation_devices(self) -> list[Device]:
        return [d for d in self.devices if d.role is Role.GENERATION]

    @property
    def peak_power_kw(self) -> float:
        return sum(p.peak_power_kw for p in self.plants)

    def schedule_at(self, ts_ms: int) -> CoefficientSchedule | None:
        return in_force(self.schedules, ts_ms, self.timezone)

    def coefficient(self, member_id: str, ts_ms: int) -> float:
        """β of a member for the hour containing ``ts_ms`` (0 when no schedule covers it)."""
        member = self.member(member_id)
        schedule = self.schedule_at(ts_ms)
        if member is None or schedule is None:
            return 0.0
        return schedule.beta(member.cups, ts_ms, self.timezone)

    # -- wire format (ioe.registry) ------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REGISTRY_FORMAT, "id": self.id, "name": self.name, "cau": self.cau,
            "timezone": self.timezone, "latitude": self.latitude, "longitude": self.longitude,
            "prices": dict(self.prices),
            "members": [vars(m) for m in self.members],
            "plants": [vars(p) for p in self.plants],
            "devices": [{**vars(d), "protocol": dict(d.protocol)} for d in self.devices],
            "schedules": [schedule_to_dict(s) for s in self.schedules],
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Community:
        return cls(
            id=data["id"], name=data["name"], cau=data.get("cau"), timezone=data["timezone"],
            latitude=data["latitude"], longitude=data["longitude"],
            members=tuple(Member(**m) for m in data["members"]),
            plants=tuple(Plant(**p) for p in data["plants"]),
            devices=tuple(Device(**d) for d in data["devices"]),
            schedules=tuple(schedule_from_dict(s) for s in data["schedules"]),
            prices=data.get("prices", {}),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Community:
        return cls.from_dict(orjson.loads(raw))


@dataclass
class Registry:
    communities: dict[str, Community] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._reindex()

    def _reindex(self) -> None:
        self._devices: dict[str, Device] = {
            device.id: device for community in self.communities.values()
            for device in community.devices}

    def apply_record(self, key: bytes | None, value: bytes | None) -> Community | None:
        """One ``ioe.registry`` record: a community document, or a tombstone removing it.
        Returns the community put (None for a tombstone); a bad document raises."""
        if value is None:
            if key:
                self.remove(key.decode())
            return None
        community = Community.from_json(value)
        self.put(community)
        return community

    def put(self, community: Community) -> None:
        """Add or replace a community (as when a newer registry message arrives).

        Copy-on-write: the dicts are rebuilt and swapped, never mutated in place, so a reader
        on another thread (the MQTT bridge's paho thread) sees the old or the new registry,
        never half of one."""
        self.communities = {**self.communities, community.id: community}
        self._reindex()

    def remove(self, community_id: str) -> None:
        self.communities = {k: v for k, v in self.communities.items() if k != community_id}
        self._reindex()

    def device(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def community(self, community_id: str) -> Community | None:
        return self.communities.get(community_id)

    def community_of_device(self, device_id: str) -> str | None:
        device = self._devices.get(device_id)
        return device.community_id if device else None

    def devices(self) -> Iterable[Device]:
        return self._devices.values()


def _line(obj: Any, key: str | None = None) -> int:
    return line_of(obj, key)


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, obj: Any, message: str, key: str | None = None) -> RegistryError:
        return RegistryError(f"{self.source}:{_line(obj, key)}: {message}")

    def get(self, obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...],
            default: Any = ..., what: str = "") -> Any:
        if key not in obj:
            if default is ...:
                raise self.fail(obj, f"{what}missing required key {key!r}")
            return default
        value = obj[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise self.fail(obj, f"{what}{key!r} must be {_kind_name(kind)}, got {value!r}", key)
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(obj, f"{what}{key!r} must be finite", key)
        if (isinstance(value, int) and not isinstance(value, bool) and kind is NUMBER
                and not _fits_float(value)):  # float(10**400) raises OverflowError
            raise self.fail(obj, f"{what}{key!r} is too large", key)
        return value

    def items(self, obj: Mapping[str, Any], key: str, default: Any = ...,
              what: str = "") -> list[Mapping[str, Any]]:
        """A list of mappings (members, plants, devices, coefficients). A YAML ``-`` with
        nothing after it is ``None`` and a bare word is a string: neither has keys, and
        reading one would be a TypeError/AttributeError that no caller catches. Such an item
        has no line of its own, so the error names the line of the list's key."""
        values = self.get(obj, key, list, default, what)
        for index, item in enumerate(values):
            if not isinstance(item, dict):
                raise self.fail(obj, f"{what}item {index + 1} of {key!r} must be a mapping, "
                                     f"got {item!r}", key)
        return values  # type: ignore[no-any-return]

    def json_value(self, obj: Mapping[str, Any], key: str, value: Any, what: str) -> None:
        """A free-form value that must survive the wire form (orjson) unchanged: strings,
        booleans, null, finite numbers, integers within 64 bits, and lists/mappings (string
        keys) of those. orjson writes NaN/inf as ``null`` and raises on larger integers or
        non-string keys — at ``ioe registry apply``, far from the file line."""
        if value is None or isinstance(value, (str, bool)):
            return
        if isinstance(value, int):
            if not _INT64_MIN <= value <= _UINT64_MAX:
                raise self.fail(obj, f"{what}{key!r}: integer {value} beyond 64 bits", key)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise self.fail(obj, f"{what}{key!r} must be finite, got {value!r}", key)
        elif isinstance(value, list):
            for item in value:
                self.json_value(obj, key, item, what)
        elif isinstance(value, dict):
            for inner_key, inner in value.items():
                if not isinstance(inner_key, str):
                    raise self.fail(obj, f"{what}{key!r}: key {inner_key!r} must be a string",
                                    key)
                self.json_value(value, inner_key, inner, f"{what}{key}.")
        else:  # e.g. an unquoted YAML date: orjson writes a string, read back as a string
            raise self.fail(obj, f"{what}{key!r}: {value!r} must be a string, number, boolean, "
                                 "list or mapping (quote dates)", key)

    def cups(self, obj: Mapping[str, Any], key: str = "cups", what: str = "") -> str:
        value = self.get(obj, key, str, what=what)
        try:
            return normalize_cups(value)
        except CoefficientError as exc:
            raise self.fail(obj, f"{what}{exc}", key) from None


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number",
                        "list": "a list", "dict": "a mapping"}.get(k.__name__, k.__name__)
                       for k in kinds)


NUMBER = (int, float)
#: the integers orjson writes (signed and unsigned 64-bit)
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
#: protocol options read as text / as small integers by the connectors (mqtt_bridge, edge)
_PROTOCOL_STRINGS = ("type", "decoder", "topic", "topic_id", "full_topic", "host", "map",
                     "via", "charge_point")
_PROTOCOL_PORTS = {"port": (0, 65535), "unit": (0, 255)}


def _fits_float(value: int) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _protocol(d: Mapping[str, Any], check: _Checker, what: str) -> dict[str, Any]:
    """A device's connector options: free-form, but the keys the connectors read as text or
    as a port/unit number are checked, and every value must survive the wire form."""
    protocol = check.get(d, "protocol", dict, {}, what)
    for key, value in protocol.items():
        if not isinstance(key, str):
            raise check.fail(d, f"{what}protocol key {key!r} must be a string", "protocol")
        if key in _PROTOCOL_STRINGS:
            check.get(protocol, key, str, what=f"{what}protocol ")
        elif key in _PROTOCOL_PORTS:
            low, high = _PROTOCOL_PORTS[key]
            number = check.get(protocol, key, int, what=f"{what}protocol ")
            if not low <= number <= high:
                raise check.fail(protocol, f"{what}protocol {key!r} must be in {low}…{high}, "
                                           f"got {number}", key)
        else:
            check.json_value(protocol, key, value, f"{what}protocol ")
    return dict(protocol)


def _prices(raw: Mapping[str, Any], check: _Checker, what: str) -> dict[str, float]:
    """€/kWh by name: finite, non-negative numbers. ``"0,145"`` (a decimal comma, as a
    spreadsheet writes it) is a string in YAML, refused here rather than by ``float()``."""
    prices = check.get(raw, "prices", dict, {}, what)
    result: dict[str, float] = {}
    for key, value in prices.items():
        if not isinstance(key, str):
            raise check.fail(prices, f"{what}price name {key!r} must be a string")
        if isinstance(value, str):
            raise check.fail(prices, f"{what}price {key!r} must be a number (decimal point, "
                                     f"no quotes), got {value!r}", key)
        number = float(check.get(prices, key, NUMBER, what=f"{what}price "))
        if number < 0:
            raise check.fail(prices, f"{what}price {key!r} must not be negative, got {value}",
                             key)
        result[key] = number
    return result


def load_registry(path: str | Path) -> Registry:
    """Load and validate a registry YAML file (and the coefficient files it names)."""
    path = Path(path)
    try:
        document = yamllines.load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from None
    return parse_registry(document, source=str(path), base_dir=path.parent)


def parse_registry(document: Any, *, source: str = "<registry>",
                   base_dir: Path | None = None) -> Registry:
    check = _Checker(source)
    if not isinstance(document, dict) or "communities" not in document:
        raise RegistryError(f"{source}:1: expected a mapping with a 'communities' list")
    communities = check.get(document, "communities", list)
    registry = Registry()
    seen_devices: dict[str, str] = {}
    seen_cups: dict[str, str] = {}
    for raw in communities:
        if not isinstance(raw, dict):
            raise check.fail(document, "each community must be a mapping")
        community = _parse_community(raw, check, base_dir or Path("."))
        if community.id in registry.communities:
            raise check.fail(raw, f"duplicate community {community.id!r}")
        for member in community.members:
            # RD 244/2019 art. 4: a supply point takes part in one self-consumption only
            if member.cups in seen_cups:
                raise check.fail(raw, f"community {community.id}: CUPS {member.cups} of member "
                                      f"{member.id} is already in community "
                                      f"{seen_cups[member.cups]!r}")
            seen_cups[member.cups] = community.id
        for device in community.devices:
            if device.id in seen_devices:
                raise check.fail(raw, f"device {device.id!r} appears in communities "
                                      f"{seen_devices[device.id]!r} and {community.id!r}")
            seen_devices[device.id] = community.id
        registry.put(community)
    return registry


#: ids that are safe inside a topic name (``ioe.commands.<community>``), an ACL file and a
#: certificate subject (ioe/edge/identity.py uses the same rule)
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _parse_community(raw: dict[str, Any], check: _Checker, base_dir: Path) -> Community:
    cid = check.get(raw, "id", str)
    if not SAFE_ID.match(cid):
        raise check.fail(raw, f"community id {cid!r}: use letters, digits, '-' and '_' (at most "
                              "64, starting with a letter or digit)", "id")
    what = f"community {cid}: "
    timezone = check.get(raw, "timezone", str, "Europe/Madrid", what)
    location = check.get(raw, "location", dict, {}, what)
    members: list[Member] = []
    member_ids: set[str] = set()
    cups_seen: dict[str, int] = {}
    for m in check.items(raw, "members", what=what):
        mid = check.get(m, "id", str, what=what)
        if mid in member_ids:
            raise check.fail(m, f"{what}duplicate member {mid!r}")
        cups = check.cups(m, what=f"{what}member {mid}: ")
        if cups in cups_seen:
            raise check.fail(m, f"{what}CUPS {cups} already used by another member "
                                f"(line {cups_seen[cups]})")
        cups_seen[cups] = _line(m)
        member_ids.add(mid)
        members.append(Member(
            id=mid, name=check.get(m, "name", str, mid, what), cups=cups,
            contracted_power_kw=float(check.get(m, "contracted_power_kw", NUMBER, what=what)),
            tariff=check.get(m, "tariff", str, "2.0TD", what)))
    plants: list[Plant] = []
    for p in check.items(raw, "plants", [], what):
        pid = check.get(p, "id", str, what=what)
        ploc = check.get(p, "location", dict, location, what)
        plants.append(Plant(
            id=pid, name=check.get(p, "name", str, pid, what),
            cups=check.cups(p, what=f"{what}plant {pid}: ") if "cups" in p else None,
            peak_power_kw=float(check.get(p, "peak_power_kw", NUMBER, what=what)),
            latitude=float(check.get(ploc, "latitude", NUMBER, what=what)),
            longitude=float(check.get(ploc, "longitude", NUMBER, what=what)),
            tilt_deg=float(check.get(p, "tilt_deg", NUMBER, 30.0, what)),
            azimuth_deg=float(check.get(p, "azimuth_deg", NUMBER, 180.0, what))))
    plant_ids = {p.id for p in plants}
    devices: list[Device] = []
    device_ids: dict[str, int] = {}
    for d in check.items(raw, "devices", [], what):
        did = check.get(d, "id", str, what=what)
        if did in device_ids:
            raise check.fail(d, f"{what}duplicate device {did!r} (first at line "
                                f"{device_ids[did]})")
        device_ids[did] = _line(d)
        role = check.get(d, "role", str, what=what)
        if role not in ROLES:
            raise check.fail(d, f"{what}device {did}: role must be one of {', '.join(ROLES)}",
                             "role")
        member = check.get(d, "member", str, None, what)
        plant = check.get(d, "plant", str, None, what)
        if member is not None and member not in member_ids:
            raise check.fail(d, f"{what}device {did} points at unknown member {member!r}",
                             "member")
        if plant is not None and plant not in plant_ids:
            raise check.fail(d, f"{what}device {did} points at unknown plant {plant!r}", "plant")
        if member is None and plant is None:
            raise check.fail(d, f"{what}device {did} needs a 'member' or a 'plant'")
        rated = check.get(d, "rated_power_w", NUMBER, None, what)
        devices.append(Device(
            id=did, community_id=cid, role=role, member_id=member, plant_id=plant,
            protocol=_protocol(d, check, what),
            expected_interval_s=float(check.get(d, "expected_interval_s", NUMBER, 10.0, what)),
            rated_power_w=float(rated) if rated is not None else None))
    for member in members:  # the distributor's official meter of every member and plant
        devices.append(Device(id=official_device_id(member.cups), community_id=cid,
                              role=Role.CONSUMPTION,
                              member_id=member.id, protocol={"type": "datadis"},
                              expected_interval_s=3600.0))
    for plant in plants:
        if plant.cups:
            devices.append(Device(id=official_device_id(plant.cups), community_id=cid,
                                  role=Role.GENERATION, plant_id=plant.id,
                                  protocol={"type": "datadis"}, expected_interval_s=3600.0))
    raw_schedules = check.items(raw, "coefficients", [], what)
    schedules = [_parse_schedule(s, check, base_dir, what) for s in raw_schedules]
    member_cups = {m.cups for m in members}
    for schedule, s in zip(schedules, raw_schedules, strict=True):
        unknown = [c for c in schedule.by_cups if c not in member_cups]
        if unknown:
            raise check.fail(s, f"{what}coefficient file names CUPS {unknown[0]} that is not "
                                "a member")
    prices = _prices(raw, check, what)
    return Community(
        id=cid, name=check.get(raw, "name", str, cid, what),
        cau=check.get(raw, "cau", str, None, what), timezone=timezone,
        latitude=float(check.get(location, "latitude", NUMBER, 40.4, what)),
        longitude=float(check.get(location, "longitude", NUMBER, -3.7, what)),
        members=tuple(members), plants=tuple(plants), devices=tuple(devices),
        schedules=tuple(sorted(schedules, key=lambda s: s.effective_from)),
        prices=prices)


def _parse_schedule(raw: Mapping[str, Any], check: _Checker, base_dir: Path,
                    what: str) -> CoefficientSchedule:
    effective = raw.get("effective_from")
    if isinstance(effective, str):
        try:
            effective = date.fromisoformat(effective)
        except ValueError:
            raise check.fail(raw, f"{what}effective_from {effective!r} is not YYYY-MM-DD") from None
    if not isinstance(effective, date):
        raise check.fail(raw, f"{what}coefficients need 'effective_from: YYYY-MM-DD'")
    year = check.get(raw, "year", int, None, what)
    if year is not None and not 1970 <= year <= 2199:
        raise check.fail(raw, f"{what}coefficients year {year} outside 1970…2199", "year")
    try:
        if "file" in raw:
            file = base_dir / check.get(raw, "file", str, what=what)
            try:
                return parse_file(file, effective_from=effective, year=year)
            except OSError as exc:  # missing, a directory, unreadable: the bridge and the
                # web server catch only RegistryError
                raise check.fail(raw, f"{what}cannot read coefficient file {str(file)!r}: "
                                      f"{exc.strerror or exc}", "file") from None
        if "static" in raw:
            table = check.get(raw, "static", dict, what=what)
            for cups in table:  # float("x") / float(None) would escape as ValueError/TypeError
                check.get(table, cups, NUMBER, what=f"{what}static β of ")
            text = "\n".join(f"{cups};{float(beta):.6f}".replace(".", ",")
                             for cups, beta in table.items())
            return parse_text(text, source=f"{check.source}:{_line(raw)}",
                              effective_from=effective)
    except CoefficientError as exc:
        raise RegistryError(f"{exc} (coefficients at {check.source}:{_line(raw)})") from None
    raise check.fail(raw, f"{what}coefficients need a 'file' or a 'static' table")

