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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from control.live import LiveState
from ioe.messages import Command


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
        Param("member", str), Param("on_above_w", NUM), Param("off_below_w", NUM),
        Param("for_s", NUM, 60.0), Param("off_for_s", NUM, 0.0),
        Param("min_on_s", NUM, 300.0), Param("min_off_s", NUM, 60.0))),
    "ev_surplus": ("charger", "ev_current_a", (
        Param("member", str), Param("min_current_a", NUM, 6.0),
        Param("max_current_a", NUM, 16.0), Param("phases", int, 1),
        Param("voltage_v", NUM, 230.0), Param("for_s", NUM, 60.0),
        Param("renew_s", NUM, 0.0))),
    "battery_surplus": ("battery", "storage_charge_limit_pct", (
        Param("max_charge_w", NUM), Param("member", str, None),
        Param("revert_s", int, 300), Param("step_pct", NUM, 5.0),
        Param("renew_s", NUM, 0.0))),
}


# -- YAML with line numbers --------------------------------------------------------------------
class _Lines(dict):  # type: ignore[type-arg]
    line: int = 0
    key_lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> _Lines:
    result = _Lines(loader.construct_mapping(node, deep=True))
    result.line = node.start_mark.line + 1
    result.key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _line(obj: Any, key: str | None = None) -> int:
    if key is not None and key in getattr(obj, "key_lines", {}):
        return int(obj.key_lines[key])
    return int(getattr(obj, "line", 1) or 1)


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
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
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


def _parse_rule(raw: _Lines, fail: Any, registry: Any, community: str) -> Rule:
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
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
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


def _check_kind(kind: str, rid: str, values: dict[str, Any], raw: Any, fail: Any) -> None:
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


def evaluate(rules: RuleSet, live: LiveState, memory: Mapping[str, RuleMemory],
             now_ms: int) -> Evaluation:
    """The commands the rules want now, and their new memory. Pure: same inputs, same output
    (command ids are ``<rule>:<now_ms>``, so a replay sends the same ids)."""
    commands: list[Command] = []
    notes: list[str] = []
    new_memory = dict(memory)
    for rule in rules.rules:
        state = memory.get(rule.id, RuleMemory())
        step = _KIND_FUNCS[rule.kind](rule, live, state, now_ms)
        if isinstance(step, Hold):
            new_memory[rule.id] = step.memory
            notes.append(f"{rule.id}: {step.note}")
            continue
        if isinstance(step, str):
            notes.append(f"{rule.id}: {step}")
            continue
        value, why, state = step
        new_memory[rule.id] = replace(state, value=value, sent_at_ms=now_ms, why=why)
        commands.append(Command(
            command_id=f"{rule.id}:{now_ms}", community_id=rules.community_id,
            device_id=rule.device, key=rule.key, value=value, requested_by=f"rule:{rule.id}",
            reason=why, issued_at_ms=now_ms, deadline_ms=now_ms + int(rule.ttl_s * 1000),
            revert_s=rule.params.get("revert_s"), rule_id=rule.id, dry_run=rule.dry_run))
    return Evaluation(commands, new_memory, notes)


#: (value, why, memory) = send a command; a string = nothing to do; Hold = nothing to send but
#: the timers moved
Step = Any


def _recent(rule: Rule, state: RuleMemory, now_ms: int) -> bool:
    return state.sent_at_ms is not None and now_ms - state.sent_at_ms < rule.min_interval_s * 1000


def _renew_due(rule: Rule, state: RuleMemory, now_ms: int) -> bool:
    """A limit with a revert timeout is re-sent before the device drops it: only a lost link
    (no renewal arriving) lets the device fall back to its default."""
    renew_s = rule.params.get("renew_s") or (rule.params.get("revert_s") or 0) / 2
    return bool(renew_s) and state.sent_at_ms is not None and (
        now_ms - state.sent_at_ms >= renew_s * 1000)


def _export_limit(rule: Rule, live: LiveState, state: RuleMemory, now_ms: int) -> Step:
    export = live.community_export_w(now_ms, rule.max_age_s)
    if export is None:
        return "no live community surplus"
    max_w = rule.p("max_export_kw") * 1000
    low_w = max_w - rule.p("hysteresis_kw") * 1000
    current = 100.0 if state.value is None else float(state.value)
    step = float(rule.p("step_pct"))
    if export > max_w:
        if current <= rule.p("min_pct"):
            if _renew_due(rule, state, now_ms):
                return current, f"renew: export {export / 1000:.1f} kW, at minimum", state
            return "export over the limit, inverter already at its minimum"
        if _recent(rule, state, now_ms):
            return "export over the limit, waiting min_interval_s"
        rated = rule.p("rated_kw") * 1000
        if rated > 0:  # straight to the limit that removes the overshoot
            step = max(step, math.ceil((export - max_w) / rated * 100))
        target = max(float(rule.p("min_pct")), current - step)
        return _pct(target), (f"export {export / 1000:.1f} kW > {max_w / 1000:g} kW: limit "
                              f"{current:g} -> {target:g} %"), state
    if export < low_w and state.value is not None:
        if _recent(rule, state, now_ms):
            return "export low, waiting min_interval_s"
        target = min(100.0, current + step)
        why = (f"export {export / 1000:.1f} kW < {low_w / 1000:g} kW: limit {current:g} -> "
               f"{'none' if target >= 100 else f'{target:g} %'}")
        return (None if target >= 100 else _pct(target)), why, state
    if state.value is not None and _renew_due(rule, state, now_ms):
        return state.value, f"renew limit {current:g} % (export {export / 1000:.1f} kW)", state
    return "export within the band"


def _pct(value: float) -> float | int:
    rounded = round(value, 1)
    return int(rounded) if rounded == int(rounded) else rounded


def _surplus_load(rule: Rule, live: LiveState, state: RuleMemory, now_ms: int) -> Step:
    surplus = live.member_surplus_w(rule.p("member"), now_ms, rule.max_age_s)
    if surplus is None:
        return "no live surplus of the member"
    on = state.value == "on"
    if not on:
        if surplus < rule.p("on_above_w"):
            return _hold(replace(state, since_ms=None), "off: surplus below on_above_w")
        since = state.since_ms if state.since_ms is not None else now_ms
        if state.switched_at_ms is not None and (
                now_ms - state.switched_at_ms < rule.p("min_off_s") * 1000):
            return _hold(replace(state, since_ms=since), "off: minimum off-time")
        if now_ms - since < rule.p("for_s") * 1000:
            return _hold(replace(state, since_ms=since), "off: surplus above, waiting for_s")
        return "on", (f"surplus {surplus:.0f} W >= {rule.p('on_above_w'):g} W for "
                      f"{(now_ms - since) / 1000:.0f} s: on"), replace(
            state, since_ms=None, switched_at_ms=now_ms)
    if surplus >= rule.p("off_below_w"):
        return _hold(replace(state, since_ms=None), "on: surplus above off_below_w")
    since = state.since_ms if state.since_ms is not None else now_ms
    if state.switched_at_ms is not None and (
            now_ms - state.switched_at_ms < rule.p("min_on_s") * 1000):
        return _hold(replace(state, since_ms=since), "on: minimum on-time")
    if now_ms - since < rule.p("off_for_s") * 1000:
        return _hold(replace(state, since_ms=since), "on: surplus low, waiting off_for_s")
    return "off", f"surplus {surplus:.0f} W < {rule.p('off_below_w'):g} W: off", replace(
        state, since_ms=None, switched_at_ms=now_ms)


@dataclass(frozen=True)
class Hold:
    """No command; the rule's timers may still have moved (a condition started holding)."""

    note: str
    memory: RuleMemory


def _hold(state: RuleMemory, note: str) -> Hold:
    return Hold(note, state)


def _ev_surplus(rule: Rule, live: LiveState, state: RuleMemory, now_ms: int) -> Step:
    surplus = live.member_surplus_w(rule.p("member"), now_ms, rule.max_age_s)
    if surplus is None:
        return "no live surplus of the member"
    current = float(state.value) if isinstance(state.value, int | float) else 0.0
    # the charger's own draw is part of the member's consumption: available = surplus + draw
    available_a = surplus / (rule.p("voltage_v") * rule.p("phases")) + current
    target = math.floor(min(available_a, rule.p("max_current_a")))
    if target < rule.p("min_current_a"):
        since = state.since_ms if state.since_ms is not None else now_ms
        if current == 0 and state.value is not None:
            return _hold(replace(state, since_ms=since), "paused: surplus below minimum")
        if now_ms - since < rule.p("for_s") * 1000:
            return _hold(replace(state, since_ms=since), "surplus below minimum, waiting for_s")
        target = 0
    if target == current and state.value is not None:
        if _renew_due(rule, state, now_ms):
            return target, f"renew {target} A", replace(state, since_ms=None)
        return _hold(replace(state, since_ms=None), f"holding {target} A")
    if _recent(rule, state, now_ms):
        return "waiting min_interval_s"
    why = (f"surplus {surplus:.0f} W: charge at {target} A" if target else
           f"surplus {surplus:.0f} W below {rule.p('min_current_a'):g} A: pause")
    return target, why, replace(state, since_ms=None)


def _battery_surplus(rule: Rule, live: LiveState, state: RuleMemory, now_ms: int) -> Step:
    member = rule.p("member")
    surplus = (live.member_surplus_w(member, now_ms, rule.max_age_s) if member else
               live.community_export_w(now_ms, rule.max_age_s))
    if surplus is None:
        return "no live surplus"
    current = float(state.value) if isinstance(state.value, int | float) else 0.0
    draw = current / 100 * rule.p("max_charge_w")
    pct = max(0.0, min(100.0, (surplus + draw) / rule.p("max_charge_w") * 100))
    target = _pct(math.floor(pct / rule.p("step_pct")) * rule.p("step_pct"))
    if state.value is not None and target == current:
        if _renew_due(rule, state, now_ms):
            return target, f"renew charge limit {target} %", state
        return f"holding charge limit {target} %"
    if _recent(rule, state, now_ms):
        return "waiting min_interval_s"
    return target, f"surplus {surplus:.0f} W: charge limit {target} %", state


_KIND_FUNCS = {"export_limit": _export_limit, "surplus_load": _surplus_load,
               "ev_surplus": _ev_surplus, "battery_surplus": _battery_surplus}


def rules_summary(rules: RuleSet) -> list[str]:
    return [f"{r.id} ({r.kind}) -> {r.device} {r.key}{' [dry-run]' if r.dry_run else ''}"
            for r in rules.rules]


def owned_points(rule_sets: Sequence[RuleSet]) -> dict[tuple[str, str], str]:
    return {(r.device, r.key): r.id for rs in rule_sets for r in rs.rules}
