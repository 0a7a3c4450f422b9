"""Typed messages between processes: one definition, one encoder, one decoder each.

Why a module of its own: the same message used to be built as a dict in one process and read
back by string keys in two others (worker → web → browser, worker → sink → ClickHouse), so a
renamed field broke a consumer at run time, far from the change. Every producer now builds one
of these dataclasses and every consumer decodes into it; the ClickHouse column lists are derived
from the same definitions (:data:`BALANCE_COLUMNS`, :data:`ALARM_COLUMNS`), and the browser
clients take their field names from ``dashboards/static/messages.js``, which a test holds
against this file.

The wire format is JSON (orjson), one object per message, with ``"v"`` (the contract version,
:data:`MESSAGE_VERSION`) and, on ``ioe.live``, ``"type"`` saying which message it is. Decoders
are strict about what they need and name the field they refuse (:class:`MessageError`), so a
bad message is counted and logged with a reason instead of crashing a consumer.

The reading contract itself is :class:`ioe.reading.Reading` (DESIGN.md §3); it is re-exported
here so that "the messages" are one import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

import orjson

from ioe.reading import Reading, ReadingError

__all__ = [
    "MESSAGE_VERSION", "MessageError", "ChannelKind", "Channel", "LiveMember", "LiveCommunity",
    "LiveAlarm", "LiveMessage", "PlantPower", "GeneratorPower", "Balance", "BalanceSource",
    "Alarm", "Severity", "AlarmState", "Column", "BALANCE_COLUMNS", "ALARM_COLUMNS",
    "READING_COLUMNS", "decode_live", "live_from_dict", "Reading", "ReadingError",
]

MESSAGE_VERSION = 1


class MessageError(ValueError):
    """A message that breaks its contract; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# -- channels (DESIGN.md §6, docs/design-notes.md) ---------------------------------------------
class ChannelKind(StrEnum):
    MEMBER = "member"          # member:<community_id>:<member_id> — one member's own values
    COMMUNITY = "community"    # community:<community_id> — aggregates only (members may read)
    OPERATORS = "operators"    # operators:<community_id> — alarms, operators only


#: how many ``:``-separated parts each kind of channel has
_CHANNEL_PARTS = {ChannelKind.MEMBER: 3, ChannelKind.COMMUNITY: 2, ChannelKind.OPERATORS: 2}


@dataclass(frozen=True, slots=True)
class Channel:
    """A live channel; ``str(channel)`` is its wire form and :meth:`parse` the only reader."""

    kind: ChannelKind
    community_id: str
    member_id: str | None = None

    @classmethod
    def member(cls, community_id: str, member_id: str) -> Channel:
        return cls(ChannelKind.MEMBER, community_id, member_id)

    @classmethod
    def community(cls, community_id: str) -> Channel:
        return cls(ChannelKind.COMMUNITY, community_id)

    @classmethod
    def operators(cls, community_id: str) -> Channel:
        return cls(ChannelKind.OPERATORS, community_id)

    @classmethod
    def parse(cls, text: object) -> Channel:
        """The channel named by ``text``, or :class:`MessageError` saying why not."""
        if not isinstance(text, str):
            raise MessageError("channel", f"expected a string, got {type(text).__name__}")
        parts = text.split(":")
        try:
            kind = ChannelKind(parts[0])
        except ValueError:
            raise MessageError("channel", f"unknown channel kind {parts[0]!r}") from None
        if len(parts) != _CHANNEL_PARTS[kind] or not all(parts[1:]):
            raise MessageError("channel", f"bad {kind} channel {text!r}")
        return cls(kind, parts[1], parts[2] if kind is ChannelKind.MEMBER else None)

    def __str__(self) -> str:
        if self.kind is ChannelKind.MEMBER:
            return f"member:{self.community_id}:{self.member_id}"
        return f"{self.kind}:{self.community_id}"


# -- field checks shared by the decoders -------------------------------------------------------
def _need(data: Mapping[str, Any], name: str) -> Any:
    if name not in data:
        raise MessageError(name, "required field is missing")
    return data[name]


def _int(data: Mapping[str, Any], name: str) -> int:
    value = _need(data, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError(name, f"expected an integer, got {value!r}")
    return value


def _str(data: Mapping[str, Any], name: str) -> str:
    value = _need(data, name)
    if not isinstance(value, str):
        raise MessageError(name, f"expected a string, got {value!r}")
    return value


def _opt_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise MessageError(name, f"expected a string or null, got {value!r}")
    return value


def _num(data: Mapping[str, Any], name: str) -> float:
    value = _need(data, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MessageError(name, f"expected a finite number, got {value!r}")
    return float(value)


def _opt_num(data: Mapping[str, Any], name: str) -> float | None:
    if data.get(name) is None:
        return None
    return _num(data, name)


def _opt_int(data: Mapping[str, Any], name: str) -> int | None:
    if data.get(name) is None:
        return None
    return _int(data, name)


def _bool(data: Mapping[str, Any], name: str) -> bool:
    value = _need(data, name)
    if not isinstance(value, bool):
        raise MessageError(name, f"expected true or false, got {value!r}")
    return value


def _version(data: Mapping[str, Any]) -> None:
    if data.get("v") != MESSAGE_VERSION:
        raise MessageError("v", f"unsupported version {data.get('v')!r}")


def _object(raw: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        return raw
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MessageError("$", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageError("$", f"expected a JSON object, got {type(data).__name__}")
    return data


# -- ioe.live ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LiveMember:
    """A member's live share (DESIGN.md §1, power form); ``None`` where a side is unknown."""

    TYPE: ClassVar[str] = "member"

    community_id: str
    member_id: str
    ts_ms: int
    coefficient: float
    generation_w: float | None
    assigned_w: float | None
    consumption_w: float | None
    self_consumption_w: float | None
    surplus_w: float | None
    import_w: float | None
    stale: bool

    @property
    def channel(self) -> Channel:
        return Channel.member(self.community_id, self.member_id)

    def to_dict(self) -> dict[str, Any]:
        return {"v": MESSAGE_VERSION, "type": self.TYPE, "channel": str(self.channel),
                "community_id": self.community_id, "member_id": self.member_id,
                "ts_ms": self.ts_ms, "coefficient": self.coefficient,
                "generation_w": self.generation_w, "assigned_w": self.assigned_w,
                "consumption_w": self.consumption_w,
                "self_consumption_w": self.self_consumption_w, "surplus_w": self.surplus_w,
                "import_w": self.import_w, "stale": self.stale}

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LiveMember:
        return cls(community_id=_str(data, "community_id"), member_id=_str(data, "member_id"),
                   ts_ms=_int(data, "ts_ms"), coefficient=_num(data, "coefficient"),
                   generation_w=_opt_num(data, "generation_w"),
                   assigned_w=_opt_num(data, "assigned_w"),
                   consumption_w=_opt_num(data, "consumption_w"),
                   self_consumption_w=_opt_num(data, "self_consumption_w"),
                   surplus_w=_opt_num(data, "surplus_w"), import_w=_opt_num(data, "import_w"),
                   stale=_bool(data, "stale"))


@dataclass(frozen=True, slots=True)
class PlantPower:
    power_w: float | None
    ts_ms: int | None


@dataclass(frozen=True, slots=True)
class GeneratorPower:
    power_w: float | None
    ts_ms: int | None
    stale: bool


@dataclass(frozen=True, slots=True)
class LiveCommunity:
    """A community's live aggregate; never per-member values (members may subscribe to it)."""

    TYPE: ClassVar[str] = "community"

    community_id: str
    ts_ms: int
    generation_w: float | None
    consumption_w: float | None
    self_consumption_w: float | None
    surplus_w: float | None
    import_w: float | None
    members_reporting: int
    members_total: int
    plants: dict[str, PlantPower] = field(default_factory=dict)
    generators: dict[str, GeneratorPower] = field(default_factory=dict)

    @property
    def channel(self) -> Channel:
        return Channel.community(self.community_id)

    def to_dict(self) -> dict[str, Any]:
        return {"v": MESSAGE_VERSION, "type": self.TYPE, "channel": str(self.channel),
                "community_id": self.community_id, "ts_ms": self.ts_ms,
                "generation_w": self.generation_w, "consumption_w": self.consumption_w,
                "self_consumption_w": self.self_consumption_w, "surplus_w": self.surplus_w,
                "import_w": self.import_w, "members_reporting": self.members_reporting,
                "members_total": self.members_total,
                "plants": {k: {"power_w": p.power_w, "ts_ms": p.ts_ms}
                           for k, p in self.plants.items()},
                "generators": {k: {"power_w": g.power_w, "ts_ms": g.ts_ms, "stale": g.stale}
                               for k, g in self.generators.items()}}

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LiveCommunity:
        plants = data.get("plants") or {}
        generators = data.get("generators") or {}
        if not isinstance(plants, dict) or not isinstance(generators, dict):
            raise MessageError("plants", "expected objects for plants and generators")
        return cls(community_id=_str(data, "community_id"), ts_ms=_int(data, "ts_ms"),
                   generation_w=_opt_num(data, "generation_w"),
                   consumption_w=_opt_num(data, "consumption_w"),
                   self_consumption_w=_opt_num(data, "self_consumption_w"),
                   surplus_w=_opt_num(data, "surplus_w"), import_w=_opt_num(data, "import_w"),
                   members_reporting=_int(data, "members_reporting"),
                   members_total=_int(data, "members_total"),
                   plants={str(k): PlantPower(_opt_num(v, "power_w"), _opt_int(v, "ts_ms"))
                           for k, v in plants.items()},
                   generators={str(k): GeneratorPower(_opt_num(v, "power_w"),
                                                      _opt_int(v, "ts_ms"),
                                                      bool(v.get("stale", False)))
                               for k, v in generators.items()})


# -- alarms (ioe.anomalies, and their copies on ioe.live) -------------------------------------
class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)


_SEVERITY_ORDER = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)


class AlarmState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass
class Alarm:
    """One alarm event (``ioe.anomalies``); the latest event of an ``alarm_id`` is the alarm's
    current state. Alarms about a member or the registry use ``member:<cid>:<mid>`` and
    ``registry:<cid>`` as ``device_id`` (docs/design-notes.md)."""

    alarm_id: str
    community_id: str
    device_id: str
    member_id: str | None
    kind: str
    severity: str
    state: str  # AlarmState
    opened_at_ms: int
    closed_at_ms: int | None
    evidence: dict[str, Any]
    updated_at_ms: int
    version: int = 1

    def to_message(self) -> dict[str, Any]:
        """The ``ioe.anomalies`` message as a dict."""
        return {"v": MESSAGE_VERSION, "alarm_id": self.alarm_id,
                "community_id": self.community_id, "device_id": self.device_id,
                "member_id": self.member_id, "kind": self.kind, "severity": str(self.severity),
                "state": str(self.state), "opened_at_ms": self.opened_at_ms,
                "closed_at_ms": self.closed_at_ms, "evidence": self.evidence,
                "updated_at_ms": self.updated_at_ms, "version": self.version}

    to_dict = to_message

    def encode(self) -> bytes:
        return orjson.dumps(self.to_message())

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> Alarm:
        severity = _str(data, "severity")
        state = _str(data, "state")
        if severity not in Severity.__members__.values():
            raise MessageError("severity", f"unknown severity {severity!r}")
        if state not in AlarmState.__members__.values():
            raise MessageError("state", f"unknown state {state!r}")
        evidence = data.get("evidence") or {}
        if not isinstance(evidence, dict):
            raise MessageError("evidence", "expected an object")
        return cls(alarm_id=_str(data, "alarm_id"), community_id=_str(data, "community_id"),
                   device_id=_str(data, "device_id"), member_id=_opt_str(data, "member_id"),
                   kind=_str(data, "kind"), severity=severity, state=state,
                   opened_at_ms=_int(data, "opened_at_ms"),
                   closed_at_ms=_opt_int(data, "closed_at_ms"), evidence=dict(evidence),
                   updated_at_ms=_int(data, "updated_at_ms"),
                   version=int(data.get("version", 1)))

    from_dict = from_message

    @classmethod
    def decode(cls, raw: bytes | str) -> Alarm:
        return cls.from_message(_object(raw))

    def copy(self) -> Alarm:
        return Alarm(**{f.name: getattr(self, f.name) for f in fields(self)}
                     | {"evidence": dict(self.evidence)})


@dataclass(frozen=True, slots=True)
class LiveAlarm:
    """An alarm event on ``ioe.live``: on ``operators:<cid>``, and a copy on the member channel
    of the member whose device (or membership) it concerns."""

    TYPE: ClassVar[str] = "alarm"

    channel: Channel
    alarm: Alarm

    @classmethod
    def for_alarm(cls, alarm: Alarm) -> list[LiveAlarm]:
        """Members see alarms on their own devices, never others'."""
        out = [cls(Channel.operators(alarm.community_id), alarm)]
        if alarm.member_id:
            out.append(cls(Channel.member(alarm.community_id, alarm.member_id), alarm))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"v": MESSAGE_VERSION, "type": self.TYPE, "channel": str(self.channel),
                "alarm": self.alarm.to_message()}

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LiveAlarm:
        body = data.get("alarm")
        if not isinstance(body, dict) or not body.get("alarm_id"):
            raise MessageError("alarm", "alarm without alarm.alarm_id")
        return cls(Channel.parse(data.get("channel")), Alarm.from_message(body))


LiveMessage = LiveMember | LiveCommunity | LiveAlarm

#: ``type`` → message class of ``ioe.live``
LIVE_TYPES: dict[str, type[LiveMember] | type[LiveCommunity] | type[LiveAlarm]] = {
    LiveMember.TYPE: LiveMember, LiveCommunity.TYPE: LiveCommunity, LiveAlarm.TYPE: LiveAlarm,
}


def live_from_dict(data: Mapping[str, Any]) -> LiveMessage:
    """A decoded ``ioe.live`` object as its typed message, or :class:`MessageError`."""
    _version(data)
    kind = LIVE_TYPES.get(str(data.get("type")))
    if kind is None:
        raise MessageError("type", f"unknown type {data.get('type')!r}")
    message = kind.from_dict(data)
    channel = Channel.parse(data.get("channel"))
    if channel != message.channel:
        raise MessageError("channel", f"{channel} does not match the message")
    return message


def decode_live(raw: bytes | str) -> LiveMessage:
    """One ``ioe.live`` value (JSON) as its typed message, or :class:`MessageError`."""
    return live_from_dict(_object(raw))


# -- ioe.balances ------------------------------------------------------------------------------
class BalanceSource(StrEnum):
    METER = "meter"      # monitoring meters of the community
    DATADIS = "datadis"  # the distributor's official hourly data (supersedes meters)


@dataclass(frozen=True, slots=True)
class Balance:
    """One member's balance over one interval (DESIGN.md §1): A = SC + S, C = SC + I."""

    community_id: str
    member_id: str
    cups: str
    interval_start_ms: int
    interval_s: int
    coefficient: float
    generation_wh: float
    consumption_wh: float
    assigned_wh: float
    self_consumed_wh: float
    surplus_wh: float
    import_wh: float
    source: str  # BalanceSource
    complete: bool
    computed_at_ms: int = 0
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"v": MESSAGE_VERSION, "community_id": self.community_id,
                "member_id": self.member_id, "cups": self.cups,
                "interval_start_ms": self.interval_start_ms, "interval_s": self.interval_s,
                "coefficient": self.coefficient, "generation_wh": self.generation_wh,
                "consumption_wh": self.consumption_wh, "assigned_wh": self.assigned_wh,
                "self_consumed_wh": self.self_consumed_wh, "surplus_wh": self.surplus_wh,
                "import_wh": self.import_wh, "source": str(self.source),
                "complete": self.complete, "computed_at_ms": self.computed_at_ms,
                "version": self.version}

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Balance:
        _version(data)
        source = _str(data, "source")
        if source not in BalanceSource.__members__.values():
            raise MessageError("source", f"unknown source {source!r}")
        return cls(community_id=_str(data, "community_id"), member_id=_str(data, "member_id"),
                   cups=_opt_str(data, "cups") or "",
                   interval_start_ms=_int(data, "interval_start_ms"),
                   interval_s=_int(data, "interval_s"), coefficient=_num(data, "coefficient"),
                   generation_wh=_num(data, "generation_wh"),
                   consumption_wh=_num(data, "consumption_wh"),
                   assigned_wh=_num(data, "assigned_wh"),
                   self_consumed_wh=_num(data, "self_consumed_wh"),
                   surplus_wh=_num(data, "surplus_wh"), import_wh=_num(data, "import_wh"),
                   source=source, complete=_bool(data, "complete"),
                   computed_at_ms=_int(data, "computed_at_ms"), version=_int(data, "version"))

    @classmethod
    def decode(cls, raw: bytes | str) -> Balance:
        return cls.from_dict(_object(raw))


# -- ClickHouse rows: derived from the messages -------------------------------------------------
def _same(value: Any) -> Any:
    return value


def _seconds(value: int | None) -> int | None:
    """Epoch ms → the UTC seconds of a ``DateTime`` column (18.16 has no DateTime64)."""
    return None if value is None else int(value) // 1000


def _flag(value: bool) -> int:
    return 1 if value else 0


def _json_text(value: Any) -> str:
    return orjson.dumps(value or {}).decode()


@dataclass(frozen=True, slots=True)
class Column:
    """One ClickHouse column: its name, the message field it comes from, and the conversion."""

    name: str
    field: str
    convert: Callable[[Any], Any] = _same


def _columns(message: type, renamed: Mapping[str, Column]) -> tuple[Column, ...]:
    """Every field of ``message`` is a column of the same name unless ``renamed`` says how."""
    return tuple(renamed.get(f.name, Column(f.name, f.name)) for f in fields(message))


BALANCE_COLUMNS: tuple[Column, ...] = _columns(Balance, {
    "interval_start_ms": Column("interval_start", "interval_start_ms", _seconds),
    "computed_at_ms": Column("computed_at", "computed_at_ms", _seconds),
    "complete": Column("complete", "complete", _flag),
    "source": Column("source", "source", str),
})
ALARM_COLUMNS: tuple[Column, ...] = _columns(Alarm, {
    "opened_at_ms": Column("opened_at", "opened_at_ms", _seconds),
    "closed_at_ms": Column("closed_at", "closed_at_ms", _seconds),
    "updated_at_ms": Column("updated_at", "updated_at_ms", _seconds),
    "evidence": Column("evidence", "evidence", _json_text),
    "member_id": Column("member_id", "member_id", lambda v: v or ""),
    "severity": Column("severity", "severity", str),
    "state": Column("state", "state", str),
})
#: readings: the contract's fields (not ``v``) plus ``ts`` (seconds, for partitioning) and
#: ``version = ts_ms`` (a replayed reading replaces itself); ``community_id`` is the routed one
READING_COLUMNS: tuple[Column, ...] = (
    Column("community_id", "community_id"), Column("device_id", "device_id"),
    Column("ts", "ts_ms", _seconds), Column("ts_ms", "ts_ms"), Column("source", "source"),
    Column("quality", "quality"),
    *(Column(f.name, f.name) for f in fields(Reading)
      if f.name not in ("device_id", "ts_ms", "source", "community_id", "quality", "v")),
    Column("version", "ts_ms"),
)


def column_names(columns: tuple[Column, ...]) -> tuple[str, ...]:
    return tuple(c.name for c in columns)


def row(message: object, columns: tuple[Column, ...]) -> tuple[Any, ...]:
    """The ClickHouse row of ``message`` in the order of ``columns``."""
    return tuple(c.convert(getattr(message, c.field)) for c in columns)


# -- ioe.commands.<community> / ioe.command-results (control/, docs/design-notes.md "Control activo") ------
class CommandStatus(StrEnum):
    """How a command ended, as its executor reports it on ``ioe.command-results``."""

    ACKNOWLEDGED = "acknowledged"  # written and read back as asked
    FAILED = "failed"              # refused by the executor or the device, or read back wrong
    EXPIRED = "expired"            # its deadline passed before it could run: never run late


def _value(data: Mapping[str, Any], name: str) -> float | str | None:
    """A setting's value: a finite number, a word (``on``), or null (``none``: disabled)."""
    value = data.get(name)
    if value is None or isinstance(value, str):
        return value
    return _num(data, name)


@dataclass(frozen=True, slots=True)
class Command:
    """One setting for one device, asked by someone for a reason, valid until ``deadline_ms``.

    ``requested_by`` is ``operator:<name>``, ``member:<member_id>`` or ``rule:<rule_id>``;
    ``revert_s`` is the device-side fallback (the device drops the setting by itself when it is
    not renewed in time). A ``dry_run`` command is logged and stored, never executed."""

    command_id: str
    community_id: str
    device_id: str
    key: str
    value: float | str | None
    requested_by: str
    reason: str
    issued_at_ms: int
    deadline_ms: int
    revert_s: int | None = None
    rule_id: str | None = None
    dry_run: bool = False

    def expired(self, now_ms: int) -> bool:
        return now_ms > self.deadline_ms

    def to_dict(self) -> dict[str, Any]:
        return {"v": MESSAGE_VERSION, "command_id": self.command_id,
                "community_id": self.community_id, "device_id": self.device_id,
                "key": self.key, "value": self.value, "requested_by": self.requested_by,
                "reason": self.reason, "issued_at_ms": self.issued_at_ms,
                "deadline_ms": self.deadline_ms, "revert_s": self.revert_s,
                "rule_id": self.rule_id, "dry_run": self.dry_run}

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Command:
        _version(data)
        return cls(command_id=_str(data, "command_id"), community_id=_str(data, "community_id"),
                   device_id=_str(data, "device_id"), key=_str(data, "key"),
                   value=_value(data, "value"), requested_by=_str(data, "requested_by"),
                   reason=_opt_str(data, "reason") or "", issued_at_ms=_int(data, "issued_at_ms"),
                   deadline_ms=_int(data, "deadline_ms"), revert_s=_opt_int(data, "revert_s"),
                   rule_id=_opt_str(data, "rule_id"), dry_run=bool(data.get("dry_run", False)))

    @classmethod
    def decode(cls, raw: bytes | str) -> Command:
        return cls.from_dict(_object(raw))


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What the executor did with a command: what it wrote, what the device reads back now."""

    command_id: str
    community_id: str
    device_id: str
    key: str
    status: str  # CommandStatus
    requested: float | str | None
    readback: float | str | None
    executor: str
    executed_at_ms: int
    detail: str = ""
    #: what went to the device: registers, MQTT topic and payload, OCPP profile…
    written: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"v": MESSAGE_VERSION, "command_id": self.command_id,
                "community_id": self.community_id, "device_id": self.device_id,
                "key": self.key, "status": str(self.status), "requested": self.requested,
                "readback": self.readback, "executor": self.executor,
                "executed_at_ms": self.executed_at_ms, "detail": self.detail,
                "written": self.written}

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommandResult:
        _version(data)
        status = _str(data, "status")
        if status not in CommandStatus.__members__.values():
            raise MessageError("status", f"unknown status {status!r}")
        written = data.get("written") or []
        if not isinstance(written, list):
            raise MessageError("written", "expected a list")
        return cls(command_id=_str(data, "command_id"), community_id=_str(data, "community_id"),
                   device_id=_str(data, "device_id"), key=_str(data, "key"), status=status,
                   requested=_value(data, "requested"), readback=_value(data, "readback"),
                   executor=_str(data, "executor"), executed_at_ms=_int(data, "executed_at_ms"),
                   detail=_opt_str(data, "detail") or "", written=list(written))

    @classmethod
    def decode(cls, raw: bytes | str) -> CommandResult:
        return cls.from_dict(_object(raw))

    @classmethod
    def expired(cls, command: Command, executor: str, now_ms: int) -> CommandResult:
        return cls(command.command_id, command.community_id, command.device_id, command.key,
                   CommandStatus.EXPIRED, command.value, None, executor, now_ms,
                   f"deadline {command.deadline_ms} passed before it could run")


def _json_value(value: Any) -> str:
    return orjson.dumps(value).decode()


#: ``commands`` table: the command, plus the issuer's ``status`` (sent, refused, dry_run) and
#: ``refusal`` (why a command was refused before it reached a device)
COMMAND_COLUMNS: tuple[Column, ...] = (
    *_columns(Command, {
        "value": Column("value", "value", _json_value),
        "issued_at_ms": Column("issued_at_ms", "issued_at_ms"),
        "deadline_ms": Column("deadline", "deadline_ms", _seconds),
        "rule_id": Column("rule_id", "rule_id", lambda v: v or ""),
        "dry_run": Column("dry_run", "dry_run", _flag),
    }),
)
COMMAND_RESULT_COLUMNS: tuple[Column, ...] = _columns(CommandResult, {
    "status": Column("status", "status", str),
    "requested": Column("requested", "requested", _json_value),
    "readback": Column("readback", "readback", _json_value),
    "written": Column("written", "written", _json_value),
    "executed_at_ms": Column("executed_at_ms", "executed_at_ms"),
})
#: ``command_results`` table (migration 0004): the result's columns, when it ran, and the
#: ReplacingMergeTree version
COMMAND_RESULT_TABLE_COLUMNS = (*column_names(COMMAND_RESULT_COLUMNS), "executed_at",
                                "version")
#: on a tie of time "acknowledged" beats "failed" beats "expired"
_RESULT_RANK = {"expired": 0, "failed": 1, "acknowledged": 2}


def command_result_row(result: CommandResult) -> tuple[Any, ...]:
    """The ``command_results`` row of a result: a later report of the same command wins."""
    return (*row(result, COMMAND_RESULT_COLUMNS), result.executed_at_ms // 1000,
            result.executed_at_ms * 4 + _RESULT_RANK.get(str(result.status), 0))


# -- alarm actions: an operator acknowledges or assigns an open alarm (dashboards, 0005) ------
class AlarmActionKind(StrEnum):
    """What an operator did with an alarm; the alarm itself is the detector's and stays as it
    is (it closes when its condition clears), the actions are the people's side of it."""

    ACKNOWLEDGE = "acknowledge"  # "I have seen it" (someone is on it)
    ASSIGN = "assign"            # "this person deals with it"


@dataclass(frozen=True, slots=True)
class AlarmAction:
    """One acknowledgement or assignment of an alarm, by one operator token, kept as history.

    ``actor`` is the name the token was issued for (``ioe tokens issue --name``) or, for a
    token without a name, ``token <id>``; ``token_id`` is always stored, so the action can be
    traced to the token even when the name is a free text. ``assignee`` is set for ``assign``
    (empty for ``acknowledge``); ``note`` is the operator's optional words."""

    action_id: str
    alarm_id: str
    community_id: str
    action: str  # AlarmActionKind
    actor: str
    token_id: str
    at_ms: int
    assignee: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"v": MESSAGE_VERSION, "action_id": self.action_id, "alarm_id": self.alarm_id,
                "community_id": self.community_id, "action": str(self.action),
                "actor": self.actor, "token_id": self.token_id, "at_ms": self.at_ms,
                "assignee": self.assignee, "note": self.note}

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlarmAction:
        _version(data)
        action = _str(data, "action")
        if action not in AlarmActionKind.__members__.values():
            raise MessageError("action", f"unknown action {action!r}")
        assignee = _opt_str(data, "assignee") or ""
        if action == AlarmActionKind.ASSIGN and not assignee.strip():
            raise MessageError("assignee", "an assignment needs an assignee")
        return cls(action_id=_str(data, "action_id"), alarm_id=_str(data, "alarm_id"),
                   community_id=_str(data, "community_id"), action=action,
                   actor=_str(data, "actor"), token_id=_str(data, "token_id"),
                   at_ms=_int(data, "at_ms"), assignee=assignee,
                   note=_opt_str(data, "note") or "")

    @classmethod
    def decode(cls, raw: bytes | str) -> AlarmAction:
        return cls.from_dict(_object(raw))


#: ``alarm_actions`` table (migration 0005): the message's fields, ``at`` in seconds for the
#: partition, ``version = at_ms`` (an action stored twice is one row)
ALARM_ACTION_COLUMNS: tuple[Column, ...] = (
    *_columns(AlarmAction, {"action": Column("action", "action", str)}),
    Column("at", "at_ms", _seconds), Column("version", "at_ms"),
)
