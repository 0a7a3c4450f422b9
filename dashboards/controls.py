"""Device controls in the web: what each controllable device holds now, and a manual override.

Why from the command log: what an operator needs to know of a device is what a command put
there and the device read back — with who asked, why, and until when — and the log
(:class:`control.store.CommandLog`, the one reader of it is :mod:`dashboards.command_log`)
already holds exactly that for every command, the rules' and the people's.

An override is a command like any other: :func:`control.commands.issue` applies the same
permission, bounds and per-device rate limit as ``ioe control send``; the command is stored in
the log and sent on ``ioe.commands.<community>`` for the edge or bridge that owns the device. Its expiry is
its ``revert_s``: an inverter or a battery drops the limit by itself then, and the rules on that
point pause until then (:meth:`control.run.ControlLoop.step`), so a rule never undoes an
operator's override while it holds. The request must say ``"confirm": true``: the control
centre asks first, and a click is not a command until it is confirmed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from control.commands import KEYS, Issued, RateLimit, Requester, device_kind, issue
from control.store import CommandLog, Hold
from dashboards.command_log import CommandEntry
from dashboards.errors import RequestRefused
from ioe.registry import Community, Device, Registry
from ioe.settings import Settings

#: the point the control centre acts on, per kind of device
DEFAULT_KEYS = {"modbus": "power_limit_pct", "relay": "relay", "ev": "ev_current_a"}
#: kinds whose device drops a value by itself after ``revert_s`` (an inverter's revert timer,
#: a charging profile's duration); a relay has none: its override's expiry only pauses rules
REVERTING_KINDS = frozenset({"modbus", "ev"})
DEFAULT_EXPIRY_S = 900
MIN_EXPIRY_S, MAX_EXPIRY_S = 60, 65534  # 65534 s: the largest SunSpec revert timer
MAX_REASON = 200


class OverrideRefused(RequestRefused):
    """A request the web refuses before issuing anything (HTTP status, code, message)."""


@dataclass(frozen=True)
class DeviceControl:
    """One controllable device as the control centre and the member's app show it."""

    device_id: str
    kind: str
    key: str
    member_id: str | None
    unit: str
    words: tuple[str, ...]
    minimum: float | None
    maximum: float | None
    #: what the device holds: the read-back of the last acknowledged command (None: nothing
    #: commanded, or the limit removed)
    value: Any
    since_ms: int | None
    requested_by: str
    reason: str
    #: when the device drops it by itself (revert_s), None: it holds until changed
    expires_at_ms: int | None
    #: the latest command for the point, whatever became of it
    last_command_id: str | None
    last_state: str | None
    #: the rule that last acted on the point, and why
    last_rule_id: str
    last_rule_reason: str
    #: a manual override in force (the rules on the point pause until it ends)
    override_by: str | None
    override_until_ms: int | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["words"] = list(self.words)
        return out


def is_controllable(device: Device) -> bool:
    """What the control centre lists: devices marked controllable, and every inverter,
    battery or charger the system can write (an operator may limit any of them)."""
    kind = device_kind(device)
    if kind is None:
        return False
    return bool(device.protocol.get("controllable")) or (
        kind == "ev" or (kind == "modbus" and device.role in ("generation", "storage")))


def visible_devices(community: Community, member_id: str | None) -> list[Device]:
    """An operator's (member_id None) or a member's controllable devices: a member sees only
    the devices the registry marks as theirs *and* controllable, as it may control only those."""
    devices = [d for d in community.devices if is_controllable(d)]
    if member_id is None:
        return devices
    return [d for d in devices
            if d.member_id == member_id and d.protocol.get("controllable") is True]


def device_controls(devices: Iterable[Device], entries: Sequence[CommandEntry],
                    holds: Mapping[tuple[str, str], Hold]) -> list[DeviceControl]:
    """Pure: the devices' current state from the log's entries (newest first)."""
    out = []
    for device in devices:
        kind = device_kind(device) or ""
        key = DEFAULT_KEYS.get(kind, "")
        spec = KEYS.get(key)
        mine = [e for e in entries if e.device_id == device.id and e.key == key]
        held = next((e for e in mine if e.state == "acknowledged"), None)
        rule = next((e for e in mine if e.rule_id), None)
        hold = holds.get((device.id, key))
        revert = _revert_s(held)
        out.append(DeviceControl(
            device_id=device.id, kind=kind, key=key, member_id=device.member_id,
            unit=spec.unit if spec else "", words=spec.words if spec else (),
            minimum=spec.minimum if spec else None, maximum=spec.maximum if spec else None,
            value=held.readback if held else None,
            since_ms=(held.executed_at_ms or held.issued_at_ms) if held else None,
            requested_by=held.requested_by if held else "", reason=held.reason if held else "",
            expires_at_ms=((held.executed_at_ms or held.issued_at_ms) + revert * 1000)
            if held and revert and kind in REVERTING_KINDS else None,
            last_command_id=mine[0].command_id if mine else None,
            last_state=mine[0].state if mine else None,
            last_rule_id=rule.rule_id if rule else "", last_rule_reason=rule.reason if rule else "",
            override_by=hold.requested_by if hold else None,
            override_until_ms=hold.until_ms if hold else None))
    return out


def _revert_s(entry: CommandEntry | None) -> int | None:
    return entry.revert_s if entry is not None else None


@dataclass(frozen=True)
class OverrideRequest:
    device_id: str
    key: str
    value: float | str | None
    expires_s: int
    reason: str

    @classmethod
    def from_body(cls, data: Mapping[str, Any]) -> OverrideRequest:
        if data.get("confirm") is not True:
            raise OverrideRefused(400, "confirmation_required",
                                  "a command from the web needs \"confirm\": true (the control "
                                  "centre asks before sending)")
        device_id, key = data.get("device_id"), data.get("key")
        if not isinstance(device_id, str) or not device_id or not isinstance(key, str):
            raise OverrideRefused(400, "bad_request", "device_id and key are strings")
        value = data.get("value")
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, int | float | str)):
            raise OverrideRefused(400, "bad_request", "value is a number, a word or null")
        expires = data.get("expires_s", DEFAULT_EXPIRY_S)
        if isinstance(expires, bool) or not isinstance(expires, int) \
                or not MIN_EXPIRY_S <= expires <= MAX_EXPIRY_S:
            raise OverrideRefused(400, "bad_request", f"expires_s is whole seconds in "
                                  f"[{MIN_EXPIRY_S}, {MAX_EXPIRY_S}]")
        reason = data.get("reason") or "manual override (control centre)"
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise OverrideRefused(400, "bad_request", f"reason is text of at most {MAX_REASON}")
        return cls(device_id, key, value, expires, reason)


class CommandSender:
    """Issues, stores and sends the web's commands; one Kafka producer, made on first use.

    Blocking (the broker, ClickHouse): call it from the thread pool."""

    def __init__(self, settings: Settings, rate: RateLimit | None = None) -> None:
        self.settings = settings
        self.rate = rate or RateLimit()
        self._producer: Any = None
        self._lock = threading.Lock()

    def send(self, registry: Registry, requester: Requester, wanted: OverrideRequest,
             now_ms: int) -> Issued:
        from control.bus import send_command
        from ioe.kafka import make_producer

        store = CommandLog(self.settings)
        try:
            previous = store.manual_sent_ms(wanted.device_id, now_ms - self.rate.window_ms)
            issued = issue(registry, requester, wanted.device_id, wanted.key, wanted.value,
                           reason=wanted.reason, now_ms=now_ms, revert_s=wanted.expires_s,
                           rate_limit=self.rate, previous_ms=previous)
            store.add_commands([issued])
        finally:
            store.close()
        if issued.status == "sent":
            with self._lock:
                if self._producer is None:
                    self._producer = make_producer(self.settings)
                send_command(self._producer, self.settings, issued.command)
                self._producer.flush(timeout=10)
        return issued

    def holds(self, community_id: str, now_ms: int) -> dict[tuple[str, str], Hold]:
        store = CommandLog(self.settings)
        try:
            return store.manual_holds(community_id, now_ms)
        finally:
            store.close()

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None
