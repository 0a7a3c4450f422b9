"""Rules as data: one YAML file per community, checked with ``file:line`` errors, and the pure
evaluator that turns the live state into commands.

Why pure: the evaluation must end up in the stream worker (one community per partition, state
in a table), in ``ioe control run`` today, and in tests that step time by hand. So
:func:`evaluate` takes the rules, the live state, the rules' memory and the time, and returns
the commands and the new memory; it reads no clock, no file and no network.

A rule file::

    community: ce-benimaclet
    rules:
      - id: export-limit               # keep the community's export under 10 kW
        kind: export_limit
        inverter: inv-sunspec-1
        max_export_kw: 10
        hysteresis_kw: 2               # raise the limit again only below 8 kW
        step_pct: 10
        revert_s: 300                  # the inverter drops the limit by itself if not renewed
      - id: boiler-m01                 # a member's water heater on their own surplus
        kind: surplus_load
        member: m01
        device: shellyplug-s-boiler:0
        on_above_w: 1500               # surplus above 1.5 kW …
        for_s: 120                     # … for 2 min switches it on
        off_below_w: 200               # off again below 200 W (the heater eats the surplus)
        min_on_s: 600
        dry_run: true                  # only log and store what it would send

Rules never fight: one (device, key) has one owning rule, or the file is refused.

Why every limit a rule sets expires by itself: a rule's inverter, battery or charger limit is
written with ``revert_s`` (a SunSpec revert timeout, a charging profile's duration) and
:func:`evaluate` re-sends it every ``renew_s`` (default ``revert_s / 2``) for as long as the
rule still *holds* it. When the rule stops wanting it — no fresh live value, the rule removed
from the file, ``ioe control run`` stopped, the link lost — no renewal arrives and the device
falls back to its own safe default one ``revert_s`` later. The rule never believes a limit is
in force that the device has already dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from control.live import LiveState
from ioe import yamllines
from ioe.messages import Command
from ioe.yamllines import LineDict, line_of


class RuleError(ValueError):
    """A rule file that cannot be used; the message starts with ``file:line``."""


# -- the rules ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    device: str
    key: str
    line: int = 0
    dry_run: bool = False
    #: how long a command of this rule is valid (s): an edge offline longer never runs it late
    ttl_s: float = 30.0
    #: do not act on live values older than this (s)
    max_age_s: float = 60.0
    #: at most one change per this many seconds (per device: one owner per point)
    min_interval_s: float = 10.0
    params: Mapping[str, Any] = field(default_factory=dict)

    def p(self, name: str) -> Any:
        return self.params[name]


@dataclass(frozen=True)
class RuleSet:
    community_id: str
    rules: tuple[Rule, ...]
    source: str = "<rules>"


@dataclass(frozen=True)
class Param:
    name: str
    kind: type | tuple[type, ...]
    default: Any = ...  # ... = required
    #: may be below zero (every other number is a size, a time or a limit: never negative)
    signed: bool = False


NUM = (int, float)
COMMON = (Param("dry_run", bool, False), Param("ttl_s", NUM, 30.0),
          Param("max_age_s", NUM, 60.0), Param("min_interval_s", NUM, 10.0))
#: kind -> (device field, control key, parameters)
KINDS: dict[str, tuple[str, str, tuple[Param, ...]]] = {
    "export_limit": ("inverter", "power_limit_pct", (
        Param("max_export_kw", NUM), Param("hysteresis_kw", NUM, 1.0),
        Param("step_pct", NUM, 10.0), Param("min_pct", NUM, 0.0),
        Param("rated_kw", NUM, 0.0), Param("revert_s", int, 300),
        Param("renew_s", NUM, 0.0))),
    "surplus_load": ("device", "relay", (
        Param("member", str), Param("on_above_w", NUM), Param("off_below_w", NUM, signed=True),
        Param("for_s", NUM, 60.0), Param("off_for_s", NUM, 0.0),
        Param("min_on_s", NUM, 300.0), Param("min_off_s", NUM, 60.0))),
    "ev_surplus": ("charger", "ev_current_a", (
        Param("member", str), Param("min_current_a", NUM, 6.0),
        Param("max_current_a", NUM, 16.0), Param("phases", int, 1),
        Param("voltage_v", NUM, 230.0), Param("for_s", NUM, 60.0),
        Param("revert_s", int, 300), Param("renew_s", NUM, 0.0))),
    "battery_surplus": ("battery", "storage_charge_limit_pct", (
        Param("max_charge_w", NUM), Param("member", str, None),
        Param("revert_s", int, 300), Param("step_pct", NUM, 5.0),
        Param("renew_s", NUM, 0.0))),
}


def _line(obj: Any, key: str | None = None) -> int:
    return line_of(obj, key) or 1


def load_rules(path: str | Path, registry: Any = None) -> RuleSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"{path}:1: cannot read: {exc.strerror}") from None
    return parse_rules(text, source=str(path), registry=registry)


def parse_rules(text: str, *, source: str = "<rules>", registry: Any = None) -> RuleSet:
    """A rule file, checked; with ``registry`` its devices and members are checked too."""
    try:
        document = yamllines.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise RuleError(f"{source}:{line}: not valid YAML: "
                        f"{getattr(exc, 'problem', exc)}") from None

    def fail(obj: Any, message: str, key: str | None = None) -> RuleError:
        return RuleError(f"{source}:{_line(obj, key)}: {message}")

    if not isinstance(document, dict):
        raise RuleError(f"{source}:1: expected a mapping with 'community' and 'rules'")
    unknown = set(document) - {"community", "rules"}
    if unknown:
        key = sorted(unknown)[0]
        raise fail(document, f"unknown key {key!r} (expected community, rules)", key)
    community = document.get("community")
    if not isinstance(community, str) or not community:
        raise fail(document, "'community' must be the community id", "community")
    if registry is not None and registry.community(community) is None:
        raise fail(document, f"unknown community {community!r}", "community")
    raw_rules = document.get("rules") or []
    if not isinstance(raw_rules, list):
        raise fail(document, "'rules' must be a list", "rules")
    rules: list[Rule] = []
    ids: dict[str, int] = {}
    owners: dict[tuple[str, str], tuple[str, int]] = {}
    for raw in raw_rules:
        if not isinstance(raw, dict):
            raise fail(document, "each rule must be a mapping", "rules")
        rule = _parse_rule(raw, fail, registry, community)  # type: ignore[arg-type]
        if rule.id in ids:
            raise fail(raw, f"duplicate rule id {rule.id!r} (first at line {ids[rule.id]})",
                       "id")
        ids[rule.id] = rule.line
        owner = owners.get((rule.device, rule.key))
        if owner is not None:
            raise fail(raw, f"rule {rule.id!r} would fight rule {owner[0]!r} (line {owner[1]}) "
                            f"over {rule.device} {rule.key}: one owner per point",
                       KINDS[rule.kind][0])
        owners[(rule.device, rule.key)] = (rule.id, rule.line)
        rules.append(rule)
    return RuleSet(community, tuple(rules), source)


def _parse_rule(raw: LineDict, fail: Any, registry: Any, community: str) -> Rule:
    rid = raw.get("id")
    if not isinstance(rid, str) or not rid:
        raise fail(raw, "a rule needs an 'id'")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise fail(raw, f"rule {rid}: kind must be one of {', '.join(KINDS)}, got {kind!r}",
                   "kind")
    device_field, key, params = KINDS[kind]
    allowed = {"id", "kind", device_field, *(p.name for p in (*COMMON, *params))}
    for name in raw:
        if name not in allowed:
            raise fail(raw, f"rule {rid}: unknown key {name!r} for kind {kind} (expected "
                            f"{', '.join(sorted(allowed - {'id', 'kind'}))})", name)
    device = raw.get(device_field)
    if not isinstance(device, str) or not device:
        raise fail(raw, f"rule {rid}: '{device_field}' must be a device id")
    values: dict[str, Any] = {}
    for param in (*COMMON, *params):
        if param.name not in raw:
            if param.default is ...:
                raise fail(raw, f"rule {rid}: missing required key {param.name!r}")
            values[param.name] = param.default
            continue
        value = raw[param.name]
        ok = isinstance(value, param.kind) and not (isinstance(value, bool)
                                                    and param.kind is not bool)
        if ok and isinstance(value, float) and not math.isfinite(value):
            ok = False
        if not ok:
            raise fail(raw, f"rule {rid}: {param.name!r} must be "
                            f"{_kind_name(param.kind)}, got {value!r}", param.name)
        if (isinstance(value, int | float) and not isinstance(value, bool) and value < 0
                and not param.signed):
            raise fail(raw, f"rule {rid}: {param.name!r} must not be negative", param.name)
        values[param.name] = value
    common = {p.name: values.pop(p.name) for p in COMMON}
    _check_kind(kind, rid, values, raw, fail)
    if registry is not None:
        _check_registry(registry, community, rid, device, values, raw, fail, device_field)
    return Rule(id=rid, kind=kind, device=device, key=key, line=_line(raw), params=values,
                dry_run=bool(common["dry_run"]), ttl_s=float(common["ttl_s"]),
                max_age_s=float(common["max_age_s"]),
                min_interval_s=float(common["min_interval_s"]))


#: the longest revert timeout a device takes (SunSpec ``WMaxLimPct_RvrtTms`` is a uint16;
#: :func:`control.commands.issue` refuses more)
MAX_REVERT_S = 65534


def _check_kind(kind: str, rid: str, values: dict[str, Any], raw: Any, fail: Any) -> None:
    if "revert_s" in values:  # a rule's limit must expire by itself, and be renewed before
        if not 1 <= values["revert_s"] <= MAX_REVERT_S:
            raise fail(raw, f"rule {rid}: revert_s must be in [1, {MAX_REVERT_S}] s (a "
                            "rule's limit must expire by itself if not renewed)", "revert_s")
        if values["renew_s"] and values["renew_s"] >= values["revert_s"]:
            raise fail(raw, f"rule {rid}: renew_s must be below revert_s (the device would "
                            "drop the limit between renewals)", "renew_s")
    if kind == "surplus_load" and values["off_below_w"] >= values["on_above_w"]:
        raise fail(raw, f"rule {rid}: off_below_w must be below on_above_w (the hysteresis "
                        "band keeps the load from flapping)", "off_below_w")
    if kind == "export_limit":
        if values["hysteresis_kw"] >= values["max_export_kw"] and values["max_export_kw"] > 0:
            raise fail(raw, f"rule {rid}: hysteresis_kw must be below max_export_kw",
                       "hysteresis_kw")
        if not 0 <= values["min_pct"] < 100:
            raise fail(raw, f"rule {rid}: min_pct must be in [0, 100)", "min_pct")
        if not 0 < values["step_pct"] <= 100:
            raise fail(raw, f"rule {rid}: step_pct must be in (0, 100]", "step_pct")
    if kind == "ev_surplus" and values["min_current_a"] > values["max_current_a"]:
        raise fail(raw, f"rule {rid}: min_current_a must not exceed max_current_a",
                   "min_current_a")


def _check_registry(registry: Any, community: str, rid: str, device_id: str,
                    values: dict[str, Any], raw: Any, fail: Any, device_field: str) -> None:
    from control.commands import device_kind

    device = registry.device(device_id)
    if device is None or device.community_id != community:
        raise fail(raw, f"rule {rid}: device {device_id!r} is not in community {community}",
                   device_field)
    if device_kind(device) is None:
        raise fail(raw, f"rule {rid}: device {device_id!r} cannot be controlled (protocol "
                        f"{dict(device.protocol).get('type')!r})", device_field)
    member = values.get("member")
    if member is not None:
        if registry.community(community).member(member) is None:
            raise fail(raw, f"rule {rid}: unknown member {member!r}", "member")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number",
                        "bool": "true or false"}.get(k.__name__, k.__name__) for k in kinds)


# -- evaluation (pure) -------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleMemory:
    """What a rule remembers between evaluations."""

    #: the value last commanded (None: nothing commanded yet or limit disabled)
    value: float | str | None = None
    sent_at_ms: int | None = None
    #: since when the switching condition holds (hysteresis timers)
    since_ms: int | None = None
    switched_at_ms: int | None = None
    #: the reason of the last command (shown in the control centre)
    why: str = ""


@dataclass(frozen=True)
class Evaluation:
    commands: list[Command]
    memory: dict[str, RuleMemory]
    #: one line per rule that had nothing to do, and why (debugging, never stored)
    notes: list[str] = field(default_factory=list)


# What one rule decides at one evaluation: three outcomes, so renewal is decided in one place
# (:func:`evaluate`) and not again in every kind.
@dataclass(frozen=True)
class Send:
    """A new value for the rule's point."""

    value: float | str | None
    why: str
    memory: RuleMemory


@dataclass(frozen=True)
class Hold:
    """The rule still wants the value it commanded (its timers may have moved): a limit with a
    revert timeout is renewed when due."""

    note: str
    memory: RuleMemory


@dataclass(frozen=True)
class Idle:
    """The rule cannot judge now (no fresh live value): nothing is sent and nothing is renewed,
    so a limit with a revert timeout lapses to the device's own default."""

    note: str


Step = Send | Hold | Idle


def renew_interval_ms(rule: Rule) -> int | None:
    """How often a held limit is re-sent (None: the rule's point has no revert timeout, e.g. a
    relay). ``renew_s`` when set, else half of ``revert_s``: a renewal may then arrive up to
    half the timeout late (a slow edge, a queue) before the device drops the limit."""
    revert_s = rule.params.get("revert_s")
    if not revert_s:
        return None
    renew_s = rule.params.get("renew_s") or revert_s / 2
    return int(renew_s * 1000)


def _renewal(rule: Rule, hold: Hold, now_ms: int) -> Send | None:
    """The held value again, when the device would otherwise drop it before the next chance."""
    interval = renew_interval_ms(rule)
    state = hold.memory
    if interval is None or state.value is None or state.sent_at_ms is None:
        return None  # nothing to expire: no revert timeout, or no limit in force
    if now_ms - state.sent_at_ms < interval:
        return None
    return Send(state.value, f"renew {rule.key}={state.value} before its "
                             f"{rule.params['revert_s']} s revert ({hold.note})", state)


def evaluate(rules: RuleSet, live: LiveState, memory: Mapping[str, RuleMemory],
             now_ms: int) -> Evaluation:
    """The commands the rules want now, and their new memory. Pure: same inputs, same output
    (command ids are ``<rule>:<now_ms>``, so a replay sends the same ids)."""
    commands: list[Command] = []
    notes: list[str] = []
    new_memory = dict(memory)
    for rule in rules.rules:
        state = memory.get(rule.id, RuleMemory())
        step: Step = _KIND_FUNCS[rule.kind](rule, live, state, now_ms)
        if isinstance(step, Hold):
            new_memory[rule.id] = step.memory
            renewal = _renewal(rule, step, now_ms)
            if renewal is None:
                notes.append(f"{rule.id}: {step.note}")
                continue
            step = renewal
        if isinstance(step, Idle):
            notes.append(f"{rule.id}: {step.note}")
            continue
        new_memory[rule.id] = replace(step.memory, value=step.value, sent_at_ms=now_ms,
                                      why=step.why)
        commands.append(Command(
            command_id=f"{rule.id}:{now_ms}", community_id=rules.community_id,
            device_id=rule.device, key=rule.key, value=step.value,
            requested_by=f"rule:{rule.id}", reason=step.why, issued_at_ms=now_ms,
            deadline_ms=now_ms + int(rule.ttl_s * 1000), revert_s=rule.params.get("revert_s"),
            rule_id=rule.id, dry_run=rule.dry_run))
    return Evaluation(commands, new_memory, notes)


def _recent(rule: Rule, state: RuleMemory, now_ms: int) -> bool:
    return state.sent_at_ms is not None and now_ms - state.sent_at_ms < rule.min_interval_s * 1000


def _export_limit(rule: Rule, live: LiveState, state: RuleMemory, now_ms: int) -> Step:
    export = live.community_export_w(now_ms, rule.max_age_s)
    if export is None:
        return Idle("no live community surplus")
    max_w = rule.p("max_export_kw") * 1000
    low_w = max_w - rule.p("hysteresis_kw") * 1000
    current = 100.0 if state.value is None else float(state.value)
    step = float(rule.p("step_pct"))
    if export > max_w:
        if current <= rule.p("min_pct"):
            return Hold(f"export {export / 1000:.1f} kW over the limit, inverter at its "
                        "minimum", state)
        if _recent(rule, state, now_ms):
            return Hold("export over the limit, waiting min_interval_s", state)
        rated = rule.p("rated_kw") * 1000
        output = live.generator_power_w(rule.device, now_ms, rule.max_age_s)
        if rated > 0 and output is not None:
            # straight to the limit that removes the overshoot from what the inverter gives
            # now (a limit above its output changes nothing: a sunless 15 kW inverter making
            # 7 kW is not curtailed by 90 %)
            fits = math.floor(max(output - (export - max_w), 0.0) / rated * 100)
            step = max(step, current - fits)
        elif rated > 0:  # output unknown: as if it were at its rating
            step = max(step, math.ceil((export - max_w) / rated * 100))
        target = max(float(rule.p("min_pct")), current - step)
        return Send(_pct(target), (f"export {export / 1000:.1f} kW > {max_w / 1000:g} kW: "
                                   f"limit {current:g} -> {target:g} %"), state)
    if export < low_w and state.value is not None:
        if _recent(rule, state, now_ms):
            return Hold("export low, waiting min_interval_s", state)
        target = min(100.0, current + step)
        why = (f"export {export / 1000:.1f} kW < {low_w / 1000:g} kW: limit {current:g} -> "
               f"{'none' if target >= 100 else f'{target:g} %'}")
        return Send(None if target >= 100 else _pct(target), why, state)
    return Hold(f"export {export / 1000:.1f} kW within the band", state)


def _pct(value: float) -> float | int:
    rounded = round(value, 1)
    return int(rounded) if rounded == int(rounded) else rounded


def _surplus_load(rule: Rule, live: LiveState, state: RuleMemory, now_ms: int) -> Step:
    surplus = live.member_surplus_w(rule.p("member"), now_ms, rule.max_age_s)
    if surplus is None:
        return Idle("no live surplus of the member")
    on = state.value == "on"
    if not on:
        if surplus < rule.p("on_above_w"):
            return Hold("off: surplus below on_above_w", replace(state, since_ms=None))
        since = state.since_ms if state.since_ms is not None else now_ms
        if state.switched_at_ms is not None and (
                now_ms - state.switched_at_ms < rule.p("min_off_s") * 1000):
            return Hold("off: minimum off-time", replace(state, since_ms=since))
        if now_ms - since < rule.p("for_s") * 1000:
            return Hold("off: surplus above, waiting for_s", replace(state, since_ms=since))
        return Send("on", (f"surplus {surplus:.0f} W >= {rule.p('on_above_w'):g} W for "
                           f"{(now_ms - since) / 1000:.0f} s: on"),
                    replace(state, since_ms=None, switched_at_ms=now_ms))
    if surplus >= rule.p("off_below_w"):
        return Hold("on: surplus above off_below_w", replace(state, since_ms=None))
    since = state.since_ms if state.since_ms is not None else now_ms
    if state.switched_at_ms is not None and (
            now_ms - state.switched_at_ms < rule.p("min_on_s") * 1000):
        return Hold("on: minimum on-time", replace(state, since_ms=since))
    if now_ms - since < rule.p("off_for_s") * 1000:
        return Hold("on: surplus low, waiting off_for_s", replace(state, since_ms=since))
    return Send("off", f"surplus {surplus:.0f} W < {rule.p('off_below_w'):g} W: off",
                replace(state, since_ms=None, switched_at_ms=now_ms))


def _ev_surplus(rule: Rule, live: LiveState, state: RuleMemory, now_ms: int) -> Step:
    surplus = live.member_surplus_w(rule.p("member"), now_ms, rule.max_age_s)
    if surplus is None:
        return Idle("no live surplus of the member")
    current = float(state.value) if isinstance(state.value, int | float) else 0.0
    # the charger's own draw is part of the member's consumption: available = surplus + draw
    available_a = surplus / (rule.p("voltage_v") * rule.p("phases")) + current
    target = math.floor(min(available_a, rule.p("max_current_a")))
    if target < rule.p("min_current_a"):
        since = state.since_ms if state.since_ms is not None else now_ms
        if current == 0 and state.value is not None:  # the pause (0 A) is held, and renewed
            return Hold("paused: surplus below minimum", replace(state, since_ms=since))
        if now_ms - since < rule.p("for_s") * 1000:
            return Hold(f"surplus below minimum, holding {current:g} A for for_s",
                        replace(state, since_ms=since))
        target = 0
    if target == current and state.value is not None:
        return Hold(f"holding {target} A", replace(state, since_ms=None))
    if _recent(rule, state, now_ms):
        return Hold("waiting min_interval_s", state)
    why = (f"surplus {surplus:.0f} W: charge at {target} A" if target else
           f"surplus {surplus:.0f} W below {rule.p('min_current_a'):g} A: pause")
    return Send(target, why, replace(state, since_ms=None))


def _battery_surplus(rule: Rule, live: LiveState, state: RuleMemory, now_ms: int) -> Step:
    member = rule.p("member")
    surplus = (live.member_surplus_w(member, now_ms, rule.max_age_s) if member else
               live.community_export_w(now_ms, rule.max_age_s))
    if surplus is None:
        return Idle("no live surplus")
    current = float(state.value) if isinstance(state.value, int | float) else 0.0
    draw = current / 100 * rule.p("max_charge_w")
    pct = max(0.0, min(100.0, (surplus + draw) / rule.p("max_charge_w") * 100))
    target = _pct(math.floor(pct / rule.p("step_pct")) * rule.p("step_pct"))
    if state.value is not None and target == current:
        return Hold(f"holding charge limit {target} %", state)
    if _recent(rule, state, now_ms):
        return Hold("waiting min_interval_s", state)
    return Send(target, f"surplus {surplus:.0f} W: charge limit {target} %", state)


_KIND_FUNCS = {"export_limit": _export_limit, "surplus_load": _surplus_load,
               "ev_surplus": _ev_surplus, "battery_surplus": _battery_surplus}


def rules_summary(rules: RuleSet) -> list[str]:
    return [f"{r.id} ({r.kind}) -> {r.device} {r.key}{' [dry-run]' if r.dry_run else ''}"
            for r in rules.rules]


def owned_points(rule_sets: Sequence[RuleSet]) -> dict[tuple[str, str], str]:
    return {(r.device, r.key): r.id for rs in rule_sets for r in rs.rules}
