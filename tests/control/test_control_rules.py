"""Rule files (``file:line`` errors) and the pure evaluator, time stepped by hand."""

from __future__ import annotations

import pytest
from control_helpers import COMMUNITY, community_live, make_registry, member

from control.live import LiveState
from control.rules import RuleError, evaluate, load_rules, parse_rules

T0 = 1_767_265_200_000  # 2026-01-01 11:00 UTC
S = 1000  # ms

RULES = f"""\
community: {COMMUNITY}
rules:
  - id: export-limit
    kind: export_limit
    inverter: inv-1
    max_export_kw: 5
    hysteresis_kw: 2
    step_pct: 10
    rated_kw: 10
    revert_s: 60
    min_interval_s: 5
  - id: boiler-m1
    kind: surplus_load
    member: m1
    device: {COMMUNITY}-boiler:0
    on_above_w: 1500
    for_s: 60
    off_below_w: 200
    min_on_s: 300
"""


def rules(text: str = RULES):
    return parse_rules(text, source="r.yaml", registry=make_registry())


def test_the_readme_example_file_validates(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    loaded = load_rules(path, make_registry())
    assert [r.id for r in loaded.rules] == ["export-limit", "boiler-m1"]
    assert loaded.rules[1].line == 12 and loaded.rules[1].params["min_on_s"] == 300


@pytest.mark.parametrize("change,line,why", [
    (("max_export_kw: 5", "max_export_kw: five"), 6, "'max_export_kw' must be an integer or a number"),
    (("kind: surplus_load", "kind: surplus_loadd"), 13, "kind must be one of"),
    (("    min_on_s: 300", "    min_on_secs: 300"), 19, "unknown key 'min_on_secs'"),
    (("    on_above_w: 1500\n", ""), 12, "missing required key 'on_above_w'"),
    (("off_below_w: 200", "off_below_w: 2000"), 18, "off_below_w must be below on_above_w"),
    (("on_above_w: 1500", "on_above_w: -1500"), 16, "'on_above_w' must not be negative"),
    (("member: m1", "member: m9"), 14, "unknown member 'm9'"),
    (("inverter: inv-1", "inverter: meter-m2"), 5, "cannot be controlled"),
    (("inverter: inv-1", "inverter: inv-9"), 5, "is not in community"),
    ((f"community: {COMMUNITY}", "community: ce-nope"), 1, "unknown community"),
    (("hysteresis_kw: 2", "hysteresis_kw: -2"), 7, "must not be negative"),
    (("    min_interval_s: 5\n", "    min_interval_s: 5\n   bad: [\n"), 12, "not valid YAML"),
])
def test_errors_name_file_and_line(change, line, why):
    text = RULES.replace(*change)
    assert text != RULES
    with pytest.raises(RuleError) as caught:
        rules(text)
    message = str(caught.value)
    assert message.startswith(f"r.yaml:{line}: "), message
    assert why in message, message


def test_two_rules_on_one_point_are_refused():
    text = RULES + """\
  - id: export-limit-2
    kind: export_limit
    inverter: inv-1
    max_export_kw: 3
"""
    with pytest.raises(RuleError, match=r"^r\.yaml:22: .*would fight rule 'export-limit' "
                                        r"\(line 3\).*one owner per point"):
        rules(text)


def test_duplicate_ids_are_refused():
    text = RULES + f"""\
  - id: boiler-m1
    kind: surplus_load
    member: m2
    device: {COMMUNITY}-plug
    on_above_w: 1000
    off_below_w: 100
"""
    with pytest.raises(RuleError, match=r"^r\.yaml:20: duplicate rule id 'boiler-m1' "
                                        r"\(first at line 12\)"):
        rules(text)


def run(ruleset, timeline):
    """Feed (t_s, live message) in order, evaluate after each; returns (t_s, command) list."""
    state = LiveState(COMMUNITY)
    memory: dict = {}
    sent = []
    for t, message in timeline:
        now = T0 + t * S
        if message is not None:
            state = state.apply(message)
        evaluation = evaluate(ruleset, state, memory, now)
        memory = evaluation.memory
        sent += [(t, c) for c in evaluation.commands]
    return sent, memory


def export_only():
    text = RULES.split("  - id: boiler-m1")[0]
    return rules(text)


def test_export_limit_lowers_then_raises_with_hysteresis():
    ruleset = export_only()
    w = lambda kw, t: (t, community_live(kw * 1000, T0 + t * S))  # noqa: E731
    sent, _ = run(ruleset, [
        w(4.0, 0),    # within the limit: nothing
        w(8.0, 10),   # 3 kW over on a 10 kW inverter: straight to 100 - 30 = 70 %
        w(6.0, 12),   # still over, but min_interval_s = 5 s: wait
        w(6.0, 16),   # over again: 70 - 10 = 60 %
        w(4.5, 22),   # inside the band (3..5 kW): hold
        w(3.5, 28),   # still in the band: hold
        w(2.5, 34),   # below 3 kW: raise 60 -> 70
        w(2.0, 40),   # raise 70 -> 80
        w(2.0, 46),   # 90
        w(2.0, 52),   # 100 = no limit: "none"
        w(2.0, 58),   # nothing left to raise
    ])
    assert [(t, c.value) for t, c in sent] == [(10, 70), (16, 60), (34, 70), (40, 80),
                                               (46, 90), (52, None)]
    first = sent[0][1]
    assert first.requested_by == "rule:export-limit" and first.revert_s == 60
    assert first.deadline_ms == T0 + 10 * S + 30_000 and "8.0 kW > 5 kW" in first.reason
    assert first.command_id == f"export-limit:{T0 + 10 * S}"  # deterministic: replay-safe


def test_export_limit_renews_before_the_revert_timeout():
    ruleset = export_only()
    timeline = [(0, community_live(9000, T0))] + [
        (t, community_live(4000, T0 + t * S)) for t in range(5, 100, 5)]
    sent, _ = run(ruleset, timeline)
    # lowered once, then renewed every revert_s / 2 = 30 s while the export stays in the band
    assert [(t, c.value) for t, c in sent] == [(0, 60), (30, 60), (60, 60), (90, 60)]
    assert all("renew" in c.reason for _, c in sent[1:])


def test_export_limit_steps_from_what_the_inverter_makes_now():
    """A 10 kW inverter making only 4,000 W (no sun), export 8 kW, 5 kW allowed: the limit
    that takes 3,000 W away is ⌊(4,000 − 3,000) / 10,000 · 100⌋ = 10 %, not 70 % (which would
    leave its 4 kW untouched). Its output unknown (stale), the rule falls back to its rating."""
    from dataclasses import replace

    from ioe.messages import GeneratorPower

    def with_inverter(power_w: float, t: int, stale: bool = False):  # noqa: ANN202
        live = community_live(8000, T0 + t * S)
        return t, replace(live, generators={"inv-1": GeneratorPower(power_w, live.ts_ms, stale)})

    sent, _ = run(export_only(), [with_inverter(4000, 0)])
    assert [(t, c.value) for t, c in sent] == [(0, 10)]
    assert "limit 100 -> 10 %" in sent[0][1].reason
    sent, _ = run(export_only(), [with_inverter(4000, 0, stale=True)])
    assert [(t, c.value) for t, c in sent] == [(0, 70)]


def test_stale_or_missing_values_never_act():
    ruleset = export_only()
    sent, _ = run(ruleset, [(0, None), (100, community_live(9000, T0))])  # 100 s old
    assert sent == []


def boiler_only():
    head, boiler = RULES.split("  - id: boiler-m1")
    return rules(head.split("  - id: export-limit")[0] + "  - id: boiler-m1" + boiler)


def test_surplus_load_waits_for_s_keeps_min_on_and_has_hysteresis():
    ruleset = boiler_only()
    s = lambda w, t: (t, member(w, T0 + t * S))  # noqa: E731
    sent, memory = run(ruleset, [
        s(2000, 0),     # above 1500 W: timer starts
        s(1000, 30),    # dips: timer reset
        s(2000, 40),    # above again: timer restarts at 40
        s(2000, 90),    # 50 s: not yet
        s(1800, 100),   # 60 s above: ON
        s(100, 150),    # the heater eats the surplus, but min_on_s = 300: stays on
        s(500, 420),    # above off_below_w: stays on
        s(100, 430),    # below 200 W after 330 s on: OFF
        s(2000, 440),   # min_off_s = 60 s: wait
        s(2000, 500),   # above for 60 s since 440: ON again
    ])
    assert [(t, c.value) for t, c in sent] == [(100, "on"), (430, "off"), (500, "on")]
    assert sent[0][1].key == "relay" and "for 60 s" in sent[0][1].reason
    assert memory["boiler-m1"].value == "on"


def test_a_negative_off_threshold_keeps_a_load_bigger_than_the_surplus_on():
    """The example's water heater (1.5 kW) on a member whose surplus is ~600 W: ``off_below_w:
    -1100`` keeps it on while, with the heater counted, the member imports under 1.1 kW."""
    head, boiler = RULES.split("  - id: boiler-m1")
    text = (head.split("  - id: export-limit")[0] + "  - id: boiler-m1" + boiler
            ).replace("off_below_w: 200", "off_below_w: -1100").replace(
            "on_above_w: 1500", "on_above_w: 400")
    s = lambda w, t: (t, member(w, T0 + t * S))  # noqa: E731
    sent, _ = run(rules(text), [
        s(600, 0), s(600, 60),  # 600 W ≥ 400 W for 60 s: ON
        s(600 - 1500, 400),     # the heater on: −900 W ≥ −1100 W, stays on
        s(200 - 1500, 500),     # −1300 W < −1100 W after 440 s on: OFF
    ])
    assert [(t, c.value) for t, c in sent] == [(60, "on"), (500, "off")]


def test_dry_run_commands_are_marked():
    text = RULES.replace("    min_on_s: 300", "    min_on_s: 300\n    dry_run: true")
    sent, _ = run(rules(text), [(0, member(3000, T0)), (60, member(3000, T0 + 60 * S))])
    assert [(t, c.value, c.dry_run) for t, c in sent] == [(60, "on", True)]


def test_ev_follows_surplus_within_min_and_max():
    text = f"""\
community: {COMMUNITY}
rules:
  - id: ev-m1
    kind: ev_surplus
    member: m1
    charger: ev-1
    min_current_a: 6
    max_current_a: 16
    for_s: 30
    min_interval_s: 0
"""
    s = lambda w, t: (t, member(w, T0 + t * S))  # noqa: E731
    sent, _ = run(rules(text), [
        s(2300, 0),    # 10 A available
        s(690, 10),    # charging 10 A already, 3 A more: 13 A
        s(9999, 20),   # capped at 16 A
        s(-2760, 30),  # 16 A - 12 A = 4 A < 6: wait for_s
        s(-2760, 61),  # still below after 31 s: pause (0 A)
    ])
    assert [(t, c.value) for t, c in sent] == [(0, 10), (10, 13), (20, 16), (61, 0)]


def test_member_state_from_another_community_is_ignored():
    state = LiveState(COMMUNITY).apply(member(5000, T0, community="ce-other"))
    assert state.members == {}


def test_the_readme_rule_file_validates():
    """The README's example is a real rule file — the one the demo runs
    (``infra/examples/rules.yaml``), rule for rule — and the CLI accepts it against the example
    registry."""
    import re
    import subprocess
    import sys

    from ioe.settings import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Control activo", 1)[1]
    (example,) = re.findall(r"```yaml\n(.*?)```", section, re.S)[:1]
    parsed = parse_rules(example, source="README.md")
    assert [r.kind for r in parsed.rules] == ["export_limit", "surplus_load"]
    shipped = load_rules(ROOT / "infra" / "examples" / "rules.yaml")
    assert [(r.id, r.kind, r.device, r.params) for r in parsed.rules] == \
        [(r.id, r.kind, r.device, r.params) for r in shipped.rules]
    path = ROOT / "infra" / "examples" / "community.yaml"
    done = subprocess.run([sys.executable, "-m", "ioe.cli", "control", "rules", "validate",
                           "/dev/stdin", "--registry", str(path)], input=example,
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ok, 2 rules for ce-benimaclet" in done.stdout
    # a device the registry does not have is named with its line
    broken = example.replace("shelly1pm-termo-m03:0", "shellyplug-s-boiler:0")
    done = subprocess.run([sys.executable, "-m", "ioe.cli", "control", "rules", "validate",
                           "/dev/stdin", "--registry", str(path)], input=broken,
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert re.match(r"/dev/stdin:\d+: rule termo-m03: device 'shellyplug-s-boiler:0' is not "
                    r"in community ce-benimaclet", done.stderr), done.stderr


def test_battery_charge_limit_follows_the_community_surplus():
    text = f"""\
community: {COMMUNITY}
rules:
  - id: battery
    kind: battery_surplus
    battery: inv-1
    max_charge_w: 5000
    step_pct: 10
    revert_s: 60
    min_interval_s: 0
"""
    c = lambda w, t: (t, community_live(w, T0 + t * S))  # noqa: E731
    sent, _ = run(rules(text), [
        c(2600, 0),    # 2.6 kW of 5 kW -> 52 % -> steps of 10: 50 %
        c(100, 5),     # charging 2.5 kW already + 0.1 kW left: still 50 %: hold
        c(-1000, 10),  # the community imports 1 kW: 1.5 kW for the battery -> 30 %
        c(-1500, 40),  # 1.5 - 1.5 = 0 -> 0 %
        c(0, 75),      # unchanged, but revert_s / 2 = 30 s since the last: renew 0 %
    ])
    assert [(t, c.key, c.value) for t, c in sent] == [
        (0, "storage_charge_limit_pct", 50), (10, "storage_charge_limit_pct", 30),
        (40, "storage_charge_limit_pct", 0), (75, "storage_charge_limit_pct", 0)]
