"""The command model's rules: who may ask, what may be asked, and for how long it is valid.

Why here and again at the device: the issuer refuses what no one may ask (a member switching a
neighbour's water heater, a limit of 150 %) before anything travels, so the refusal is logged
with who asked and never reaches a device; the executor still applies the device's own map
bounds, because the topic is not the only way a command can be written.

Requesters: ``operator:<name>`` (controls every device of the communities it operates, ``*`` =
all), ``member:<member_id>`` (only devices the registry marks as theirs *and* controllable:
``protocol: {…, controllable: true}``), ``rule:<rule_id>`` (acts for the community of its
rule file). Every command has a deadline: the executor never runs it after that.

Manual commands (operators, members) are also rate limited per device (:class:`RateLimit`):
a device's relay or inverter limit toggled many times a minute wears the device and usually
means a script gone wrong or two people fighting. Rules are not counted here: they have
``min_interval_s`` and one owner per point, and their renewals must never be refused.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from control.ocpp.limits import ChargerSpec, OutOfBounds
from ioe.messages import Command
from ioe.registry import Device, Registry

log = logging.getLogger(__name__)

#: a command not executed within this many seconds is expired (an interactive default: the
#: operator is waiting; rules give their own, shorter ttl)
DEFAULT_TTL_S = 60
MAX_TTL_S = 24 * 3600


class Refused(ValueError):
    """A command that may not be sent; the message says why (it is stored with the command)."""


@dataclass(frozen=True)
class KeySpec:
    """A control key as the system knows it, whatever the device: its unit and hard bounds."""

    key: str
    kinds: tuple[str, ...]  # which kinds of device take it (modbus, relay, ev)
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    words: tuple[str, ...] = ()
    nullable: bool = False
    description: str = ""


KEYS: dict[str, KeySpec] = {k.key: k for k in (
    KeySpec("power_limit_pct", ("modbus",), "%", 0, 100, nullable=True,
            description="inverter active power limit"),
    KeySpec("power_limit_w", ("modbus",), "W", 0, 1_000_000),
    KeySpec("export_limit_w", ("modbus",), "W", 0, 1_000_000, nullable=True,
            description="maximum grid feed-in at the plant's meter"),
    KeySpec("connected", ("modbus",), words=("on", "off")),
    KeySpec("storage_charge_limit_pct", ("modbus",), "%", 0, 100, nullable=True),
    KeySpec("storage_discharge_limit_pct", ("modbus",), "%", 0, 100, nullable=True),
    KeySpec("storage_charge_limit_w", ("modbus",), "W", 0, 100_000),
    KeySpec("storage_discharge_limit_w", ("modbus",), "W", 0, 100_000),
    KeySpec("storage_grid_charging", ("modbus",), words=("on", "off")),
    KeySpec("relay", ("relay",), words=("on", "off"), description="switch a relay or plug"),
    KeySpec("ev_current_a", ("ev",), "A", 0, 80, nullable=True,
            description="EV charging current limit (0 pauses; none removes the profile)"),
    KeySpec("ev_power_w", ("ev",), "W", 0, 60_000, nullable=True,
            description="EV charging power limit (0 pauses; none removes the profile)"),
)}

RELAY_DECODERS = ("shelly-gen1", "shelly_gen1", "shelly-gen2", "shelly_gen2", "shelly-gen3",
                  "tasmota")


def device_kind(device: Device) -> str | None:
    """How the system can act on a device: ``modbus``, ``relay``, ``ev`` or None."""
    protocol = device.protocol
    kind = protocol.get("type")
    if kind == "modbus" and not protocol.get("via"):
        return "modbus"
    if kind == "mqtt" and protocol.get("decoder") in RELAY_DECODERS:
        return "relay"
    if kind == "ocpp":
        return "ev"
    return None


@dataclass(frozen=True)
class Requester:
    kind: str  # operator | member | rule
    name: str
    #: communities an operator may act on ("*" = all); a rule's own community
    communities: frozenset[str] = frozenset({"*"})

    @classmethod
    def parse(cls, text: str, communities: Collection[str] | None = None) -> Requester:
        kind, sep, name = text.partition(":")
        if not sep or kind not in ("operator", "member", "rule") or not name:
            raise Refused(f"requester {text!r}: expected operator:<name>, member:<id> or "
                          "rule:<id>")
        return cls(kind, name, frozenset(communities) if communities else frozenset({"*"}))

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


def authorize(requester: Requester, device: Device) -> None:
    """Raise :class:`Refused` unless ``requester`` may control ``device``."""
    if "*" not in requester.communities and device.community_id not in requester.communities:
        # a member id is only unique inside its community: m01 of one community is not m01
        # of another, whose devices the registry also marks ``member: m01``
        verb = "belong to" if requester.kind == "member" else "operate"
        raise Refused(f"{requester} does not {verb} community {device.community_id}")
    if requester.kind == "member":
        if device.member_id != requester.name:
            raise Refused(f"member {requester.name} may not control {device.id}: it is not "
                          "theirs")
        if device.protocol.get("controllable") is not True:
            raise Refused(f"member {requester.name} may not control {device.id}: the registry "
                          "does not mark it controllable")
        return


def bound(key: str, value: Any, device: Device) -> float | str | None:
    """The value, checked against the key's hard bounds and the device's own (EV current)."""
    spec = KEYS.get(key)
    kind = device_kind(device)
    if spec is None:
        raise Refused(f"unknown control key {key!r} (known: {', '.join(sorted(KEYS))})")
    if kind is None:
        raise Refused(f"device {device.id} has no control path (protocol "
                      f"{dict(device.protocol).get('type')!r})")
    if kind not in spec.kinds:
        raise Refused(f"{key} does not apply to {device.id} (a {kind} device)")
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        if not spec.nullable:
            raise Refused(f"{key}: 'none' is not allowed")
        return None
    if spec.words:
        word = str(value).lower()
        if word in ("true", "1"):
            word = "on"
        elif word in ("false", "0"):
            word = "off"
        if word not in spec.words:
            raise Refused(f"{key}: value must be one of {', '.join(spec.words)}, got {value!r}")
        return word
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Refused(f"{key}: {value!r} is not a number") from None
    low, high = _device_bounds(spec, device)
    if not math.isfinite(number) or not low <= number <= high:
        raise Refused(f"{key}: {value} is outside [{low:g}, {high:g}] {spec.unit}".rstrip())
    if kind == "ev":  # the charger's own bounds: 0 (pause) or [min, max] current
        try:
            ChargerSpec.of(device).check(key, number)
        except OutOfBounds as exc:
            raise Refused(str(exc)) from None
    return int(number) if number == int(number) else number


def _device_bounds(spec: KeySpec, device: Device) -> tuple[float, float]:
    low = -math.inf if spec.minimum is None else spec.minimum
    high = math.inf if spec.maximum is None else spec.maximum
    if spec.key == "ev_current_a":
        high = min(high, float(device.protocol.get("max_current_a", high)))
    return low, high


#: manual commands per device per minute unless configured (``--rate-per-min`` /
#: ``IOE_CONTROL_RATE_PER_MIN``): enough for a person trying things, not for a loop
DEFAULT_RATE_PER_MIN = 6
RATE_WINDOW_MS = 60_000
#: requesters the rate limit counts (rules pace themselves: ``min_interval_s``)
RATE_LIMITED_KINDS = frozenset({"operator", "member"})


@dataclass(frozen=True)
class RateLimit:
    """At most ``per_minute`` manual commands per device in any ``window_ms``. Pure: the
    caller passes the issue times of the device's earlier commands (from the command log,
    which every issuer shares, so the limit holds across processes) and the clock."""

    per_minute: int = DEFAULT_RATE_PER_MIN
    window_ms: int = RATE_WINDOW_MS

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.window_ms < 1:
            raise ValueError(f"rate limit must allow at least 1 command per window, got "
                             f"{self.per_minute} per {self.window_ms} ms")

    def refusal(self, device_id: str, previous_ms: Sequence[int], now_ms: int) -> str | None:
        """Why one more command for ``device_id`` at ``now_ms`` is refused, or None."""
        recent = sorted(t for t in previous_ms if 0 <= now_ms - t < self.window_ms)
        if len(recent) < self.per_minute:
            return None
        # the oldest command that still counts leaves the window first
        retry_s = math.ceil((recent[-self.per_minute] + self.window_ms - now_ms) / 1000)
        return (f"rate limit: {len(recent)} manual commands for {device_id} in the last "
                f"{self.window_ms / 1000:g} s (at most {self.per_minute}); retry in "
                f"{max(retry_s, 1)} s")


@dataclass
class RateCounter:
    """How many commands the rate limit refused, per device (for a long-running issuer's
    metrics; a one-shot ``ioe control send`` has the command log, where each refusal is a
    row with ``status = refused`` and a ``rate limit:`` refusal)."""

    refused: Counter[str] = field(default_factory=Counter)

    def count(self, issued: Issued) -> None:
        if issued.status == "refused" and is_rate_limited(issued):
            self.refused[issued.command.device_id] += 1


def is_rate_limited(issued: Issued) -> bool:
    return issued.status == "refused" and issued.refusal.startswith("rate limit:")


@dataclass(frozen=True)
class Issued:
    """The outcome of asking: the command (always, for the log), and why it was refused."""

    command: Command
    status: str  # sent | refused | dry_run
    refusal: str = ""


def new_command_id() -> str:
    return uuid.uuid4().hex


def issue(registry: Registry, requester: Requester, device_id: str, key: str, value: Any, *,
          reason: str, now_ms: int, ttl_s: float = DEFAULT_TTL_S, revert_s: int | None = None,
          rule_id: str | None = None, dry_run: bool = False,
          command_id: str | None = None, rate_limit: RateLimit | None = None,
          previous_ms: Sequence[int] = ()) -> Issued:
    """Check and build one command. Never raises: a refusal is an :class:`Issued` with status
    ``refused`` (logged here, stored by the caller) and is not to be sent.

    With ``rate_limit``, a manual requester's command is refused when ``previous_ms`` (the
    issue times of the device's earlier manual commands that were sent) already fill the
    window; checked last, so a command refused for another reason says that reason."""
    device = registry.device(device_id)
    community = device.community_id if device else (
        next(iter(requester.communities - {"*"}), "") if requester.communities else "")
    deadline = now_ms + int(min(max(ttl_s, 0), MAX_TTL_S) * 1000)
    command = Command(command_id=command_id or new_command_id(), community_id=community,
                      device_id=device_id, key=key,
                      value=value if value is None or isinstance(value, int | float | str)
                      else str(value),
                      requested_by=str(requester), reason=reason, issued_at_ms=now_ms,
                      deadline_ms=deadline, revert_s=revert_s, rule_id=rule_id,
                      dry_run=dry_run)
    try:
        if device is None:
            raise Refused(f"unknown device {device_id!r}")
        if device.is_official:
            raise Refused(f"{device_id} is the distributor's meter: it cannot be controlled")
        authorize(requester, device)
        checked = bound(key, value, device)
        if revert_s is not None and not 0 <= revert_s <= 65534:
            raise Refused(f"revert {revert_s} s is outside [0, 65534] s")
        if rate_limit is not None and requester.kind in RATE_LIMITED_KINDS and not dry_run:
            refusal = rate_limit.refusal(device_id, previous_ms, now_ms)
            if refusal is not None:
                raise Refused(refusal)
    except Refused as exc:
        log.warning("command refused: %s asked %s %s=%r: %s", requester, device_id, key, value,
                    exc)
        return Issued(command, "refused", str(exc))
    command = Command(**{**_fields(command), "value": checked})
    return Issued(command, "dry_run" if dry_run else "sent")


def _fields(command: Command) -> dict[str, Any]:
    return {name: getattr(command, name) for name in command.__dataclass_fields__}


def parse_set(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--set``: numbers become numbers, ``none`` None, words stay words."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise Refused(f"--set {text!r}: expected KEY=VALUE")
    word = value.strip()
    if word.lower() in ("none", "null"):
        return key.strip(), None
    try:
        number = float(word)
    except ValueError:
        return key.strip(), word
    return key.strip(), int(number) if number == int(number) else number


def controllable(registry: Registry, community_id: str) -> Mapping[str, str]:
    """device id -> kind for every device of a community the system can act on."""
    community = registry.community(community_id)
    if community is None:
        return {}
    return {d.id: kind for d in community.devices if (kind := device_kind(d)) is not None}


def check_command(registry: Registry, command: Command) -> Issued:
    """An already built command (a rule's) through the same checks as :func:`issue`: a rule
    acts for its rule file's community only, within the same bounds as anyone else."""
    try:
        requester = Requester.parse(command.requested_by, (
            {command.community_id} if command.requested_by.startswith("rule:") else None))
    except Refused as exc:
        return Issued(command, "refused", str(exc))
    checked = issue(registry, requester, command.device_id, command.key, command.value,
                    reason=command.reason, now_ms=command.issued_at_ms,
                    ttl_s=(command.deadline_ms - command.issued_at_ms) / 1000,
                    revert_s=command.revert_s, rule_id=command.rule_id,
                    dry_run=command.dry_run, command_id=command.command_id)
    return checked
