"""A rule's device limit carries its own expiry (``revert_s``) and is renewed while the rule
holds it — and only then.

The pure half steps :func:`control.rules.evaluate` over a sequence of live states with a clock
passed in, and checks the commands against a model of a device that drops a limit
``revert_s`` after it was written. The end-to-end half runs the real pieces: the
:class:`control.run.ControlLoop` (real Kafka), the OCPP central system and the simulated
wallbox of ``chargers.py``, which honours each profile's duration itself."""

from __future__ import annotations

import time

import pytest
from chargers import SimulatedCharger
from control_helpers import COMMUNITY, make_registry, member

from control.live import LiveState
from control.ocpp.central import CentralSystem
from control.rules import (
    RuleError,
    RuleMemory,
    RuleSet,
    evaluate,
    parse_rules,
    renew_interval_ms,
)
from control.run import ControlLoop
from ioe.messages import Command

T0 = 1_767_265_200_000  # 2026-01-01 11:00 UTC
S = 1000


def ev_rules(revert_s: int = 60, extra: str = "") -> RuleSet:
    return parse_rules(f"""\
community: {COMMUNITY}
rules:
  - id: ev-m1
    kind: ev_surplus
    member: m1
    charger: ev-1
    for_s: 0
    min_interval_s: 0
    max_age_s: 20
    revert_s: {revert_s}
{extra}""", source="r.yaml", registry=make_registry())


def run(ruleset: RuleSet, timeline: list[tuple[int, object]]) -> list[Command]:
    """Feed (t_s, live message or None) in order, evaluate after each, with the clock given."""
    state = LiveState(COMMUNITY)
    memory: dict[str, RuleMemory] = {}
    sent: list[Command] = []
    for t, message in timeline:
        if message is not None:
            state = state.apply(message)  # type: ignore[arg-type]
        evaluation = evaluate(ruleset, state, memory, T0 + t * S)
        memory = evaluation.memory
        sent += evaluation.commands
    return sent


def in_force(sent: list[Command], t_ms: int) -> float | str | None:
    """What a device that honours ``revert_s`` applies at ``t_ms``: the last command written,
    until its revert timeout; after that its own default (None)."""
    written = [c for c in sent if c.issued_at_ms <= t_ms]
    if not written:
        return None
    last = written[-1]
    assert last.revert_s, "a rule's limit must carry its expiry"
    return last.value if t_ms < last.issued_at_ms + last.revert_s * 1000 else None


def steady(surplus_w: float, until_s: int, every_s: int = 5, start_s: int = 0):
    return [(t, member(surplus_w, T0 + t * S)) for t in range(start_s, until_s, every_s)]


def charging(until_s: int, every_s: int = 5):
    """2.3 kW of surplus (10 A at 230 V) that the car then takes: once it charges at 10 A the
    member's surplus is 0, and the rule holds 10 A."""
    return [(0, member(2300, T0)), *steady(0, until_s, every_s, start_s=every_s)]


def test_the_ev_limit_carries_revert_s_and_is_renewed_while_the_rule_holds_it():
    sent = run(ev_rules(revert_s=60), charging(600))  # 10 A, for 10 min
    assert [(c.issued_at_ms - T0) // S for c in sent] == list(range(0, 600, 30))
    assert {c.value for c in sent} == {10} and {c.revert_s for c in sent} == {60}
    assert "charge at 10 A" in sent[0].reason
    assert all(c.reason.startswith("renew ev_current_a=10 before its 60 s revert")
               for c in sent[1:])
    # the device never fell back while the rule held the limit (ten durations)
    assert all(in_force(sent, T0 + t * S) == 10 for t in range(0, 600))


def test_a_pause_is_a_limit_too_and_is_renewed():
    """0 A (pause) held for long must not lapse: the charger's default is full current."""
    sent = run(ev_rules(revert_s=60), steady(-5000, 300))
    assert [c.value for c in sent] == [0] * 10
    assert all(in_force(sent, T0 + t * S) == 0 for t in range(0, 300))


def test_the_limit_lapses_one_revert_after_the_rule_stops_wanting_it():
    timeline = [*charging(100), (100, member(0, T0 + 100 * S, stale=True)),
                *[(t, None) for t in range(105, 400, 5)]]
    sent = run(ev_rules(revert_s=60), timeline)
    last = max(c.issued_at_ms for c in sent)
    assert last - T0 < 100 * S  # nothing sent, nothing renewed once the live value is stale
    assert in_force(sent, T0 + 99 * S) == 10
    assert in_force(sent, last + 59 * S) == 10 and in_force(sent, last + 60 * S) is None
    assert all(in_force(sent, T0 + t * S) is None for t in range(160, 400))


def test_an_aged_live_value_stops_the_renewal_too():
    """No message at all (the worker or the link is gone): after max_age_s the rule is idle."""
    sent = run(ev_rules(revert_s=60), [*charging(50), *[(t, None) for t in range(50, 300)]])
    # the last live value (t=45) is fresh until 65 s: renewed at 30 and 60, then never
    assert [(c.issued_at_ms - T0) // S for c in sent] == [0, 30, 60]
    assert in_force(sent, T0 + 119 * S) == 10 and in_force(sent, T0 + 120 * S) is None


def test_renew_s_overrides_half_the_revert():
    ruleset = ev_rules(revert_s=60, extra="    renew_s: 50\n")
    assert renew_interval_ms(ruleset.rules[0]) == 50_000
    sent = run(ruleset, charging(200))
    assert [(c.issued_at_ms - T0) // S for c in sent] == [0, 50, 100, 150]


def test_a_relay_without_revert_is_never_renewed():
    ruleset = parse_rules(f"""\
community: {COMMUNITY}
rules:
  - id: boiler
    kind: surplus_load
    member: m1
    device: {COMMUNITY}-boiler:0
    on_above_w: 1500
    off_below_w: 200
    for_s: 0
""", registry=make_registry())
    assert renew_interval_ms(ruleset.rules[0]) is None
    assert [c.value for c in run(ruleset, steady(3000, 900))] == ["on"]


@pytest.mark.parametrize("extra,line,why", [
    ("    revert_s: 0\n", 11, "revert_s must be in [1, 65534] s"),
    ("    revert_s: 70000\n", 11, "revert_s must be in [1, 65534] s"),
    ("    revert_s: 60\n    renew_s: 60\n", 12, "renew_s must be below revert_s"),
])
def test_a_limit_that_would_never_expire_or_lapse_between_renewals_is_refused(extra, line, why):
    text = f"""\
community: {COMMUNITY}
rules:
  - id: ev-m1
    kind: ev_surplus
    member: m1
    charger: ev-1
    for_s: 0
    min_interval_s: 0
    max_age_s: 20
    min_current_a: 6
{extra}"""
    with pytest.raises(RuleError) as caught:
        parse_rules(text, source="r.yaml", registry=make_registry())
    assert str(caught.value).startswith(f"r.yaml:{line}: ") and why in str(caught.value)


# -- end to end: ControlLoop -> Kafka -> OCPP central -> simulated wallbox --------------------
REVERT_S = 6


def test_the_charger_keeps_the_limit_while_the_rule_holds_and_drops_it_after(
        kafka_settings, tmp_path, unique_id):
    registry = make_registry()
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(f"""\
community: {COMMUNITY}
rules:
  - id: ev-m1
    kind: ev_surplus
    member: m1
    charger: ev-1
    for_s: 0
    min_interval_s: 0
    max_age_s: 5
    revert_s: {REVERT_S}
""")
    central = CentralSystem(kafka_settings, registry, host="127.0.0.1", port=0,
                            heartbeat_s=30, timeout_s=5, group_id=f"ocpp-{unique_id}").start()
    sim = SimulatedCharger("CP-1")
    loop = ControlLoop(kafka_settings, registry, [rules_file], store=None, send=True)

    def tick(surplus_w: float | None, stale: bool = False) -> None:
        now = int(time.time() * 1000)
        if surplus_w is not None:
            loop.apply(member(surplus_w, now, stale=stale).encode())
        loop.step(now)
        time.sleep(0.5)

    try:
        assert sim.connect(f"ws://127.0.0.1:{central.port}/ocpp") == "Accepted"
        deadline = time.monotonic() + 20
        while sim.limit_at(time.time() * 1000) is None and time.monotonic() < deadline:
            tick(0 if loop.issued else 2300)  # 10 A of surplus, which the car then takes
        first = time.monotonic()
        assert sim.limit_at(time.time() * 1000) == 10, loop.issued
        # the rule holds for three durations: the limit never lapses on the charger
        while time.monotonic() - first < 3 * REVERT_S:
            tick(0)  # the car takes the surplus: the rule holds 10 A
            assert sim.limit_at(time.time() * 1000) == 10, sim.set_profiles()[-3:]
        profiles = sim.set_profiles()
        assert len(profiles) >= 5  # renewed every REVERT_S / 2
        assert {p["charging_schedule"]["duration"] for p in profiles} == {REVERT_S}
        # the rule stops wanting it (the member's live value turns stale): no more renewals
        tick(0, stale=True)
        stopped, renewals = time.monotonic(), len(sim.set_profiles())
        gone_at = None
        while time.monotonic() - stopped < REVERT_S + 3:
            tick(None)
            if gone_at is None and sim.limit_at(time.time() * 1000) is None:
                gone_at = time.monotonic() - stopped
        assert len(sim.set_profiles()) <= renewals + 1  # at most one already in flight
        assert gone_at is not None and gone_at <= REVERT_S + 1, gone_at
        assert all(i.command.revert_s == REVERT_S for i in loop.issued)
    finally:
        loop.close()
        sim.close()
        central.stop()
